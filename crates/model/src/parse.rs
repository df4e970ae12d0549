//! Input: NGSI-LD JSON (normalized, concise or keyValues forms) → validated, expanded [`Entity`].
//!
//! The request's @context has already been resolved into a [`Context`] and the `@context`
//! member removed. Every rule here reports a `BadRequestData` error whose detail names the
//! offending member, so a user knows what to fix.

use crate::entity::{AttrValue, Attribute, Attrs, Entity, NGSI_LD_NULL, Sealed};
use crate::error::{NgsiError, Result};
use crate::jsonld::{Context, NGSI_LD};
use crate::time::Timestamp;
use serde_json::{Map, Value};

/// What the payload is for, which decides the mandatory members and where NGSI-LD nulls
/// (`urn:ngsi-ld:null`, §5.5.4) are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Create, replace, upsert: `id` and `type` required, no nulls anywhere.
    Entity,
    /// Append, update, partial update: a null attribute deletes it; a null inside a compound
    /// value is refused.
    Fragment,
    /// Merge (§5.5.12): as `Fragment`, and a null inside a compound value is kept, so that the
    /// merge-patch removes that key from the stored value.
    Merge,
    /// Temporal representation: an attribute lists instances over time, several of them with
    /// the same datasetId; `id` and `type` required, no nulls.
    Temporal,
}

