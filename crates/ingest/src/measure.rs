//! From a device's JSON measure to expanded NGSI-LD attributes.
//!
//! A [`Target`] is a device resolved for ingestion: its entity, the mappings of its payload keys
//! (device and service group merged) and the @context that expands them. A measure is turned into
//! a normalized NGSI-LD fragment and parsed by `hanbat_model::parse` — the same validation as an
//! HTTP write, so a payload cannot store what the API would refuse.

use crate::provision::{AttrMapping, CommandDef, Device, ServiceGroup, StaticAttr, ngsi_kind};
use hanbat_model::parse::{self, Mode};
use hanbat_model::{Context, Entity};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Payload keys that carry the time of the measure rather than a measure (IoT Agent convention:
/// `TimeInstant`; NGSI-LD: `observedAt`).
const TIME_KEYS: [&str; 2] = ["TimeInstant", "observedAt"];

/// The value a command attribute holds when no command is pending; writing it publishes nothing.
pub const IDLE_COMMAND: &str = "";

struct Mapping {
    name: String,
    kind: &'static str,
    unit_code: Option<String>,
}

/// A provisioned device, ready to turn measures into entity fragments.
pub struct Target {
    pub tenant: String,
    pub apikey: String,
    pub device_id: String,
    pub entity_id: String,
    entity_type: String,
    ctx: Arc<Context>,
    /// By payload key.
    mappings: HashMap<String, Mapping>,
    /// Static attributes and idle commands, in normalized form (compacted names).
    statics: Map<String, Value>,
    /// The device's commands: (expanded name, name in the command payload).
    pub commands: Vec<(String, String)>,
    /// Whether this process has written the entity's static attributes. They go with the first
    /// measure only (upsert creates the entity with them), so that measures do not rewrite them
    /// into history each time.
    bootstrapped: AtomicBool,
}

impl Target {
    pub fn new(tenant: &str, device: &Device, group: Option<&ServiceGroup>, ctx: Arc<Context>) -> Self {
        let group_attrs = group.map_or(&[][..], |g| &g.mapping.attributes[..]);
        let mut mappings = HashMap::new();
        // The device's own mappings come last so that they override its group's.
        for a in group_attrs.iter().chain(&device.mapping.attributes) {
            mappings.insert(a.object_id.clone().unwrap_or_else(|| a.name.clone()), mapping(a));
        }
        let group_statics = group.map_or(&[][..], |g| &g.mapping.static_attributes[..]);
        let mut statics = Map::new();
        for s in group_statics.iter().chain(&device.mapping.static_attributes) {
            statics.insert(s.name.clone(), static_attr(s));
        }
        let group_commands = group.map_or(&[][..], |g| &g.mapping.commands[..]);
        let commands: Vec<&CommandDef> = group_commands.iter().chain(&device.mapping.commands).collect();
        for c in &commands {
            statics.insert(c.name.clone(), json!({"type": "Property", "value": IDLE_COMMAND}));
        }
        Self {
            tenant: tenant.to_string(),
            apikey: device.apikey.clone(),
            device_id: device.device_id.clone(),
            entity_id: device.entity_name.clone(),
            entity_type: device.entity_type.clone(),
            commands: commands.iter().map(|c| (ctx.expand(&c.name), c.name.clone())).collect(),
            ctx,
            mappings,
            statics,
            bootstrapped: AtomicBool::new(false),
        }
    }

    /// The entity fragment a measure writes: its attributes (and, the first time, the static
    /// ones), with `observedAt` from the measure's time key. `Err`: why the measure is malformed.
    pub fn fragment(&self, payload: &[u8]) -> Result<Entity, String> {
        let measure = match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(m)) => m,
            Ok(other) => return Err(format!("the payload is not a JSON object but {}", kind_of(&other))),
            Err(e) => return Err(format!("the payload is not JSON: {e}")),
        };
        let mut observed_at = None;
        let mut object = Map::new();
        object.insert("id".into(), Value::String(self.entity_id.clone()));
        object.insert("type".into(), Value::String(self.entity_type.clone()));
        for (key, value) in &measure {
            if TIME_KEYS.contains(&key.as_str()) {
                observed_at = Some(value.as_str().ok_or_else(|| format!("'{key}' must be a date-time string"))?);
            }
        }
        for (key, value) in measure.iter().filter(|(k, _)| !TIME_KEYS.contains(&k.as_str())) {
            let (name, kind, unit) = match self.mappings.get(key) {
                Some(m) => (m.name.as_str(), m.kind, m.unit_code.as_deref()),
                None => (key.as_str(), "Property", None),
            };
            let mut attr = attribute(kind, value.clone());
            if let Some(t) = observed_at {
                attr.insert("observedAt".into(), Value::String(t.to_string()));
            }
            if let Some(u) = unit {
                attr.insert("unitCode".into(), Value::String(u.to_string()));
            }
            object.insert(name.to_string(), Value::Object(attr));
        }
        if object.len() == 2 {
            return Err("the payload has no measure".into());
        }
        if !self.bootstrapped.load(Ordering::Relaxed) {
            for (name, attr) in &self.statics {
                object.entry(name.clone()).or_insert_with(|| attr.clone());
            }
        }
        parse::entity(object, &self.ctx, Mode::Entity).map_err(|e| e.detail)
    }

    /// The entity now holds the static attributes.
    pub fn bootstrapped(&self) {
        self.bootstrapped.store(true, Ordering::Relaxed);
    }
}

