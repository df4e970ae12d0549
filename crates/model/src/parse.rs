//! Input: NGSI-LD JSON (normalized, concise or keyValues forms) → validated, expanded [`Entity`].
//!
//! The request's @context has already been resolved into a [`Context`] and the `@context`
//! member removed. Every rule here reports a `BadRequestData` error whose detail names the
//! offending member, so a user knows what to fix.

use crate::entity::{AttrValue, Attribute, Attrs, Entity, NGSI_LD_NULL};
use crate::error::{NgsiError, Result};
use crate::jsonld::{Context, NGSI_LD};
use crate::time::Timestamp;
use serde_json::{Map, Value};

/// What the payload is for, which decides the mandatory members and whether nulls are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Create, replace, upsert: `id` and `type` required, no nulls.
    Entity,
    /// Merge, append, update: `id` and `type` optional; a null value deletes (merge-patch).
    Fragment,
    /// Temporal representation: an attribute lists instances over time, several of them with
    /// the same datasetId; `id` and `type` required.
    Temporal,
}

/// Attribute kinds: the NGSI-LD type names, also accepted in expanded form.
const KINDS: [&str; 8] = [
    "Property",
    "Relationship",
    "GeoProperty",
    "LanguageProperty",
    "VocabProperty",
    "ListProperty",
    "ListRelationship",
    "JsonProperty",
];

/// Members of an attribute that are not sub-attributes.
const ATTRIBUTE_MEMBERS: [&str; 19] = [
    "type",
    "value",
    "object",
    "objectType",
    "languageMap",
    "vocab",
    "valueList",
    "objectList",
    "json",
    "observedAt",
    "unitCode",
    "datasetId",
    "createdAt",
    "modifiedAt",
    "deletedAt",
    "instanceId",
    "lang",
    "@context",
    "expiresAt",
];

/// Names that are entity members, never attributes.
const ENTITY_MEMBERS: [&str; 9] =
    ["id", "@id", "type", "@type", "scope", "createdAt", "modifiedAt", "deletedAt", "expiresAt"];

const GEOMETRY_TYPES: [&str; 7] =
    ["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection"];

/// Parses a whole entity payload.
pub fn entity(object: Map<String, Value>, ctx: &Context, mode: Mode) -> Result<Entity> {
    let mut entity = Entity::default();
    let mut has_id = false;
    let mut has_type = false;
    for (key, value) in object {
        match key.as_str() {
            "@context" => {}
            "id" | "@id" => {
                entity.id = entity_id(&value)?;
                has_id = true;
            }
            "type" | "@type" => {
                entity.types = types(&value, ctx)?;
                has_type = true;
            }
            "scope" => entity.scopes = scopes(&value)?,
            "createdAt" | "modifiedAt" | "deletedAt" => {} // system attributes: set by the broker, never by input
            "expiresAt" => entity.expires_at = Some(datetime("expiresAt", &value)?),
            _ => {
                validate_name(&key)?;
                let name = ctx.expand(&key);
                let instances = attribute(&key, value, ctx, mode)?;
                if mode == Mode::Temporal {
                    entity.attrs.entry(name).or_default().extend(instances);
                } else {
                    merge_instances(&mut entity.attrs, &key, name, instances)?;
                }
            }
        }
    }
    if mode != Mode::Fragment {
        if !has_id {
            return Err(NgsiError::bad_data("the entity has no 'id'"));
        }
        if !has_type {
            return Err(NgsiError::bad_data("the entity has no 'type'"));
        }
    }
    Ok(entity)
}

/// Parses the members of an attribute-fragment payload (`POST/PATCH …/attrs`): every member is an
/// attribute; `id`/`type` are tolerated when they repeat the entity's (checked by the caller).
pub fn attributes(object: Map<String, Value>, ctx: &Context, mode: Mode) -> Result<Entity> {
    entity(object, ctx, mode)
}

fn merge_instances(attrs: &mut Attrs, key: &str, name: String, instances: Vec<Attribute>) -> Result<()> {
    let slot = attrs.entry(name).or_default();
    for instance in instances {
        if slot.iter().any(|a| a.dataset_id == instance.dataset_id) {
            return Err(NgsiError::bad_data(match &instance.dataset_id {
                Some(d) => format!("attribute '{key}' has two instances with datasetId '{d}'"),
                None => format!("attribute '{key}' has two default instances (without datasetId)"),
            }));
        }
        slot.push(instance);
    }
    Ok(())
}