impl Mode {
    fn deletes(self) -> bool {
        // A temporal payload records a deletion at an instant with a null instance.
        matches!(self, Mode::Fragment | Mode::Merge | Mode::Temporal)
    }
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

/// The members that carry an attribute's value, one per kind.
const VALUE_MEMBERS: [&str; 7] = ["value", "object", "languageMap", "vocab", "valueList", "objectList", "json"];

/// Members of an attribute that are not sub-attributes.
const ATTRIBUTE_MEMBERS: [&str; 22] = [
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
    "valueType",
    "entityIdSealed",
    "entityTypeSealed",
];

/// Members that only the broker writes (notifications with `showChanges`); never input.
const OUTPUT_ONLY_MEMBERS: [&str; 7] = [
    "previousValue",
    "previousObject",
    "previousLanguageMap",
    "previousVocab",
    "previousValueList",
    "previousObjectList",
    "previousJson",
];

/// Names that are entity members, never attributes.
const ENTITY_MEMBERS: [&str; 9] =
    ["id", "@id", "type", "@type", "scope", "createdAt", "modifiedAt", "deletedAt", "expiresAt"];

/// Core terms that are non-reified Properties of attributes (§4.5.1: not usable as attribute
/// names). The value members (`value`, `vocab`, …) are not among them: the ETSI suite names
/// attributes `vocab`, and nothing is ambiguous about such a name at the entity level.
const NON_REIFIED_TERMS: [&str; 6] = ["datasetId", "instanceId", "observedAt", "unitCode", "objectType", "valueType"];

/// The only Property that may carry the sealing members (§4.5.2.2 of V1.9).
const PROOF_PROPERTY: &str = "ngsildproof";

/// GeoProperties the core context defines (§4.7.1): they can only ever be GeoProperties.
const CORE_GEO_PROPERTIES: [&str; 3] = [
    "https://uri.etsi.org/ngsi-ld/location",
    "https://uri.etsi.org/ngsi-ld/observationSpace",
    "https://uri.etsi.org/ngsi-ld/operationSpace",
];

/// GeoJSON geometry types NGSI-LD accepts as values (§4.6.3 excludes GeometryCollection).
const GEOMETRY_TYPES: [&str; 6] = ["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"];

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
            "scope" if is_ngsi_null(&value) && mode.deletes() => entity.scopes = vec![NGSI_LD_NULL.to_string()],
            "scope" if mode == Mode::Temporal && is_scope_history(&value) => {
                let instances = scope_history(value, ctx)?;
                entity.scopes = latest_scopes(&instances);
                entity.attrs.insert(crate::jsonld::SCOPE_IRI.to_string(), instances);
            }
            "scope" => entity.scopes = scopes(&value)?,
            "createdAt" | "modifiedAt" | "deletedAt" => {} // system attributes: set by the broker, never by input
            // Temporal input records instances over time: there a null `expiresAt` is refused.
            "expiresAt" if is_ngsi_null(&value) && matches!(mode, Mode::Fragment | Mode::Merge) => {
                entity.clears_expiry = true
            }
            "expiresAt" => entity.expires_at = Some(datetime("expiresAt", &value)?),
            _ => {
                validate_attribute_name(&key)?;
                let name = ctx.expand(&key);
                let instances = attribute(&key, value, ctx, mode)?;
                if CORE_GEO_PROPERTIES.contains(&name.as_str()) {
                    check_geo_kind(&key, &instances)?;
                }
                if mode == Mode::Temporal {
                    entity.attrs.entry(name).or_default().extend(instances);
                } else {
                    merge_instances(&mut entity.attrs, &key, name, instances)?;
                }
            }
        }
    }
    if matches!(mode, Mode::Entity | Mode::Temporal) {
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

/// `location`, `observationSpace` and `operationSpace` are GeoProperties by definition (§4.7.1).
fn check_geo_kind(key: &str, instances: &[Attribute]) -> Result<()> {
    for a in instances {
        if !matches!(a.value, AttrValue::GeoProperty(_) | AttrValue::Null) {
            return Err(NgsiError::bad_data(format!(
                "'{key}' is a GeoProperty of the core context; it cannot be a {}",
                a.value.type_name()
            )));
        }
    }
    Ok(())
}

fn merge_instances(attrs: &mut Attrs, key: &str, name: String, instances: Vec<Attribute>) -> Result<()> {
    let slot = attrs.entry(name).or_default();
    for instance in instances {
        if slot.iter().any(|a| a.dataset_id == instance.dataset_id) {
            return Err(NgsiError::bad_data(match &instance.dataset_id {
                Some(d) => format!("attribute '{key}' has two instances with datasetId '{d}'"),
                None => format!("attribute '{key}' has two default instances (without datasetId or with '@none')"),
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
        Value::Array(items) if items.is_empty() && mode.deletes() => Ok(Vec::new()),
        other => Ok(vec![instance(key, other, ctx, mode)?]),
    }
}

/// A partial attribute update (`PATCH …/attrs/{attrId}`, §5.6.4): the members to overwrite.
#[derive(Debug, Clone)]
pub struct AttrPatch {
    /// The kind the fragment declares or implies (`None`: only sub-attributes or metadata).
    pub kind: Option<&'static str>,
    /// The members to write; `value` is [`AttrValue::Null`] when the fragment carries no value.
    pub attr: Attribute,
    /// The fragment's value is the NGSI-LD null: delete the instance.
    pub delete: bool,
}

/// Parses the body of a partial attribute update. Unlike a whole attribute, it may leave out the
/// value and carry only what changes (sub-attributes, `observedAt`, …).
pub fn attribute_patch(key: &str, object: Map<String, Value>, ctx: &Context) -> Result<AttrPatch> {
    if object.is_empty() {
        return Err(NgsiError::bad_data(format!("the fragment for attribute '{key}' is empty")));
    }
    let kind = declared_kind(key, &object)?.or_else(|| inferred_kind(&object));
    let has_value = VALUE_MEMBERS.iter().any(|m| object.contains_key(*m));
    // Without a value member only the other members are read; the kind still gates the update.
    let attr = normalized(key, kind.filter(|_| has_value), object, ctx, Mode::Fragment)?;
    let delete = has_value && attr.value.is_null();
    Ok(AttrPatch { kind, attr, delete })
}

/// Whether a JSON value is an attribute object in normalized or concise form (as opposed to a
/// keyValues value that happens to be an object).
fn looks_like_attribute(v: &Value) -> bool {
    let Some(o) = v.as_object() else { return false };
    if let Some(Value::String(t)) = o.get("type") {
        return kind_of(t).is_some();
    }
    VALUE_MEMBERS.iter().any(|k| o.contains_key(*k))
}

fn kind_of(type_name: &str) -> Option<&'static str> {
    let short = type_name.strip_prefix(NGSI_LD).unwrap_or(type_name);
    let short = short.strip_prefix("ngsi-ld:").unwrap_or(short);
    KINDS.iter().copied().find(|k| *k == short)
}

/// Whether `v` is the NGSI-LD null of a plain value (`"urn:ngsi-ld:null"`).
fn is_ngsi_null(v: &Value) -> bool {
    v.as_str() == Some(NGSI_LD_NULL)
}

/// Whether the value member of an attribute of `kind` is that kind's NGSI-LD null (§4.5.x: the
/// null of a LanguageProperty is `{"@none": "urn:ngsi-ld:null"}`, of a list a list holding it).
fn is_null_payload(kind: &str, payload: &Value) -> bool {
    match (kind, payload) {
        (_, Value::String(s)) => s == NGSI_LD_NULL,
        ("LanguageProperty", Value::Object(map)) => map.len() == 1 && map.get("@none").is_some_and(is_ngsi_null),
        ("ListProperty" | "ListRelationship", Value::Array(items)) => {
            items.len() == 1 && (is_ngsi_null(&items[0]) || items[0].get("object").is_some_and(is_ngsi_null))
        }
        ("JsonProperty", Value::Object(map)) => map.len() == 1 && map.get("@value").is_some_and(is_ngsi_null),
        _ => false,
    }
}

fn json_null(key: &str) -> NgsiError {
    NgsiError::bad_data(format!(
        "attribute '{key}' has a JSON null value: write \"urn:ngsi-ld:null\" to delete an attribute"
    ))
}

fn instance(key: &str, value: Value, ctx: &Context, mode: Mode) -> Result<Attribute> {
    if value.is_null() {
        return Err(json_null(key));
    }
    if is_ngsi_null(&value) {
        return null_or_error(key, mode, Attribute::new(AttrValue::Null));
    }
    let object = match value {
        Value::Object(o) => o,
        // Concise / keyValues: a bare value is a Property.
        other => return Ok(Attribute::property(other)),
    };
    if let Some(Value::String(t)) = object.get("type")
        && kind_of(t).is_none()
    {
        if GEOMETRY_TYPES.contains(&t.as_str()) || t == "GeometryCollection" {
            // Concise GeoProperty: the geometry itself.
            let geometry = Value::Object(object);
            validate_geometry(key, &geometry)?;
            return Ok(Attribute::new(AttrValue::GeoProperty(geometry)));
        }
        return Err(NgsiError::bad_data(format!("attribute '{key}' has an unknown type '{t}'")));
    }
    let kind = match declared_kind(key, &object)? {
        Some(kind) => kind,
        None => match inferred_kind(&object) {
            Some(kind) => kind,
            None => {
                // keyValues: an object without any attribute member is a compound value.
                let value = Value::Object(object);
                check_nested_nulls(key, &value, mode)?;
                return Ok(Attribute::property(value));
            }
        },
    };
    normalized(key, Some(kind), object, ctx, mode)
}

/// The kind named by the `type` member, if any.
fn declared_kind(key: &str, object: &Map<String, Value>) -> Result<Option<&'static str>> {
    match object.get("type") {
        None => Ok(None),
        Some(Value::String(t)) => kind_of(t)
            .map(Some)
            .ok_or_else(|| NgsiError::bad_data(format!("attribute '{key}' has an unknown type '{t}'"))),
        Some(other) => Err(NgsiError::bad_data(format!("the type of attribute '{key}' must be a string, not {other}"))),
    }
}

/// The kind a concise attribute implies by its value member (§4.5.x.3).
fn inferred_kind(object: &Map<String, Value>) -> Option<&'static str> {
    let member = VALUE_MEMBERS.iter().find(|m| object.contains_key(**m))?;
    Some(match *member {
        "value" if object.get("value").is_some_and(is_geometry) => "GeoProperty",
        "value" => "Property",
        "object" => "Relationship",
        "languageMap" => "LanguageProperty",
        "vocab" => "VocabProperty",
        "valueList" => "ListProperty",
        "objectList" => "ListRelationship",
        _ => "JsonProperty",
    })
}

fn value_member(kind: &str) -> &'static str {
    match kind {
        "Property" | "GeoProperty" => "value",
        "Relationship" => "object",
        "LanguageProperty" => "languageMap",
        "VocabProperty" => "vocab",
        "ListProperty" => "valueList",
        "ListRelationship" => "objectList",
        _ => "json",
    }
}

/// The NGSI-LD null is a deletion in fragments and an error in whole entities (§5.5.4).
fn null_or_error(key: &str, mode: Mode, mut attr: Attribute) -> Result<Attribute> {
    if !mode.deletes() {
        return Err(NgsiError::bad_data(format!(
            "attribute '{key}' has the value urn:ngsi-ld:null, which only deletes in a fragment"
        )));
    }
    attr.value = AttrValue::Null;
    Ok(attr)
}

/// Parses the members of a normalized (or concise) attribute of `kind`. With `kind` `None` (a
/// partial update that carries no value) only the other members are read.
fn normalized(
    key: &str,
    kind: Option<&'static str>,
    object: Map<String, Value>,
    ctx: &Context,
    mode: Mode,
) -> Result<Attribute> {
    let mut attr = Attribute::new(AttrValue::Null);
    let mut payload: Option<Value> = None;
    let mut object_type: Vec<String> = Vec::new();
    let mut sealed = Sealed::default();
    let member = kind.map(value_member);
    let kind_name = kind.unwrap_or("attribute fragment");
    let is_proof = key == PROOF_PROPERTY;
    for (name, value) in object {
        match name.as_str() {
            "type" | "createdAt" | "modifiedAt" | "deletedAt" | "lang" => {}
            "@context" => {
                return Err(NgsiError::bad_data(format!(
                    "attribute '{key}' embeds a @context: an attribute cannot carry one (§5.5.7)"
                )));
            }
            "observedAt" => attr.observed_at = Some(datetime(&format!("{key}.observedAt"), &value)?),
            "expiresAt" => attr.expires_at = Some(datetime(&format!("{key}.expiresAt"), &value)?),
            "unitCode" => attr.unit_code = Some(string_member(key, "unitCode", value)?),
            "valueType" => attr.value_type = Some(string_member(key, "valueType", value)?),
            "datasetId" => attr.dataset_id = dataset_id(key, &value)?,
            "instanceId" => match &value {
                Value::String(s) if is_uri(s) => attr.instance_id = Some(s.clone()),
                other => {
                    return Err(NgsiError::bad_data(format!(
                        "instanceId of attribute '{key}' must be a URI, not {other}"
                    )));
                }
            },
            "objectType" if matches!(kind, Some("Relationship" | "ListRelationship")) => {
                object_type = types(&value, ctx)?
            }
            "entityIdSealed" | "entityTypeSealed" if is_proof => {
                if name == "entityIdSealed" {
                    sealed.entity_id = Some(string_member(key, "entityIdSealed", value)?);
                } else {
                    sealed.entity_types = match value {
                        Value::String(_) | Value::Array(_) => types(&value, ctx)?,
                        other => {
                            return Err(NgsiError::bad_data(format!(
                                "entityTypeSealed of '{key}' must be a type name, not {other}"
                            )));
                        }
                    };
                }
            }
            m if Some(m) == member => payload = Some(value),
            m if ATTRIBUTE_MEMBERS.contains(&m) => {
                return Err(NgsiError::bad_data(format!(
                    "attribute '{key}' of type {kind_name} cannot have a '{m}' member"
                )));
            }
            m if OUTPUT_ONLY_MEMBERS.contains(&m) => {
                return Err(NgsiError::bad_data(format!(
                    "attribute '{key}': '{m}' is written by the broker in notifications, never sent"
                )));
            }
            _ => {
                validate_attribute_name(&name)?;
                let sub_key = format!("{key}.{name}");
                let expanded = ctx.expand(&name);
                let instances = attribute(&sub_key, value, ctx, mode)?;
                merge_instances(&mut attr.sub, &sub_key, expanded, instances)?;
            }
        }
    }
    if sealed != Sealed::default() {
        attr.sealed = Some(Box::new(sealed));
    }
    let Some(kind) = kind else { return Ok(attr) };
    let Some(payload) = payload else {
        return Err(NgsiError::bad_data(format!("attribute '{key}' of type {kind} has no '{}'", value_member(kind))));
    };
    if payload.is_null() {
        return Err(json_null(key));
    }
    if is_null_payload(kind, &payload) {
        return null_or_error(key, mode, attr);
    }
    attr.value = match kind {
        "Property" => {
            check_nested_nulls(key, &payload, mode)?;
            if is_proof && !payload.is_object() {
                return Err(NgsiError::bad_data(format!(
                    "the value of '{PROOF_PROPERTY}' must be a W3C Data Integrity proof object"
                )));
            }
            AttrValue::Property(property_value(key, payload)?)
        }
        "GeoProperty" => AttrValue::GeoProperty(geo_value(key, payload)?),
        "Relationship" => AttrValue::Relationship { object: relationship_object(key, payload)?, object_type },
        "LanguageProperty" => {
            if let Some(vt) = &attr.value_type
                && vt != "langString"
                && vt != "rdf:langString"
                && vt != "http://www.w3.org/1999/02/22-rdf-syntax-ns#langString"
            {
                return Err(NgsiError::bad_data(format!(
                    "valueType of LanguageProperty '{key}' must be langString, not '{vt}'"
                )));
            }
            AttrValue::LanguageProperty(language_map(key, payload)?)
        }
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
        _ => AttrValue::JsonProperty(json_value(key, payload)?),
    };
    if attr.unit_code.is_some() && !matches!(attr.value, AttrValue::Property(_)) {
        return Err(NgsiError::bad_data(format!("attribute '{key}': only a Property can have a unitCode")));
    }
    if attr.sealed.is_some() && !matches!(attr.value, AttrValue::Property(_)) {
        return Err(NgsiError::bad_data(format!("attribute '{key}': only a Property can be sealed")));
    }
    Ok(attr)
}

fn string_member(key: &str, member: &str, value: Value) -> Result<String> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(NgsiError::bad_data(format!("{member} of attribute '{key}' must be a string, not {other}"))),
    }
}

