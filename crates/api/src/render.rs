//! The view a consumer asked for: which attributes and members (`attrs`, `pick`, `omit`,
//! `datasetId`), in which representation (`options`, `format`, `lang`), as JSON or GeoJSON.

use crate::params::Params;
use crate::request::Accept;
use hanbat_model::render::{self, Options};
use hanbat_model::{Context, Entity, NgsiError, Result};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Core members that `pick`/`omit` may name besides attributes.
const CORE_MEMBERS: [&str; 5] = ["id", "type", "scope", "createdAt", "modifiedAt"];

#[derive(Debug, Clone, Default)]
pub struct View {
    pub options: Options,
    /// Attributes to keep (expanded); `None` keeps all.
    pub attrs: Option<Vec<String>>,
    /// Attributes to drop (expanded).
    pub omit: Vec<String>,
    /// Core members to keep (`pick`) or drop (`omit`), compact.
    pub core_pick: Option<Vec<String>>,
    pub core_omit: Vec<String>,
    /// Attribute instances to keep by datasetId (`@none`: the default instance).
    pub dataset_ids: Option<Vec<String>>,
    /// `type` on a retrieval: the entity must have one of these.
    pub types: Vec<String>,
}

impl View {
    pub fn from_params(params: &Params, ctx: &Context, options_allowed: &[&str]) -> Result<Self> {
        let options = params.options(options_allowed)?;
        let mut view = View { options: params.render_options(&options)?, ..View::default() };
        let (has_attrs, has_pick, has_omit) = (params.has("attrs"), params.has("pick"), params.has("omit"));
        if has_pick && has_omit {
            return Err(NgsiError::bad_data("pick and omit cannot be used together"));
        }
        if has_attrs && (has_pick || has_omit) {
            return Err(NgsiError::bad_data("attrs cannot be combined with pick or omit"));
        }
        for (param, raw) in
            [("attrs", params.list("attrs")), ("pick", params.list("pick")), ("omit", params.list("omit"))]
        {
            if params.has(param) && raw.is_empty() {
                return Err(NgsiError::bad_data(format!("{param} must list at least one name")));
            }
            for n in &raw {
                if n.chars().any(|c| c.is_whitespace() || "<>\"'=;()".contains(c)) {
                    return Err(NgsiError::bad_data(format!("{param}: '{n}' is not a valid attribute name")));
                }
            }
        }
        let split = |raw: Vec<String>| -> (Vec<String>, Vec<String>) {
            let (core, attrs): (Vec<_>, Vec<_>) = raw.into_iter().partition(|n| CORE_MEMBERS.contains(&n.as_str()));
            (core, attrs.iter().map(|a| ctx.expand(a)).collect())
        };
        if has_attrs {
            view.attrs = Some(params.list("attrs").iter().map(|a| ctx.expand(a)).collect());
        }
        if has_pick {
            let (core, attrs) = split(params.list("pick"));
            view.core_pick = Some(core);
            view.attrs = Some(attrs);
        }
        if has_omit {
            let (core, attrs) = split(params.list("omit"));
            view.core_omit = core;
            view.omit = attrs;
        }
        if params.has("datasetId") {
            view.dataset_ids = Some(params.list("datasetId"));
        }
        view.types = params.list("type").iter().map(|t| ctx.expand(t)).collect();
        Ok(view)
    }

    /// The GeoProperty used as GeoJSON geometry (`geometryProperty`, default `location`).
    pub fn geometry_property(&self, params: &Params, ctx: &Context) -> String {
        ctx.expand(params.get("geometryProperty").unwrap_or("location"))
    }

    /// The entity reduced to the requested attributes and instances.
    pub fn project<'e>(&self, e: &'e Entity) -> Cow<'e, Entity> {
        if self.attrs.is_none() && self.omit.is_empty() && self.dataset_ids.is_none() {
            return Cow::Borrowed(e);
        }
        let mut e = e.clone();
        if let Some(keep) = &self.attrs {
            e.attrs.retain(|name, _| keep.contains(name));
        }
        e.attrs.retain(|name, _| !self.omit.contains(name));
        if let Some(ids) = &self.dataset_ids {
            e.attrs.retain(|_, instances| {
                instances.retain(|a| match &a.dataset_id {
                    Some(d) => ids.contains(d),
                    None => ids.iter().any(|i| i == "@none"),
                });
                !instances.is_empty()
            });
        }
        Cow::Owned(e)
    }

    pub fn trim_core(&self, out: &mut Map<String, Value>) {
        if let Some(keep) = &self.core_pick {
            for member in CORE_MEMBERS {
                if !keep.iter().any(|k| k == member) {
                    out.remove(member);
                }
            }
        }
        for member in &self.core_omit {
            out.remove(member.as_str());
        }
    }

    /// Renders one entity as the response asks.
    pub fn render(&self, e: &Entity, ctx: &Context, accept: Accept, geometry: &str) -> Value {
        let e = self.project(e);
        let mut out = if accept == Accept::GeoJson {
            let mut f = render::feature(&e, ctx, &self.options, geometry);
            if let Some(Value::Object(props)) = f.get_mut("properties") {
                self.trim_core(props);
            }
            f
        } else {
            render::entity(&e, ctx, &self.options)
        };
        if accept != Accept::GeoJson {
            self.trim_core(&mut out);
        }
        Value::Object(out)
    }

    /// Renders a list of entities: an array, or a GeoJSON FeatureCollection.
    pub fn render_all(&self, entities: &[Entity], ctx: &Context, accept: Accept, geometry: &str) -> Value {
        let items: Vec<Value> = entities.iter().map(|e| self.render(e, ctx, accept, geometry)).collect();
        if accept == Accept::GeoJson {
            let mut fc = Map::new();
            fc.insert("type".into(), Value::String("FeatureCollection".into()));
            fc.insert("features".into(), Value::Array(items));
            Value::Object(fc)
        } else {
            Value::Array(items)
        }
    }
}
