//! Output: [`Entity`] → NGSI-LD JSON in the requested representation, names compacted with the
//! requester's @context (§4.5 of V1.8: normalized, concise, simplified/keyValues; §4.5.16 GeoJSON).

use crate::entity::{AttrValue, Attribute, Attrs, Entity};
use crate::jsonld::Context;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Normalized,
    Concise,
    /// `options=keyValues` / `format=simplified`.
    KeyValues,
}

/// A language preference list from the `lang` parameter (`ko,en;q=0.8`; `*` for any language).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LangFilter {
    /// Language ranges in order of preference (quality first, then position).
    pub tags: Vec<String>,
}

impl LangFilter {
    pub fn parse(param: &str) -> Self {
        let mut weighted: Vec<(f32, usize, String)> = param
            .split(',')
            .enumerate()
            .filter_map(|(i, part)| {
                let mut pieces = part.split(';');
                let tag = pieces.next()?.trim().to_string();
                if tag.is_empty() {
                    return None;
                }
                let q =
                    pieces.find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok())).unwrap_or(1.0);
                Some((q, i, tag))
            })
            .collect();
        weighted.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        Self { tags: weighted.into_iter().map(|(_, _, t)| t).collect() }
    }

    /// Picks the best entry of a language map (§4.15, RFC 4647 lookup, tags compared without
    /// case): for each range in order, an exact tag, then the range truncated (`nl-BE` → `nl`),
    /// then a longer tag it is a prefix of (`en` → `en-US`); `*` takes any. When nothing
    /// matches: `@none`, else the first entry ("any supported language").
    pub fn pick<'m>(&self, map: &'m Map<String, Value>) -> Option<(&'m str, &'m Value)> {
        let find = |wanted: &str| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(wanted));
        for range in &self.tags {
            if range == "*" {
                break;
            }
            let mut candidate = range.as_str();
            loop {
                if let Some((k, v)) = find(candidate) {
                    return Some((k.as_str(), v));
                }
                match candidate.rfind('-') {
                    Some(cut) => candidate = &candidate[..cut],
                    None => break,
                }
            }
            let prefix = format!("{}-", range.to_ascii_lowercase());
            if let Some((k, v)) = map.iter().find(|(k, _)| k.to_ascii_lowercase().starts_with(&prefix)) {
                return Some((k.as_str(), v));
            }
        }
        map.get_key_value("@none").or_else(|| map.iter().next()).map(|(k, v)| (k.as_str(), v))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub format: Format,
    pub sys_attrs: bool,
    /// `lang`: LanguageProperties become Properties holding one string.
    pub lang: Option<LangFilter>,
}

/// Renders an entity as a JSON object (without `@context`).
pub fn entity(e: &Entity, ctx: &Context, opts: &Options) -> Map<String, Value> {
    let mut out = Map::with_capacity(e.attrs.len() + 4);
    out.insert("id".into(), Value::String(e.id.clone()));
    out.insert("type".into(), types(&e.types, ctx));
    if !e.scopes.is_empty() {
        out.insert("scope".into(), one_or_many(e.scopes.iter().map(|s| Value::String(s.clone())).collect()));
    }
    attrs_into(&mut out, &e.attrs, ctx, opts);
    if opts.sys_attrs {
        sys_times(&mut out, e.created_at.as_ref(), e.modified_at.as_ref());
        if let Some(d) = &e.deleted_at {
            out.insert("deletedAt".into(), Value::String(d.to_text()));
        }
        // expiresAt is a system-managed member: shown with the other system times (§6.3.11).
        if let Some(x) = &e.expires_at {
            out.insert("expiresAt".into(), Value::String(x.to_text()));
        }
    }
    out
}

/// Renders entity types: one string or an array, compacted.
pub fn types(types: &[String], ctx: &Context) -> Value {
    one_or_many(types.iter().map(|t| Value::String(ctx.compact(t))).collect())
}