/// `datasetId`: a URI, or `@none` for the default instance (§4.5.5); it cannot be nulled.
fn dataset_id(key: &str, value: &Value) -> Result<Option<String>> {
    match value {
        Value::String(s) if s == "@none" => Ok(None),
        Value::String(s) if s == NGSI_LD_NULL => Err(NgsiError::bad_data(format!(
            "datasetId of attribute '{key}' cannot be deleted with urn:ngsi-ld:null (§5.5.8)"
        ))),
        Value::String(s) if is_uri(s) => Ok(Some(s.clone())),
        other => Err(NgsiError::bad_data(format!("datasetId of attribute '{key}' must be a URI, not {other}"))),
    }
}

/// Refuses the NGSI-LD null inside a compound value, except in a merge (§5.5.4).
fn check_nested_nulls(key: &str, value: &Value, mode: Mode) -> Result<()> {
    if mode == Mode::Merge || !contains_nested_null(value) {
        return Ok(());
    }
    Err(NgsiError::bad_data(format!(
        "the value of attribute '{key}' holds urn:ngsi-ld:null inside a JSON object: only a merge may remove keys this way"
    )))
}

fn contains_nested_null(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.values().any(|v| is_ngsi_null(v) || contains_nested_null(v)),
        Value::Array(items) => items.iter().any(|v| v.is_object() && contains_nested_null(v)),
        _ => false,
    }
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

