//! The view a consumer asked for: which attributes and members (`attrs`, `pick`, `omit`,
//! `datasetId`), in which representation (`options`, `format`, `lang`), as JSON or GeoJSON, and
//! with which linked entities (`join`, `joinLevel`, §4.5.23 of V1.8).

use crate::params::Params;
use crate::projection::{MAX_JOIN_LEVEL, Projection};
use crate::request::Accept;
use hanbat_model::render::{self, Format, Options};
use hanbat_model::{AttrValue, Context, Entity, NgsiError, Result};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;

/// Core members that `pick`/`omit` may name besides attributes.
const CORE_MEMBERS: [&str; 5] = ["id", "type", "scope", "createdAt", "modifiedAt"];

/// How linked entities are returned (§4.5.23).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// Inside the relationship (`entity` member; the value itself when simplified).
    Inline,
    /// As further entities after the requested ones.
    Flat,
}

#[derive(Debug, Clone, Default)]
pub struct View {
    pub options: Options,
    /// Attributes to keep (expanded); `None` keeps all.
    pub attrs: Option<Vec<String>>,
    /// `attrs` was given: a retrieval that keeps none of them finds nothing (§5.7.1.4).
    pub attrs_requested: bool,
    /// Attributes to drop (expanded).
    pub omit: Vec<String>,
    /// Core members to keep (`pick`) or drop (`omit`), compact.
    pub core_pick: Option<Vec<String>>,
    pub core_omit: Vec<String>,
    /// Attribute instances to keep by datasetId (`@none`: the default instance).
    pub dataset_ids: Option<Vec<String>>,
    /// `type` on a retrieval: the entity must have one of these.
    pub types: Vec<String>,
    pub join: Option<Join>,
    /// Levels of linked entities still to follow from this view's entities.
    pub join_level: usize,
    /// Views of the entities linked through a relationship (expanded name) that has a nested
    /// projection; other relationships lead to `default_link`.
    linked: HashMap<String, View>,
    default_link: Option<Box<View>>,
}

fn invalid_name(n: &str) -> bool {
    n.chars().any(|c| c.is_whitespace() || "<>\"'=;()".contains(c))
}