fn mapping(a: &AttrMapping) -> Mapping {
    Mapping {
        name: a.name.clone(),
        // Validated at provisioning; a kind unknown here can only come from an older document.
        kind: ngsi_kind(&a.kind).unwrap_or("Property"),
        unit_code: a.unit_code.clone(),
    }
}

fn static_attr(s: &StaticAttr) -> Value {
    let mut attr = attribute(ngsi_kind(&s.kind).unwrap_or("Property"), s.value.clone());
    if let Some(u) = &s.unit_code {
        attr.insert("unitCode".into(), Value::String(u.clone()));
    }
    Value::Object(attr)
}

/// A normalized attribute of `kind` holding `value`.
fn attribute(kind: &str, value: Value) -> Map<String, Value> {
    let member = match kind {
        "Relationship" => "object",
        "LanguageProperty" => "languageMap",
        _ => "value",
    };
    let mut attr = Map::new();
    attr.insert("type".into(), Value::String(kind.to_string()));
    attr.insert(member.into(), value);
    attr
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hanbat_model::AttrValue;
    use hanbat_model::jsonld::core_context;

    fn target() -> Target {
        let device = Device::parse(
            json!({"device_id": "d1", "apikey": "k", "entity_type": "WeatherObserved",
                   "attributes": [{"object_id": "t", "name": "temperature", "type": "Number", "unitCode": "CEL"}],
                   "static_attributes": [{"name": "site", "type": "Text", "value": "Daedeok"}]}),
            |_| Ok(None),
        )
        .expect("valid device");
        Target::new("", &device, None, core_context())
    }

    #[test]
    fn a_measure_maps_keys_units_and_time() {
        let t = target();
        let e = t.fragment(br#"{"t": 21.5, "h": 40, "TimeInstant": "2026-12-07T10:00:00Z"}"#).expect("valid");
        let temp = &e.attrs[&core_context().expand("temperature")][0];
        assert_eq!(temp.value, AttrValue::Property(json!(21.5)));
        assert_eq!(temp.unit_code.as_deref(), Some("CEL"));
        assert!(temp.observed_at.is_some());
        assert!(e.attrs.contains_key(&core_context().expand("h")));
        assert!(e.attrs.contains_key(&core_context().expand("site")), "statics go with the first measure");
        t.bootstrapped();
        let e = t.fragment(br#"{"t": 22}"#).expect("valid");
        assert_eq!(e.attrs.len(), 1, "statics are written once");
    }

    #[test]
    fn malformed_measures_say_why() {
        let t = target();
        assert!(t.fragment(b"[1]").expect_err("array").contains("not a JSON object"));
        assert!(t.fragment(b"{").expect_err("truncated").contains("not JSON"));
        assert!(t.fragment(b"{}").expect_err("empty").contains("no measure"));
        assert!(t.fragment(br#"{"t": 1, "TimeInstant": "yesterday"}"#).is_err());
        assert!(t.fragment(br#"{"t": null}"#).is_err());
    }
}