fn one_or_many(mut items: Vec<Value>) -> Value {
    if items.len() == 1 { items.pop().unwrap_or(Value::Null) } else { Value::Array(items) }
}

fn sys_times(
    out: &mut Map<String, Value>,
    created: Option<&crate::time::Timestamp>,
    modified: Option<&crate::time::Timestamp>,
) {
    if let Some(c) = created {
        out.insert("createdAt".into(), Value::String(c.to_text()));
    }
    if let Some(m) = modified {
        out.insert("modifiedAt".into(), Value::String(m.to_text()));
    }
}

/// Renders a set of attributes into `out` (entity members or sub-attributes).
pub fn attrs_into(out: &mut Map<String, Value>, attrs: &Attrs, ctx: &Context, opts: &Options) {
    for (name, instances) in attrs {
        let rendered: Vec<Value> = if opts.format == Format::KeyValues {
            match instances.as_slice() {
                [] => Vec::new(),
                [single] if single.dataset_id.is_none() => vec![key_value(single, ctx, opts)],
                // Simplified multi-instance (§4.5.4): a dataset map, "@none" for the default instance.
                several => {
                    let map: Map<String, Value> = several
                        .iter()
                        .map(|a| (a.dataset_id.clone().unwrap_or_else(|| "@none".into()), key_value(a, ctx, opts)))
                        .collect();
                    vec![json!({ "dataset": map })]
                }
            }
        } else {
            instances.iter().map(|a| attribute(a, ctx, opts)).collect()
        };
        if !rendered.is_empty() {
            out.insert(ctx.compact(name), one_or_many(rendered));
        }
    }
}

/// Renders one attribute instance (normalized or concise).
pub fn attribute(a: &Attribute, ctx: &Context, opts: &Options) -> Value {
    let concise = opts.format == Format::Concise;
    let mut out = Map::new();
    if !concise {
        out.insert("type".into(), Value::String(a.value.type_name().into()));
    }
    match &a.value {
        AttrValue::Property(v) => {
            out.insert("value".into(), v.clone());
        }
        AttrValue::GeoProperty(v) => {
            out.insert("value".into(), v.clone());
        }
        AttrValue::Relationship { object, object_type } => {
            out.insert("object".into(), object.clone());
            if !object_type.is_empty() {
                out.insert("objectType".into(), types(object_type, ctx));
            }
        }
        AttrValue::LanguageProperty(map) => match opts.lang.as_ref().and_then(|l| l.pick(map)) {
            Some((lang, text)) => {
                if !concise {
                    out.insert("type".into(), Value::String("Property".into()));
                }
                out.insert("value".into(), text.clone());
                out.insert("lang".into(), Value::String(lang.into()));
            }
            None => {
                out.insert("languageMap".into(), Value::Object(map.clone()));
            }
        },
        AttrValue::VocabProperty(v) => {
            out.insert("vocab".into(), compact_vocab(v, ctx));
        }
        AttrValue::ListProperty(items) => {
            out.insert("valueList".into(), Value::Array(items.clone()));
        }
        AttrValue::ListRelationship(items) => {
            out.insert("objectList".into(), Value::Array(items.iter().map(object_entry).collect()));
        }
        AttrValue::JsonProperty(v) => {
            out.insert("json".into(), v.clone());
        }
        AttrValue::Null => {
            out.insert("value".into(), Value::String(crate::entity::NGSI_LD_NULL.into()));
        }
    }
    if let Some(o) = &a.observed_at {
        out.insert("observedAt".into(), Value::String(o.to_text()));
    }
    if let Some(u) = &a.unit_code {
        out.insert("unitCode".into(), Value::String(u.clone()));
    }
    if let Some(vt) = &a.value_type {
        out.insert("valueType".into(), Value::String(vt.clone()));
    }
    if let Some(sealed) = &a.sealed {
        if let Some(id) = &sealed.entity_id {
            out.insert("entityIdSealed".into(), Value::String(id.clone()));
        }
        if !sealed.entity_types.is_empty() {
            out.insert("entityTypeSealed".into(), types(&sealed.entity_types, ctx));
        }
    }
    if let Some(d) = &a.dataset_id {
        out.insert("datasetId".into(), Value::String(d.clone()));
    }
    if let Some(i) = &a.instance_id {
        out.insert("instanceId".into(), Value::String(i.clone()));
    }
    if let Some(prev) = &a.previous {
        let (member, value) = match prev.as_ref() {
            AttrValue::Relationship { object, .. } => ("previousObject", object.clone()),
            AttrValue::LanguageProperty(m) => ("previousLanguageMap", Value::Object(m.clone())),
            AttrValue::VocabProperty(v) => ("previousVocab", compact_vocab(v, ctx)),
            AttrValue::ListProperty(l) => ("previousValueList", Value::Array(l.clone())),
            AttrValue::ListRelationship(l) => ("previousObjectList", Value::Array(l.clone())),
            AttrValue::JsonProperty(j) => ("previousJson", j.clone()),
            AttrValue::Property(v) | AttrValue::GeoProperty(v) => ("previousValue", v.clone()),
            AttrValue::Null => ("previousValue", Value::String(crate::entity::NGSI_LD_NULL.into())),
        };
        out.insert(member.into(), value);
    }
    if opts.sys_attrs {
        sys_times(&mut out, a.created_at.as_ref(), a.modified_at.as_ref());
        if let Some(x) = &a.expires_at {
            out.insert("expiresAt".into(), Value::String(x.to_text()));
        }
    }
    if let Some(d) = &a.deleted_at {
        out.insert("deletedAt".into(), Value::String(d.to_text()));
    }
    attrs_into(&mut out, &a.sub, ctx, opts);
    if concise && out.len() == 1 {
        // Concise: a Property or GeoProperty with nothing but its value is the value itself.
        if let Some(v) = out.remove("value") {
            return v;
        }
    }
    Value::Object(out)
}