/// Parses one attribute value (any representation) into its instances.
pub fn attribute(key: &str, value: Value, ctx: &Context, mode: Mode) -> Result<Vec<Attribute>> {
    match value {
        Value::Array(items) if !items.is_empty() && items.iter().all(looks_like_attribute) => {
            items.into_iter().map(|item| instance(key, item, ctx, mode)).collect()
        }
        Value::Array(items) if items.is_empty() && mode == Mode::Fragment => Ok(Vec::new()),
        other => Ok(vec![instance(key, other, ctx, mode)?]),
    }
}

/// Whether a JSON value is an attribute object in normalized or concise form (as opposed to a
/// keyValues value that happens to be an object).
fn looks_like_attribute(v: &Value) -> bool {
    let Some(o) = v.as_object() else { return false };
    if let Some(Value::String(t)) = o.get("type") {
        return kind_of(t).is_some();
    }
    ["value", "object", "languageMap", "vocab", "valueList", "objectList", "json"].iter().any(|k| o.contains_key(*k))
}

fn kind_of(type_name: &str) -> Option<&'static str> {
    let short = type_name.strip_prefix(NGSI_LD).unwrap_or(type_name);
    let short = short.strip_prefix("ngsi-ld:").unwrap_or(short);
    KINDS.iter().copied().find(|k| *k == short)
}

fn is_null(v: &Value) -> bool {
    v.is_null() || v.as_str() == Some(NGSI_LD_NULL)
}

fn instance(key: &str, value: Value, ctx: &Context, mode: Mode) -> Result<Attribute> {
    if is_null(&value) {
        return null_or_error(key, mode);
    }
    let object = match value {
        Value::Object(o) => o,
        // Concise / keyValues: a bare value is a Property.
        other => return Ok(Attribute::property(other)),
    };
    let declared = match object.get("type") {
        Some(Value::String(t)) => match kind_of(t) {
            Some(kind) => Some(kind),
            None if GEOMETRY_TYPES.contains(&t.as_str()) => {
                // Concise GeoProperty: the geometry itself.
                let geometry = Value::Object(object);
                validate_geometry(key, &geometry)?;
                return Ok(Attribute::new(AttrValue::GeoProperty(geometry)));
            }
            None => return Err(NgsiError::bad_data(format!("attribute '{key}' has an unknown type '{t}'"))),
        },
        Some(other) => {
            return Err(NgsiError::bad_data(format!("the type of attribute '{key}' must be a string, not {other}")));
        }
        None => None,
    };
    let kind = match declared {
        Some(kind) => kind,
        None => {
            let inferred = ["value", "object", "languageMap", "vocab", "valueList", "objectList", "json"]
                .iter()
                .find(|m| object.contains_key(**m));
            match inferred {
                Some(&"value") => {
                    if object.get("value").is_some_and(is_geometry) {
                        "GeoProperty"
                    } else {
                        "Property"
                    }
                }
                Some(&"object") => "Relationship",
                Some(&"languageMap") => "LanguageProperty",
                Some(&"vocab") => "VocabProperty",
                Some(&"valueList") => "ListProperty",
                Some(&"objectList") => "ListRelationship",
                Some(&"json") => "JsonProperty",
                // keyValues: an object without any attribute member is a compound value.
                _ => return Ok(Attribute::property(Value::Object(object))),
            }
        }
    };
    normalized(key, kind, object, ctx, mode)
}

fn null_or_error(key: &str, mode: Mode) -> Result<Attribute> {
    match mode {
        // In a temporal payload a null instance records a deletion at its observedAt.
        Mode::Fragment | Mode::Temporal => Ok(Attribute::new(AttrValue::Null)),
        Mode::Entity => Err(NgsiError::bad_data(format!("attribute '{key}' has a null value"))),
    }
}