/// A GeoProperty's value: a GeoJSON geometry, or its JSON text (§4.7.2), stored as the object.
fn geo_value(key: &str, value: Value) -> Result<Value> {
    let geometry = match value {
        Value::String(text) => serde_json::from_str(&text).map_err(|_| {
            NgsiError::bad_data(format!("GeoProperty '{key}': the string value is not a GeoJSON geometry"))
        })?,
        other => other,
    };
    validate_geometry(key, &geometry)?;
    Ok(geometry)
}

/// A JsonProperty's `json`: a JSON object or an array of objects (§4.5.24.2), kept verbatim.
fn json_value(key: &str, value: Value) -> Result<Value> {
    let ok = match &value {
        Value::Object(_) => true,
        Value::Array(items) => items.iter().all(Value::is_object),
        _ => false,
    };
    if ok {
        Ok(value)
    } else {
        Err(NgsiError::bad_data(format!("json of JsonProperty '{key}' must be a JSON object or an array of objects")))
    }
}

fn relationship_object(key: &str, object: Value) -> Result<Value> {
    match &object {
        Value::String(s) if is_uri(s) => Ok(object),
        Value::Array(items) if !items.is_empty() && items.iter().all(|i| i.as_str().is_some_and(is_uri)) => Ok(object),
        other => Err(NgsiError::bad_data(format!("the object of relationship '{key}' must be a URI, not {other}"))),
    }
}

