//! The provisioning model, in the spirit of the FIWARE IoT Agent JSON: service groups (one per
//! API key: the entity type and the attributes its devices share) and devices (which entity a
//! device feeds and how the short keys of its payloads map to attributes).
//!
//! Field names are the IoT Agent's (`device_id`, `entity_name`, `object_id`, …) so that existing
//! provisioning scripts work; fields the agent knows but Hanbat has no use for (`protocol`,
//! `transport`, `timezone`, …) are accepted and ignored.

use hanbat_model::{NgsiError, Result, parse};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How a payload key becomes an attribute: `{object_id, name, type, unitCode?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttrMapping {
    /// The key in the payload; `name` when absent (as in the IoT Agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    /// The attribute name (compacted with the group's @context).
    pub name: String,
    /// An NGSI-LD attribute kind or an IoT Agent data type (`Number`, `Text`, …: Properties).
    #[serde(rename = "type", default = "property")]
    pub kind: String,
    #[serde(rename = "unitCode", default, skip_serializing_if = "Option::is_none")]
    pub unit_code: Option<String>,
}

/// A fixed attribute of every entity of a device: `{name, type, value, unitCode?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StaticAttr {
    pub name: String,
    #[serde(rename = "type", default = "property")]
    pub kind: String,
    pub value: Value,
    #[serde(rename = "unitCode", default, skip_serializing_if = "Option::is_none")]
    pub unit_code: Option<String>,
}

/// A command the device accepts: an attribute whose updates are published to the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandDef {
    pub name: String,
    #[serde(rename = "type", default = "command")]
    pub kind: String,
}

fn property() -> String {
    "Property".into()
}

fn command() -> String {
    "command".into()
}

/// A service group: the devices publishing with `apikey`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceGroup {
    pub apikey: String,
    pub entity_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(flatten)]
    pub mapping: Mapping,
}

/// How measures become attributes, for a service group and (added to it) for a device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Mapping {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<AttrMapping>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub static_attributes: Vec<StaticAttr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<CommandDef>,
    /// The @context that expands the names of the attributes and type (default: core).
    #[serde(rename = "@context", default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
}

impl Mapping {
    fn check(&self) -> Result<()> {
        check_attributes(&self.attributes, &self.static_attributes, &self.commands)?;
        check_context(self.context.as_ref())
    }
}

/// A device, with its API key and entity resolved at provisioning time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub device_id: String,
    #[serde(default)]
    pub apikey: String,
    #[serde(default)]
    pub entity_name: String,
    #[serde(default)]
    pub entity_type: String,
    #[serde(flatten)]
    pub mapping: Mapping,
    /// Attributes a lazy device answers on request: kept for IoT Agent compatibility; Hanbat
    /// has no context-source forwarding for them, so they are stored and reported only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lazy: Vec<AttrMapping>,
}

/// Attribute kinds accepted in mappings: NGSI-LD kinds, and the IoT Agent's data types, which
/// all map to Properties.
const PROPERTY_TYPES: [&str; 13] = [
    "Property",
    "Number",
    "Float",
    "Integer",
    "Text",
    "String",
    "Boolean",
    "DateTime",
    "Date",
    "Time",
    "StructuredValue",
    "Object",
    "Array",
];

/// The NGSI-LD kind of a mapping's `type`.
pub fn ngsi_kind(kind: &str) -> Option<&'static str> {
    match kind {
        "Relationship" => Some("Relationship"),
        "GeoProperty" | "geo:json" => Some("GeoProperty"),
        "LanguageProperty" => Some("LanguageProperty"),
        k if PROPERTY_TYPES.contains(&k) => Some("Property"),
        _ => None,
    }
}

/// Names of ids and keys: non-empty, no MQTT topic separators or wildcards, no control characters.
fn check_key(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > 256 {
        return Err(NgsiError::bad_data(format!("{what} must have 1 to 256 characters")));
    }
    if let Some(c) = value.chars().find(|c| matches!(c, '/' | '+' | '#') || c.is_control() || c.is_whitespace()) {
        return Err(NgsiError::bad_data(format!(
            "{what} '{value}' contains {c:?}: ids used in MQTT topics cannot contain '/', '+', '#', spaces or control characters"
        )));
    }
    Ok(())
}