fn normalized(key: &str, kind: &str, object: Map<String, Value>, ctx: &Context, mode: Mode) -> Result<Attribute> {
    let mut attr = Attribute::new(AttrValue::Null);
    let mut payload: Option<Value> = None;
    let mut object_type: Vec<String> = Vec::new();
    let member = match kind {
        "Property" | "GeoProperty" => "value",
        "Relationship" => "object",
        "LanguageProperty" => "languageMap",
        "VocabProperty" => "vocab",
        "ListProperty" => "valueList",
        "ListRelationship" => "objectList",
        _ => "json",
    };
    for (name, value) in object {
        match name.as_str() {
            "type" | "createdAt" | "modifiedAt" | "deletedAt" | "lang" | "@context" => {}
            "observedAt" => attr.observed_at = Some(datetime(&format!("{key}.observedAt"), &value)?),
            "unitCode" => match value {
                Value::String(s) => attr.unit_code = Some(s),
                other => {
                    return Err(NgsiError::bad_data(format!(
                        "unitCode of attribute '{key}' must be a string, not {other}"
                    )));
                }
            },
            "datasetId" => match &value {
                Value::String(s) if is_uri(s) => attr.dataset_id = Some(s.clone()),
                other => {
                    return Err(NgsiError::bad_data(format!(
                        "datasetId of attribute '{key}' must be a URI, not {other}"
                    )));
                }
            },
            "instanceId" => match &value {
                Value::String(s) if is_uri(s) => attr.instance_id = Some(s.clone()),
                other => {
                    return Err(NgsiError::bad_data(format!(
                        "instanceId of attribute '{key}' must be a URI, not {other}"
                    )));
                }
            },
            "objectType" if kind == "Relationship" || kind == "ListRelationship" => object_type = types(&value, ctx)?,
            m if m == member => payload = Some(value),
            m if ATTRIBUTE_MEMBERS.contains(&m) => {
                return Err(NgsiError::bad_data(format!(
                    "attribute '{key}' of type {kind} cannot have a '{m}' member"
                )));
            }
            _ => {
                validate_name(&name)?;
                let sub_key = format!("{key}.{name}");
                let expanded = ctx.expand(&name);
                let instances = attribute(&sub_key, value, ctx, mode)?;
                merge_instances(&mut attr.sub, &sub_key, expanded, instances)?;
            }
        }
    }
    let Some(payload) = payload else {
        return Err(NgsiError::bad_data(format!("attribute '{key}' of type {kind} has no '{member}'")));
    };
    if is_null(&payload) {
        // Keep datasetId and observedAt: they say which instance a null deletes, and when.
        null_or_error(key, mode)?;
        return Ok(attr);
    }
    attr.value = match kind {
        "Property" => AttrValue::Property(property_value(key, payload)?),
        "GeoProperty" => {
            validate_geometry(key, &payload)?;
            AttrValue::GeoProperty(payload)
        }
        "Relationship" => AttrValue::Relationship { object: relationship_object(key, payload)?, object_type },
        "LanguageProperty" => AttrValue::LanguageProperty(language_map(key, payload)?),
        "VocabProperty" => AttrValue::VocabProperty(vocab(key, payload, ctx)?),
        "ListProperty" => match payload {
            Value::Array(items) => AttrValue::ListProperty(items),
            other => {
                return Err(NgsiError::bad_data(format!(
                    "valueList of attribute '{key}' must be an array, not {other}"
                )));
            }
        },
        "ListRelationship" => AttrValue::ListRelationship(object_list(key, payload)?),
        _ => AttrValue::JsonProperty(payload),
    };
    if attr.unit_code.is_some() && !matches!(attr.value, AttrValue::Property(_)) {
        return Err(NgsiError::bad_data(format!("attribute '{key}': only a Property can have a unitCode")));
    }
    Ok(attr)
}

fn property_value(key: &str, value: Value) -> Result<Value> {
    if let Value::Object(o) = &value
        && let Some(Value::String(t)) = o.get("@type")
        && let Some(Value::String(v)) = o.get("@value")
    {
        let ok = match t.as_str() {
            "DateTime" | "https://uri.etsi.org/ngsi-ld/DateTime" => crate::time::parse_datetime_micros(v).is_some(),
            "Date" | "https://uri.etsi.org/ngsi-ld/Date" => crate::time::parse_date_micros(v).is_some(),
            _ => true,
        };
        if !ok {
            return Err(NgsiError::bad_data(format!("attribute '{key}': '{v}' is not a valid {t}")));
        }
    }
    Ok(value)
}

fn relationship_object(key: &str, object: Value) -> Result<Value> {
    match &object {
        Value::String(s) if is_uri(s) => Ok(object),
        Value::Array(items) if !items.is_empty() && items.iter().all(|i| i.as_str().is_some_and(is_uri)) => Ok(object),
        other => Err(NgsiError::bad_data(format!("the object of relationship '{key}' must be a URI, not {other}"))),
    }
}