/// The simplified (keyValues) value of an attribute instance.
pub fn key_value(a: &Attribute, ctx: &Context, opts: &Options) -> Value {
    match &a.value {
        AttrValue::Property(v) | AttrValue::GeoProperty(v) => v.clone(),
        // §4.5.4: the kinds whose bare value would read as a Property keep a one-key wrapper.
        AttrValue::JsonProperty(v) => json!({ "json": v }),
        AttrValue::Relationship { object, .. } => object.clone(),
        AttrValue::LanguageProperty(map) => match opts.lang.as_ref().and_then(|l| l.pick(map)) {
            Some((_, text)) => text.clone(),
            None => json!({ "languageMap": map }),
        },
        AttrValue::VocabProperty(v) => json!({ "vocab": compact_vocab(v, ctx) }),
        AttrValue::ListProperty(items) => Value::Array(items.clone()),
        AttrValue::ListRelationship(items) => Value::Array(items.iter().map(object_uri).collect()),
        AttrValue::Null => Value::String(crate::entity::NGSI_LD_NULL.into()),
    }
}

/// An `objectList` entry in normalized form: `{"object": URI}` (§4.5.22.3).
fn object_entry(item: &Value) -> Value {
    match item {
        Value::String(_) => json!({ "object": item }),
        other => other.clone(),
    }
}

/// An `objectList` entry in simplified form: the URI.
fn object_uri(item: &Value) -> Value {
    item.get("object").cloned().unwrap_or_else(|| item.clone())
}

fn compact_vocab(v: &Value, ctx: &Context) -> Value {
    match v {
        Value::String(s) => Value::String(ctx.compact(s)),
        Value::Array(items) => Value::Array(items.iter().map(|i| compact_vocab(i, ctx)).collect()),
        other => other.clone(),
    }
}