/// `objectList` entries, as bare URIs or `{"object": URI}` (§4.5.22.2), stored as URIs.
fn object_list(key: &str, list: Value) -> Result<Vec<Value>> {
    let Value::Array(items) = list else {
        return Err(NgsiError::bad_data(format!("objectList of '{key}' must be an array of URIs")));
    };
    items
        .into_iter()
        .map(|item| {
            let uri = match &item {
                Value::String(s) => Some(s.as_str()),
                Value::Object(o) => o.get("object").and_then(Value::as_str),
                _ => None,
            };
            match uri {
                Some(u) if is_uri(u) => Ok(Value::String(u.to_string())),
                _ => {
                    Err(NgsiError::bad_data(format!("objectList of '{key}' has an element that is not a URI: {item}")))
                }
            }
        })
        .collect()
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
                "languageMap of '{key}': '{lang}' must be a non-empty tag mapping to a string or an array of strings"
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

/// Parses the `id` of an entity: a URI, and not the NGSI-LD null.
pub fn entity_id(value: &Value) -> Result<String> {
    match value {
        Value::String(s) if s == NGSI_LD_NULL => Err(NgsiError::bad_data("urn:ngsi-ld:null cannot be an entity id")),
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

/// A temporal representation's `scope` given as Property instances over time (§4.18: a scope
/// holds from the time it was set until it is replaced), not as the scope itself.
fn is_scope_history(value: &Value) -> bool {
    matches!(value, Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object))
}

/// The instances of a scope history, each value normalised to the array of its scopes.
fn scope_history(value: Value, ctx: &Context) -> Result<Vec<Attribute>> {
    let mut instances = attribute("scope", value, ctx, Mode::Temporal)?;
    for inst in &mut instances {
        let AttrValue::Property(v) = &inst.value else {
            return Err(NgsiError::bad_data("a scope instance is a Property whose value is scopes"));
        };
        inst.value = AttrValue::Property(Value::Array(scopes(v)?.into_iter().map(Value::String).collect()));
    }
    Ok(instances)
}

/// The scopes of the latest instance (by `observedAt`; the last given when none has one).
fn latest_scopes(instances: &[Attribute]) -> Vec<String> {
    let latest = instances.iter().enumerate().max_by_key(|(i, a)| (a.observed_at.as_ref().map(Timestamp::micros), *i));
    match latest.map(|(_, a)| &a.value) {
        Some(AttrValue::Property(Value::Array(items))) => {
            items.iter().filter_map(Value::as_str).map(str::to_string).collect()
        }
        _ => Vec::new(),
    }
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

/// A user-supplied DateTime member: UTC with `Z` (§4.6.3).
fn datetime(what: &str, value: &Value) -> Result<Timestamp> {
    match value {
        Value::String(s) => Timestamp::parse_utc(s).map_err(|e| NgsiError::bad_data(format!("{what}: {}", e.detail))),
        other => Err(NgsiError::bad_data(format!("{what} must be a date-time string, not {other}"))),
    }
}

/// Whether `s` is an absolute URI (scheme, colon, no whitespace or characters URIs exclude, and
/// none of the invisible code points that would make it read as another id).
pub fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else { return false };
    let mut sc = scheme.chars();
    sc.next().is_some_and(|c| c.is_ascii_alphabetic())
        && sc.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !rest.chars().any(|c| c.is_whitespace() || c.is_control() || "<>\"{}|\\^`".contains(c) || is_invisible(c))
}

/// Code points that render as nothing (or as something else): bidi controls, zero-width
/// characters, variation selectors, fillers, noncharacters (RFC 3987 admits several of them, but
/// an id holding one identifies nothing a user can read back).
fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x2800 | 0x3164
        | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8 | 0xFDD0..=0xFDEF
        | 0xE0000..=0xE0FFF)
        || (c as u32 & 0xFFFE) == 0xFFFE
}