impl View {
    pub fn from_params(params: &Params, ctx: &Context, options_allowed: &[&str]) -> Result<Self> {
        let options = params.options(options_allowed)?;
        let render_options = params.render_options(&options)?;
        let (has_attrs, has_pick, has_omit) = (params.has("attrs"), params.has("pick"), params.has("omit"));
        if has_attrs && (has_pick || has_omit) {
            return Err(NgsiError::bad_data("attrs cannot be combined with pick or omit"));
        }
        let projection = |name: &str| -> Result<Option<Projection>> {
            match params.get(name) {
                None => Ok(None),
                Some(text) => Projection::parse(name, text).map(Some),
            }
        };
        let (pick, omit) = (projection("pick")?, projection("omit")?);
        if let (Some(p), Some(o)) = (&pick, &omit) {
            if let Some(both) = p.names().find(|n| o.names().any(|m| m == *n)) {
                return Err(NgsiError::bad_data(format!("'{both}' is in both pick and omit")));
            }
            return Err(NgsiError::bad_data("pick and omit cannot be used together"));
        }
        let join = match params.get("join") {
            None | Some("@none") => None,
            Some("inline") => Some(Join::Inline),
            Some("flat") => Some(Join::Flat),
            Some(other) => return Err(NgsiError::bad_data(format!("join={other} is not one of inline, flat, @none"))),
        };
        let join_level = match params.get("joinLevel") {
            None => 1,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_JOIN_LEVEL).contains(&n) => n,
                _ => {
                    return Err(NgsiError::bad_data(format!(
                        "joinLevel must be an integer from 1 to {MAX_JOIN_LEVEL}, not '{v}'"
                    )));
                }
            },
        };
        let depth = pick.as_ref().or(omit.as_ref()).map_or(0, Projection::depth);
        if depth > 0 && join.is_none() {
            return Err(NgsiError::bad_data("a pick/omit on linked entities ({…}) needs the join parameter"));
        }
        if depth > join_level {
            return Err(NgsiError::bad_data(format!(
                "the pick/omit reaches {depth} linked entities deep, beyond joinLevel={join_level}"
            )));
        }
        let mut view = Self::projected(render_options, pick.as_ref(), omit.as_ref(), ctx, join, join_level);
        let attrs = params.list("attrs");
        if has_attrs && attrs.is_empty() {
            return Err(NgsiError::bad_data("attrs must list at least one name"));
        }
        if let Some(bad) = attrs.iter().find(|n| invalid_name(n)) {
            return Err(NgsiError::bad_data(format!("attrs: '{bad}' is not a valid attribute name")));
        }
        if has_attrs {
            view.attrs = Some(attrs.iter().map(|a| ctx.expand(a)).collect());
            view.attrs_requested = true;
        }
        if params.has("datasetId") {
            view.dataset_ids = Some(params.list("datasetId"));
        }
        view.types = params.list("type").iter().map(|t| ctx.expand(t)).collect();
        Ok(view)
    }

    /// The view of one level: `pick`/`omit` split into core members and attributes, nested
    /// projections turned into the views of linked entities.
    fn projected(
        options: Options,
        pick: Option<&Projection>,
        omit: Option<&Projection>,
        ctx: &Context,
        join: Option<Join>,
        join_level: usize,
    ) -> Self {
        let mut view = View { options: options.clone(), join, join_level, ..View::default() };
        let split = |p: &Projection| -> (Vec<String>, Vec<String>) {
            let (core, attrs): (Vec<&str>, Vec<&str>) = p.names().partition(|n| CORE_MEMBERS.contains(n));
            (core.into_iter().map(String::from).collect(), attrs.into_iter().map(|a| ctx.expand(a)).collect())
        };
        if let Some(p) = pick {
            let (core, attrs) = split(p);
            view.core_pick = Some(core);
            view.attrs = Some(attrs);
        }
        if let Some(o) = omit {
            // A member with a nested projection stays: the projection applies to its linked entity.
            let dropped = Projection { members: o.members.iter().filter(|m| m.linked.is_none()).cloned().collect() };
            let (core, attrs) = split(&dropped);
            view.core_omit = core;
            view.omit = attrs;
        }
        if join.is_some() && join_level > 0 {
            let child = |p: Option<&Projection>, o: Option<&Projection>| {
                Self::projected(options.clone(), p, o, ctx, join, join_level - 1)
            };
            for member in pick.iter().chain(omit.iter()).flat_map(|p| p.members.iter()) {
                if let Some(nested) = &member.linked {
                    let is_pick = pick.is_some();
                    let v = if is_pick { child(Some(nested), None) } else { child(None, Some(nested)) };
                    view.linked.insert(ctx.expand(&member.name), v);
                }
            }
            view.default_link = Some(Box::new(child(None, None)));
        }
        view
    }

    /// The view of the entities linked through relationship `name`, if links are followed.
    pub fn link(&self, name: &str) -> Option<&View> {
        if self.join.is_none() || self.join_level == 0 {
            return None;
        }
        self.linked.get(name).or(self.default_link.as_deref())
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

    /// Renders one entity as the response asks; `linked` holds the entities to inline.
    pub fn render(&self, e: &Entity, ctx: &Context, accept: Accept, geometry: &str, linked: &Linked) -> Value {
        let e = self.project(e);
        let mut out = if accept == Accept::GeoJson {
            let mut f = render::feature(&e, ctx, &self.options, geometry);
            if let Some(Value::Object(props)) = f.get_mut("properties") {
                self.trim_core(props);
            }
            f
        } else {
            let mut out = render::entity(&e, ctx, &self.options);
            if self.join == Some(Join::Inline) {
                self.inline(&e, &mut out, ctx, linked);
            }
            out
        };
        if accept != Accept::GeoJson {
            self.trim_core(&mut out);
        }
        Value::Object(out)
    }

    /// Puts each linked entity into the relationship that links it (§4.5.23.2).
    fn inline(&self, e: &Entity, out: &mut Map<String, Value>, ctx: &Context, linked: &Linked) {
        for (name, instances) in &e.attrs {
            let Some(child) = self.link(name) else { continue };
            let Some(rendered) = out.get_mut(&ctx.compact(name)) else { continue };
            let render_targets = |a: &hanbat_model::Attribute| -> Option<Value> {
                let found: Vec<Value> = a
                    .value
                    .targets()
                    .filter_map(|id| linked.entities.get(id))
                    .map(|(entity, _)| child.render(entity, ctx, Accept::Json, "", linked))
                    .collect();
                match (found.len(), &a.value) {
                    (0, _) => None,
                    (1, AttrValue::Relationship { object: Value::String(_), .. }) => found.into_iter().next(),
                    _ => Some(Value::Array(found)),
                }
            };
            if self.options.format == Format::KeyValues {
                // Simplified: the linked entity takes the place of its id.
                if let [only] = instances.as_slice()
                    && let Some(entity) = render_targets(only)
                {
                    *rendered = entity;
                }
                continue;
            }
            let slots: Vec<&mut Map<String, Value>> = match rendered {
                Value::Object(o) => vec![o],
                Value::Array(items) => items.iter_mut().filter_map(Value::as_object_mut).collect(),
                _ => Vec::new(),
            };
            for (slot, a) in slots.into_iter().zip(instances) {
                if let Some(entity) = render_targets(a) {
                    slot.insert("entity".into(), entity);
                }
            }
        }
    }

    /// Renders a list of entities: an array (with the linked entities after them when the join
    /// is flat), or a GeoJSON FeatureCollection.
    pub fn render_all(
        &self,
        entities: &[Entity],
        ctx: &Context,
        accept: Accept,
        geometry: &str,
        linked: &Linked,
    ) -> Value {
        // An entity that pick/omit leave empty is not part of the answer.
        let mut items: Vec<Value> = entities
            .iter()
            .map(|e| self.render(e, ctx, accept, geometry, linked))
            .filter(|v| v.as_object().is_none_or(|o| !o.is_empty()))
            .collect();
        if accept == Accept::GeoJson {
            let mut fc = Map::new();
            fc.insert("type".into(), Value::String("FeatureCollection".into()));
            fc.insert("features".into(), Value::Array(items));
            return Value::Object(fc);
        }
        if self.join == Some(Join::Flat) {
            items.extend(linked.flat(ctx, entities));
        }
        Value::Array(items)
    }
}

/// Linked entities fetched for a response, in the order they were found, with the view each
/// is rendered with.
#[derive(Default)]
pub struct Linked<'v> {
    pub order: Vec<String>,
    pub entities: HashMap<String, (Entity, &'v View)>,
}

impl Linked<'_> {
    /// The flat rendering of the linked entities that are not among `requested`.
    fn flat(&self, ctx: &Context, requested: &[Entity]) -> Vec<Value> {
        self.order
            .iter()
            .filter(|id| !requested.iter().any(|e| &e.id == *id))
            .filter_map(|id| self.entities.get(id))
            .map(|(entity, view)| view.render(entity, ctx, Accept::Json, "", self))
            .collect()
    }
}