/// Renders an entity as a GeoJSON Feature (§4.5.16): `geometry` from the GeoProperty named
/// `geometry_property` (expanded), every member in `properties`.
pub fn feature(e: &Entity, ctx: &Context, opts: &Options, geometry_property: &str) -> Map<String, Value> {
    let mut properties = entity(e, ctx, opts);
    properties.remove("id");
    let geometry = e
        .attrs
        .get(geometry_property)
        .and_then(|instances| instances.iter().find(|a| a.dataset_id.is_none()).or(instances.first()))
        .and_then(|a| match &a.value {
            AttrValue::GeoProperty(g) => Some(g.clone()),
            _ => None,
        })
        .unwrap_or(Value::Null);
    let mut out = Map::new();
    out.insert("id".into(), Value::String(e.id.clone()));
    out.insert("type".into(), Value::String("Feature".into()));
    out.insert("geometry".into(), geometry);
    out.insert("properties".into(), Value::Object(properties));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonld::core_context;
    use crate::parse::{self, Mode};

    fn sample() -> Entity {
        parse::entity(
            json!({
                "id": "urn:ngsi-ld:Streetlight:1", "type": "Streetlight",
                "status": {"type": "Property", "value": "on", "observedAt": "2024-01-01T00:00:00Z"},
                "power": {"type": "Property", "value": 40},
                "site": {"type": "Relationship", "object": "urn:ngsi-ld:Site:1"},
                "name": {"type": "LanguageProperty", "languageMap": {"ko": "가로등", "en": "streetlight"}},
                "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [127.38, 36.35]}}
            })
            .as_object()
            .unwrap()
            .clone(),
            &core_context(),
            Mode::Entity,
        )
        .unwrap()
    }

    #[test]
    fn normalized_round_trips_names() {
        let out = Value::Object(entity(&sample(), &core_context(), &Options::default()));
        assert_eq!(out["type"], "Streetlight");
        assert_eq!(out["status"], json!({"type": "Property", "value": "on", "observedAt": "2024-01-01T00:00:00Z"}));
        assert_eq!(out["site"], json!({"type": "Relationship", "object": "urn:ngsi-ld:Site:1"}));
    }

    #[test]
    fn concise_and_key_values() {
        let ctx = core_context();
        let concise =
            Value::Object(entity(&sample(), &ctx, &Options { format: Format::Concise, ..Options::default() }));
        assert_eq!(concise["power"], 40);
        assert_eq!(concise["status"], json!({"value": "on", "observedAt": "2024-01-01T00:00:00Z"}));
        assert_eq!(concise["site"], json!({"object": "urn:ngsi-ld:Site:1"}));
        let kv = Value::Object(entity(&sample(), &ctx, &Options { format: Format::KeyValues, ..Options::default() }));
        assert_eq!(kv["site"], "urn:ngsi-ld:Site:1");
        assert_eq!(kv["location"]["type"], "Point");
    }

    #[test]
    fn language_selection() {
        let ctx = core_context();
        let opts = Options { lang: Some(LangFilter::parse("en")), ..Options::default() };
        let out = Value::Object(entity(&sample(), &ctx, &opts));
        assert_eq!(out["name"], json!({"type": "Property", "value": "streetlight", "lang": "en"}));
        let f = LangFilter::parse("fr;q=0.5,ko");
        assert_eq!(f.tags, vec!["ko", "fr"]);
        let map = json!({"fr": "Grand Place", "nl": "Grote Markt", "en-US": "Main Square"});
        let map = map.as_object().unwrap();
        assert_eq!(LangFilter::parse("nl-BE").pick(map).unwrap().0, "nl");
        assert_eq!(LangFilter::parse("FR").pick(map).unwrap().0, "fr");
        assert_eq!(LangFilter::parse("en").pick(map).unwrap().0, "en-US");
        assert_eq!(LangFilter::parse("*").pick(map).unwrap().0, "fr");
    }
}