fn check_name(what: &str, name: &str) -> Result<()> {
    parse::validate_attribute_name(name)
        .map_err(|e| NgsiError::bad_data(format!("{what}: '{name}' is not a valid attribute name: {}", e.detail)))
}

fn check_kind(what: &str, name: &str, kind: &str) -> Result<()> {
    if ngsi_kind(kind).is_none() {
        return Err(NgsiError::bad_data(format!(
            "{what} '{name}': type '{kind}' is not supported; use Property, Relationship, GeoProperty, \
             LanguageProperty or a data type ({})",
            PROPERTY_TYPES[1..].join(", ")
        )));
    }
    Ok(())
}

fn check_attributes(attributes: &[AttrMapping], statics: &[StaticAttr], commands: &[CommandDef]) -> Result<()> {
    for a in attributes {
        check_name("attributes", &a.name)?;
        check_kind("attribute", &a.name, &a.kind)?;
        if let Some(o) = &a.object_id
            && o.is_empty()
        {
            return Err(NgsiError::bad_data(format!("attribute '{}': object_id is empty", a.name)));
        }
    }
    for s in statics {
        check_name("static_attributes", &s.name)?;
        check_kind("static attribute", &s.name, &s.kind)?;
        if s.value.is_null() {
            return Err(NgsiError::bad_data(format!("static attribute '{}' has no value", s.name)));
        }
    }
    for c in commands {
        check_name("commands", &c.name)?;
        if c.kind != "command" {
            return Err(NgsiError::bad_data(format!("command '{}': type must be 'command', not '{}'", c.name, c.kind)));
        }
    }
    Ok(())
}

fn check_entity_type(entity_type: &str) -> Result<()> {
    parse::validate_name(entity_type)
        .map_err(|e| NgsiError::bad_data(format!("entity_type '{entity_type}' is invalid: {}", e.detail)))
}

fn check_context(context: Option<&Value>) -> Result<()> {
    match context {
        None | Some(Value::String(_) | Value::Object(_) | Value::Array(_)) => Ok(()),
        Some(other) => Err(NgsiError::bad_data(format!("@context must be a URL, an object or an array, not {other}"))),
    }
}

/// Deserialises one provisioning object, with serde's message (field and position) as detail.
fn from_value<T: serde::de::DeserializeOwned>(what: &str, value: Value) -> Result<T> {
    if !value.is_object() {
        return Err(NgsiError::bad_data(format!("a {what} must be a JSON object, not {value}")));
    }
    serde_json::from_value(value).map_err(|e| NgsiError::bad_data(format!("invalid {what}: {e}")))
}

/// The items of a provisioning body: `{"<key>": [...]}` as the IoT Agent sends them, or one object.
pub fn items(body: Value, key: &str) -> Result<Vec<Value>> {
    match body {
        Value::Object(mut o) if o.contains_key(key) => match o.remove(key) {
            Some(Value::Array(items)) if !items.is_empty() => Ok(items),
            _ => Err(NgsiError::bad_data(format!("'{key}' must be a non-empty array"))),
        },
        Value::Object(o) => Ok(vec![Value::Object(o)]),
        other => Err(NgsiError::bad_data(format!("the body must be a JSON object, not {other}"))),
    }
}

impl ServiceGroup {
    pub fn parse(value: Value) -> Result<Self> {
        let group: Self = from_value("service group", value)?;
        check_key("apikey", &group.apikey)?;
        check_entity_type(&group.entity_type)?;
        group.mapping.check()?;
        Ok(group)
    }
}