/// Checks an attribute or type name (§4.6.2): no characters that the query language reserves,
/// and a short name (not an IRI) starts with a letter.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.chars().any(|c| c.is_whitespace() || c.is_control() || is_invisible(c) || "<>\"'=;()[]\\".contains(c))
    {
        return Err(NgsiError::bad_data(format!(
            "'{name}' is not a valid name: no spaces or any of < > \" ' = ; ( ) [ ] \\"
        )));
    }
    let is_iri = name.contains(':');
    if !is_iri && !name.starts_with(|c: char| c.is_alphabetic() || c == '_') {
        return Err(NgsiError::bad_data(format!("'{name}' is not a valid name: it must start with a letter")));
    }
    if ENTITY_MEMBERS.contains(&name) {
        return Err(NgsiError::bad_data(format!("'{name}' is reserved and cannot be an attribute name")));
    }
    Ok(())
}

/// An attribute name: a valid name that is not a core non-reified member (§4.5.1).
pub fn validate_attribute_name(name: &str) -> Result<()> {
    validate_name(name)?;
    if NON_REIFIED_TERMS.contains(&name) || OUTPUT_ONLY_MEMBERS.contains(&name) {
        return Err(NgsiError::bad_data(format!(
            "'{name}' is a core NGSI-LD member and cannot be an attribute name (§4.5.1)"
        )));
    }
    Ok(())
}