fn object_list(key: &str, list: Value) -> Result<Vec<Value>> {
    let Value::Array(items) = list else {
        return Err(NgsiError::bad_data(format!("objectList of '{key}' must be an array of URIs")));
    };
    for item in &items {
        let uri = match item {
            Value::String(s) => Some(s.as_str()),
            Value::Object(o) => o.get("object").and_then(Value::as_str),
            _ => None,
        };
        if !uri.is_some_and(is_uri) {
            return Err(NgsiError::bad_data(format!("objectList of '{key}' has an element that is not a URI: {item}")));
        }
    }
    Ok(items)
}

fn language_map(key: &str, map: Value) -> Result<Map<String, Value>> {
    let Value::Object(map) = map else {
        return Err(NgsiError::bad_data(format!("languageMap of '{key}' must be an object of language tag → string")));
    };
    for (lang, text) in &map {
        let ok = match text {
            Value::String(_) => true,
            Value::Array(items) => items.iter().all(Value::is_string),
            _ => false,
        };
        if !ok || lang.is_empty() {
            return Err(NgsiError::bad_data(format!(
                "languageMap of '{key}': '{lang}' must map to a string or an array of strings"
            )));
        }
    }
    Ok(map)
}

fn vocab(key: &str, value: Value, ctx: &Context) -> Result<Value> {
    match value {
        Value::String(s) => Ok(Value::String(ctx.expand(&s))),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            Ok(Value::Array(items.iter().filter_map(Value::as_str).map(|s| Value::String(ctx.expand(s))).collect()))
        }
        other => {
            Err(NgsiError::bad_data(format!("vocab of '{key}' must be a string or an array of strings, not {other}")))
        }
    }
}

/// Parses the `id` of an entity: a URI.
pub fn entity_id(value: &Value) -> Result<String> {
    match value {
        Value::String(s) if is_uri(s) => Ok(s.clone()),
        Value::String(s) => {
            Err(NgsiError::bad_data(format!("entity id '{s}' is not a URI (e.g. urn:ngsi-ld:Streetlight:001)")))
        }
        other => Err(NgsiError::bad_data(format!("entity id must be a string URI, not {other}"))),
    }
}

/// Parses `type`: one name or a non-empty array of names, expanded.
pub fn types(value: &Value, ctx: &Context) -> Result<Vec<String>> {
    let names: Vec<&str> = match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| i.as_str().ok_or_else(|| NgsiError::bad_data(format!("entity types must be strings, not {i}"))))
            .collect::<Result<_>>()?,
        other => {
            return Err(NgsiError::bad_data(format!(
                "type must be a string or a non-empty array of strings, not {other}"
            )));
        }
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        validate_name(name)?;
        let iri = ctx.expand(name);
        if !out.contains(&iri) {
            out.push(iri);
        }
    }
    Ok(out)
}

/// Parses `scope`: one scope or an array of scopes (`/Daejeon/Yuseong`).
pub fn scopes(value: &Value) -> Result<Vec<String>> {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    items
        .into_iter()
        .map(|v| match v.as_str() {
            Some(s) if is_scope(s) => Ok(s.to_string()),
            _ => Err(NgsiError::bad_data(format!("scope {v} is not a scope path like /Daejeon/Yuseong"))),
        })
        .collect()
}

pub fn is_scope(s: &str) -> bool {
    s.len() > 1
        && s.starts_with('/')
        && s[1..]
            .split('/')
            .all(|seg| !seg.is_empty() && seg.chars().all(|c| !c.is_whitespace() && !"#+;|()'\"<>=".contains(c)))
}

/// A DateTime member (§4.6.3): ISO 8601 in UTC with the `Z` designator, so that instants
/// compare the same as text and as time.
fn datetime(what: &str, value: &Value) -> Result<Timestamp> {
    match value {
        Value::String(s) if s.ends_with('Z') => {
            Timestamp::parse(s).map_err(|_| NgsiError::bad_data(format!("{what}: '{s}' is not an ISO 8601 date-time")))
        }
        Value::String(s) => Err(NgsiError::bad_data(format!(
            "{what}: '{s}' must be a UTC date-time ending in Z, such as 2024-05-01T12:00:00Z"
        ))),
        other => Err(NgsiError::bad_data(format!("{what} must be a date-time string, not {other}"))),
    }
}

