//! The numbers a q-language comparison on a top-level attribute can see (§4.9): the value of
//! each instance, the numeric elements of array and list values, the `@value` of JSON-LD value
//! objects. Indexes built on them (the embedded store's numeric index, the subscription
//! registry's equality index) find every entity a term from [`crate::q::Term::numeric_range`]
//! can match.

use hanbat_model::{AttrValue, Entity};
use serde_json::Value as Json;

/// The numbers of `entity` that comparisons can see, per expanded attribute name, and whether
/// the attribute is single-valued.
pub fn comparable_numbers(entity: &Entity) -> Vec<(&str, f64, bool)> {
    let mut out = Vec::new();
    for (name, instances) in &entity.attrs {
        let mut found = Vec::new();
        for inst in instances {
            match &inst.value {
                AttrValue::Property(v) | AttrValue::JsonProperty(v) | AttrValue::GeoProperty(v) => {
                    numbers_of(v, &mut found)
                }
                AttrValue::ListProperty(items) => items.iter().for_each(|i| number_of(i, &mut found)),
                _ => {}
            }
        }
        let single = instances.len() == 1 && found.len() == 1 && instances.iter().all(|i| is_scalar(&i.value));
        out.extend(found.into_iter().map(|n| (name.as_str(), n, single)));
    }
    out
}

fn is_scalar(value: &AttrValue) -> bool {
    matches!(value, AttrValue::Property(v) | AttrValue::JsonProperty(v) if !v.is_array())
}

/// A value as the evaluator sees it: an array is its elements.
fn numbers_of(v: &Json, out: &mut Vec<f64>) {
    match v {
        Json::Array(items) => items.iter().for_each(|i| number_of(i, out)),
        other => number_of(other, out),
    }
}

/// One element: a number, or a JSON-LD value object holding one.
fn number_of(v: &Json, out: &mut Vec<f64>) {
    match v {
        Json::Number(n) => out.extend(n.as_f64()),
        Json::Object(o) => {
            if let Some(Json::Number(n)) = o.get("@value") {
                out.extend(n.as_f64());
            }
        }
        _ => {}
    }
}