fn is_geometry(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str).is_some_and(|t| GEOMETRY_TYPES.contains(&t)) && v.get("coordinates").is_some()
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
        return Err("NGSI-LD does not support GeometryCollection (§4.6.3)".into());
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
            json!({"id": "urn:a", "type": "T", "p": {"type": "Property", "value": 1, "observedAt": "2026-08-10T12:00:00+02:00"}}),
            json!({"id": "urn:ngsi-ld:Car:A\u{200B}B", "type": "T"}),
            json!({"id": "urn:ngsi-ld:null", "type": "T"}),
            json!({"id": "urn:a", "type": "9T"}),
            json!({"id": "urn:a", "type": "T", "datasetId": {"type": "Property", "value": 1}}),
            json!({"id": "urn:a", "type": "T", "p": {"type": "Property", "value": 1, "@context": {}}}),
            json!({"id": "urn:a", "type": "T", "p": {"type": "Property", "value": 1, "previousValue": 0}}),
            json!({"id": "urn:a", "type": "T", "p": {"type": "Property", "value": 1, "entityIdSealed": "urn:a"}}),
            json!({"id": "urn:a", "type": "T", "p": {"type": "Property", "value": {"k": "urn:ngsi-ld:null"}}}),
            json!({"id": "urn:a", "type": "T", "p": {"type": "JsonProperty", "json": 5}}),
            json!({"id": "urn:a", "type": "T", "p": {"type": "LanguageProperty", "languageMap": {"en": "x"}, "valueType": "xsd:string"}}),
            json!({"id": "urn:a", "type": "T", "location": {"type": "Property", "value": 7}}),
            json!({"id": "urn:a", "type": "T", "location": {"type": "GeoProperty", "value": {"type": "GeometryCollection", "geometries": []}}}),
        ];
        for case in cases {
            let err = parse(case.clone()).expect_err(&case.to_string());
            assert_eq!(err.status(), 400, "{case}");
        }
    }

    #[test]
    fn fragments_take_the_ngsi_ld_null_as_delete_and_refuse_json_null() {
        let fragment = |v: Value, mode| entity(v.as_object().unwrap().clone(), &core_context(), mode);
        let f = fragment(
            json!({"p": "urn:ngsi-ld:null", "w": {"type": "Property", "value": "urn:ngsi-ld:null", "datasetId": "urn:d:1"},
                   "l": {"type": "LanguageProperty", "languageMap": {"@none": "urn:ngsi-ld:null"}}}),
            Mode::Fragment,
        )
        .unwrap();
        assert!(f.attrs.values().all(|v| v[0].value.is_null()));
        assert_eq!(f.attrs[&format!("{V}w")][0].dataset_id.as_deref(), Some("urn:d:1"));
        assert!(fragment(json!({"p": null}), Mode::Fragment).is_err());
        let nested = json!({"a": {"type": "Property", "value": {"k": "urn:ngsi-ld:null"}}});
        assert!(fragment(nested.clone(), Mode::Fragment).is_err());
        assert!(fragment(nested, Mode::Merge).is_ok());
    }

    #[test]
    fn core_rules_of_v1_9() {
        let ok = |v: Value| parse(v).expect("accepted");
        let e = ok(json!({"id": "urn:a", "type": "T",
            "p": [{"type": "Property", "value": 1, "datasetId": "@none"}, {"type": "Property", "value": 2, "datasetId": "urn:d"}],
            "location": {"type": "GeoProperty", "value": "{\"type\": \"Point\", \"coordinates\": [1, 2]}"},
            "r": {"type": "ListRelationship", "objectList": ["urn:x:1", {"object": "urn:x:2"}]},
            "Škola_1": 3}));
        assert!(e.instance(&format!("{V}p"), None).is_some());
        assert_eq!(
            e.attrs["https://uri.etsi.org/ngsi-ld/location"][0].value,
            AttrValue::GeoProperty(json!({"type": "Point", "coordinates": [1, 2]}))
        );
        assert_eq!(
            e.attrs[&format!("{V}r")][0].value,
            AttrValue::ListRelationship(vec![json!("urn:x:1"), json!("urn:x:2")])
        );
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