impl Device {
    /// Parses and completes a device: `apikey` and `entity_type` default to its service
    /// group's (`group` is looked up by the caller from the device's apikey, or is the tenant's
    /// only group when the device names none), `entity_name` to `urn:ngsi-ld:{type}:{id}`.
    pub fn parse(value: Value, group_of: impl Fn(Option<&str>) -> Result<Option<ServiceGroup>>) -> Result<Self> {
        let mut device: Self = from_value("device", value)?;
        check_key("device_id", &device.device_id)?;
        let group = group_of(Some(device.apikey.as_str()).filter(|k| !k.is_empty()))?;
        if device.apikey.is_empty() {
            device.apikey = group.as_ref().map(|g| g.apikey.clone()).ok_or_else(|| {
                NgsiError::bad_data(format!(
                    "device '{}' has no apikey and the tenant has no single service group to take it from",
                    device.device_id
                ))
            })?;
        }
        check_key("apikey", &device.apikey)?;
        if device.entity_type.is_empty() {
            device.entity_type = group.as_ref().map(|g| g.entity_type.clone()).ok_or_else(|| {
                NgsiError::bad_data(format!(
                    "device '{}' has no entity_type and no service group with apikey '{}' provides one",
                    device.device_id, device.apikey
                ))
            })?;
        }
        check_entity_type(&device.entity_type)?;
        if device.entity_name.is_empty() {
            device.entity_name = format!("urn:ngsi-ld:{}:{}", device.entity_type, device.device_id);
        }
        if !parse::is_uri(&device.entity_name) {
            return Err(NgsiError::bad_data(format!(
                "entity_name '{}' is not a URI (NGSI-LD entity ids are URIs)",
                device.entity_name
            )));
        }
        device.mapping.check()?;
        check_attributes(&device.lazy, &[], &[])?;
        Ok(device)
    }

    /// The device document merged with `update` (the members it gives replace the stored ones).
    pub fn merged(&self, update: Value) -> Result<Value> {
        let Value::Object(update) = update else {
            return Err(NgsiError::bad_data("the body must be a JSON object"));
        };
        let mut doc: Map<String, Value> = match serde_json::to_value(self) {
            Ok(Value::Object(o)) => o,
            _ => return Err(NgsiError::internal("a device does not serialise to an object")),
        };
        if let Some(id) = update.get("device_id")
            && id.as_str() != Some(self.device_id.as_str())
        {
            return Err(NgsiError::bad_data(format!("device_id cannot change (it is '{}')", self.device_id)));
        }
        doc.extend(update);
        Ok(Value::Object(doc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_group(_: Option<&str>) -> Result<Option<ServiceGroup>> {
        Ok(None)
    }

    #[test]
    fn device_defaults_come_from_its_group() {
        let group =
            ServiceGroup::parse(json!({"apikey": "k1", "entity_type": "AirQualityObserved"})).expect("valid group");
        let device = Device::parse(json!({"device_id": "aq1"}), |_| Ok(Some(group.clone()))).expect("valid device");
        assert_eq!(device.apikey, "k1");
        assert_eq!(device.entity_name, "urn:ngsi-ld:AirQualityObserved:aq1");
    }

    #[test]
    fn invalid_provisioning_is_refused_with_the_reason() {
        let e = Device::parse(json!({"device_id": "a/b", "apikey": "k", "entity_type": "T"}), no_group)
            .expect_err("slash in id");
        assert!(e.detail.contains("'/'"), "{}", e.detail);
        let e = Device::parse(json!({"device_id": "d", "apikey": "k"}), no_group).expect_err("no type");
        assert!(e.detail.contains("entity_type"), "{}", e.detail);
        let e = Device::parse(
            json!({"device_id": "d", "apikey": "k", "entity_type": "T", "attributes": [{"name": "t", "type": "Bogus"}]}),
            no_group,
        )
        .expect_err("bad type");
        assert!(e.detail.contains("Bogus"), "{}", e.detail);
        let e = ServiceGroup::parse(json!({"apikey": "k"})).expect_err("no type");
        assert!(e.detail.contains("entity_type"), "{}", e.detail);
    }
}
