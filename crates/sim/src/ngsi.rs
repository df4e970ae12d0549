//! Builders for NGSI-LD attributes in normalized form.

use serde_json::{Map, Value, json};

pub(crate) fn property(value: impl Into<Value>) -> Value {
    json!({"type": "Property", "value": value.into()})
}

/// A measured value: `observedAt` always, `unitCode` when the quantity has a unit.
pub(crate) fn measured(value: Value, unit: Option<&str>, observed_at: &str) -> Value {
    let mut attr = Map::with_capacity(4);
    attr.insert("type".into(), "Property".into());
    attr.insert("value".into(), value);
    if let Some(unit) = unit {
        attr.insert("unitCode".into(), unit.into());
    }
    attr.insert("observedAt".into(), observed_at.into());
    Value::Object(attr)
}

pub(crate) fn relationship(object: &str) -> Value {
    json!({"type": "Relationship", "object": object})
}

/// A relationship to several entities at once (an array `object`, as NGSI-LD V1.8 allows).
pub(crate) fn relationships(objects: &[String]) -> Value {
    match objects {
        [one] => relationship(one),
        many => json!({"type": "Relationship", "object": many}),
    }
}

pub(crate) fn geo(geometry: Value) -> Value {
    json!({"type": "GeoProperty", "value": geometry})
}

pub(crate) fn point(p: [f64; 2]) -> Value {
    json!({"type": "Point", "coordinates": [p[0], p[1]]})
}

pub(crate) fn names(ko: &str, en: &str) -> Value {
    json!({"type": "LanguageProperty", "languageMap": {"ko": ko, "en": en}})
}

pub(crate) fn datetime(at: &str) -> Value {
    json!({"type": "Property", "value": {"@type": "DateTime", "@value": at}})
}

/// An entity with its `id`, `type` and attributes in the given order.
pub(crate) fn entity(id: &str, entity_type: &str, attrs: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    let mut object = Map::new();
    object.insert("id".into(), id.into());
    object.insert("type".into(), entity_type.into());
    for (name, attr) in attrs {
        object.insert(name.into(), attr);
    }
    Value::Object(object)
}

/// The number of attributes an entity payload writes (everything but `id`, `type`, `@context`).
pub(crate) fn attribute_count(entity: &Value) -> usize {
    entity.as_object().map_or(0, |o| o.keys().filter(|k| !matches!(k.as_str(), "id" | "type" | "@context")).count())
}

/// Rounds for the wire: sensors report a fixed resolution, and shorter numbers make smaller batches.
pub(crate) fn round(x: f64, decimals: u8) -> f64 {
    let scale = 10f64.powi(i32::from(decimals));
    (x * scale).round() / scale
}