/// Whether `s` is an absolute URI (scheme, colon, no whitespace or characters URIs exclude).
pub fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else { return false };
    let mut sc = scheme.chars();
    sc.next().is_some_and(|c| c.is_ascii_alphabetic())
        && sc.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !rest.chars().any(|c| c.is_whitespace() || c.is_control() || "<>\"{}|\\^`".contains(c))
}

/// Checks an attribute or type name (§4.6.2: no characters that the query language reserves).
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control() || "<>\"'=;()[]\\".contains(c)) {
        return Err(NgsiError::bad_data(format!(
            "'{name}' is not a valid name: no spaces or any of < > \" ' = ; ( ) [ ] \\"
        )));
    }
    if ENTITY_MEMBERS.contains(&name) {
        return Err(NgsiError::bad_data(format!("'{name}' is reserved and cannot be an attribute name")));
    }
    Ok(())
}

fn is_geometry(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str).is_some_and(|t| GEOMETRY_TYPES.contains(&t))
        && (v.get("coordinates").is_some() || v.get("geometries").is_some())
}

/// Validates a GeoJSON geometry (RFC 7946): shape of the coordinates, closed rings, WGS84 ranges.
pub fn validate_geometry(key: &str, v: &Value) -> Result<()> {
    check_geometry(v)
        .map_err(|why| NgsiError::bad_data(format!("GeoProperty '{key}' is not a valid GeoJSON geometry: {why}")))
}

type Check = std::result::Result<(), String>;

fn check_geometry(v: &Value) -> Check {
    let kind = v.get("type").and_then(Value::as_str).ok_or("it has no string 'type'")?;
    if kind == "GeometryCollection" {
        let parts =
            v.get("geometries").and_then(Value::as_array).ok_or("a GeometryCollection needs a 'geometries' array")?;
        return parts.iter().try_for_each(check_geometry);
    }
    let c = v.get("coordinates").ok_or_else(|| format!("a {kind} needs 'coordinates'"))?;
    match kind {
        "Point" => check_position(c),
        "MultiPoint" => array(c)?.iter().try_for_each(check_position),
        "LineString" => check_line(c),
        "MultiLineString" => array(c)?.iter().try_for_each(check_line),
        "Polygon" => check_polygon(c),
        "MultiPolygon" => array(c)?.iter().try_for_each(check_polygon),
        other => Err(format!("'{other}' is not a GeoJSON geometry type")),
    }
}

fn array(v: &Value) -> std::result::Result<&Vec<Value>, String> {
    v.as_array().ok_or_else(|| format!("{v} is not an array"))
}

fn check_position(p: &Value) -> Check {
    let items = array(p)?;
    let nums: Vec<f64> = items.iter().filter_map(Value::as_f64).collect();
    if nums.len() != items.len() || !(2..=3).contains(&nums.len()) {
        return Err(format!("position {p} must be 2 or 3 numbers"));
    }
    if !(-180.0..=180.0).contains(&nums[0]) || !(-90.0..=90.0).contains(&nums[1]) {
        return Err(format!("position {p} is outside longitude -180..180, latitude -90..90"));
    }
    Ok(())
}

fn check_line(l: &Value) -> Check {
    let positions = array(l)?;
    if positions.len() < 2 {
        return Err("a LineString needs at least 2 positions".into());
    }
    positions.iter().try_for_each(check_position)
}

fn check_polygon(p: &Value) -> Check {
    let rings = array(p)?;
    if rings.is_empty() {
        return Err("a Polygon needs at least one ring".into());
    }
    for ring in rings {
        let positions = array(ring)?;
        if positions.len() < 4 {
            return Err("a Polygon ring needs at least 4 positions".into());
        }
        positions.iter().try_for_each(check_position)?;
        if positions.first() != positions.last() {
            return Err("a Polygon ring must be closed (first position = last position)".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonld::core_context;
    use serde_json::json;

    fn parse(v: Value) -> Result<Entity> {
        entity(v.as_object().unwrap().clone(), &core_context(), Mode::Entity)
    }

    const V: &str = "https://uri.etsi.org/ngsi-ld/default-context/";

    #[test]
    fn normalized_entity() {
        let e = parse(json!({
            "id": "urn:ngsi-ld:Streetlight:1",
            "type": "Streetlight",
            "state": {"type": "Property", "value": "on", "observedAt": "2024-01-01T00:00:00Z", "reliability": {"type": "Property", "value": 0.9}},
            "refSite": {"type": "Relationship", "object": "urn:ngsi-ld:Site:1"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [127.38, 36.35]}},
            "name": {"type": "LanguageProperty", "languageMap": {"ko": "가로등", "en": "streetlight"}},
            "category": {"type": "VocabProperty", "vocab": "lamp"}
        }))
        .unwrap();
        assert_eq!(e.types, vec![format!("{V}Streetlight")]);
        let status = e.instance(&format!("{V}state"), None).unwrap();
        assert_eq!(status.value, AttrValue::Property(json!("on")));
        assert!(status.sub.contains_key(&format!("{V}reliability")));
        assert!(matches!(
            e.instance("https://uri.etsi.org/ngsi-ld/location", None).unwrap().value,
            AttrValue::GeoProperty(_)
        ));
        assert_eq!(
            e.instance(&format!("{V}category"), None).unwrap().value,
            AttrValue::VocabProperty(json!(format!("{V}lamp")))
        );
    }

    #[test]
    fn concise_and_key_values_forms() {
        let e = parse(json!({
            "id": "urn:a", "type": "T",
            "speed": 3, "address": {"street": "Daehak-ro"},
            "temp": {"value": 20, "unitCode": "CEL"},
            "owner": {"object": "urn:p"},
            "location": {"type": "Point", "coordinates": [127.0, 36.0]},
        }))
        .unwrap();
        let a = |n: &str| e.attrs[&format!("{V}{n}")][0].value.clone();
        assert_eq!(a("speed"), AttrValue::Property(json!(3)));
        assert_eq!(a("address"), AttrValue::Property(json!({"street": "Daehak-ro"})));
        assert!(matches!(a("owner"), AttrValue::Relationship { .. }));
        assert!(matches!(e.attrs["https://uri.etsi.org/ngsi-ld/location"][0].value, AttrValue::GeoProperty(_)));
    }

    #[test]
    fn multi_instance_and_duplicates() {
        let e = parse(json!({"id": "urn:a", "type": "T", "p": [
            {"type": "Property", "value": 1},
            {"type": "Property", "value": 2, "datasetId": "urn:ds:2"}
        ]}))
        .unwrap();
        assert_eq!(e.attrs[&format!("{V}p")].len(), 2);
        let dup = parse(
            json!({"id": "urn:a", "type": "T", "p": [{"type": "Property", "value": 1}, {"type": "Property", "value": 2}]}),
        );
        assert!(dup.is_err());
    }

    #[test]
    fn rejects_bad_input_with_a_named_member() {
        let cases = [
            json!({"id": "not a uri", "type": "T"}),
            json!({"id": "urn:a"}),
            json!({"type": "T"}),
            json!({"id": "urn:a", "type": "T", "p": {"type": "Property"}}),
            json!({"id": "urn:a", "type": "T", "p": {"type": "Relationship", "object": "nope"}}),
            json!({"id": "urn:a", "type": "T", "p": {"type": "Foo", "value": 1}}),
            json!({"id": "urn:a", "type": "T", "p": null}),
            json!({"id": "urn:a", "type": "T", "bad name": 1}),
            json!({"id": "urn:a", "type": "T", "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [500, 1]}}}),
            json!({"id": "urn:a", "type": "T", "area": {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [[[0,0],[1,0],[1,1]]]}}}),
            json!({"id": "urn:a", "type": "T", "p": {"type": "Property", "value": 1, "observedAt": "noon"}}),
        ];
        for case in cases {
            let err = parse(case.clone()).expect_err(&case.to_string());
            assert_eq!(err.status(), 400, "{case}");
        }
    }

    #[test]
    fn fragments_accept_null_as_delete() {
        let f = entity(
            json!({"p": null, "q": {"type": "Property", "value": "urn:ngsi-ld:null"}}).as_object().unwrap().clone(),
            &core_context(),
            Mode::Fragment,
        )
        .unwrap();
        assert!(f.attrs.values().all(|v| v[0].value.is_null()));
    }

    #[test]
    fn uris() {
        assert!(is_uri("urn:ngsi-ld:Car:1"));
        assert!(is_uri("https://example.org/a?b=c"));
        assert!(!is_uri("Car1"));
        assert!(!is_uri("urn:has space"));
        assert!(!is_uri(":nothing"));
    }
}
