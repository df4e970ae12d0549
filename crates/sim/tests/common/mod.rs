//! Helpers shared by the integration tests.
// Helpers of the tests panic on unexpected data like the tests themselves (clippy.toml allows
// unwrap in #[test] functions only).
#![allow(clippy::unwrap_used)]
#![allow(dead_code)] // each test file uses a part of these

use chrono::{DateTime, Utc};
use hanbat_model::jsonld::{Context, ContextBuilder};
use hanbat_model::parse::{self, Mode};
use hanbat_sim::{CITY_CONTEXT, Scenario, SimConfig, Simulation};
use serde_json::Value;
use std::time::Duration;

/// The broker's view of a request that links the city @context: core terms plus ours.
pub fn city_context() -> Context {
    let doc: Value = serde_json::from_str(CITY_CONTEXT).unwrap();
    let mut builder = ContextBuilder::from_core();
    builder.apply_object(doc["@context"].as_object().unwrap(), false).unwrap();
    builder.build()
}

pub fn parse(entity: &Value, ctx: &Context) -> hanbat_model::Entity {
    parse::entity(entity.as_object().unwrap().clone(), ctx, Mode::Entity)
        .unwrap_or_else(|e| panic!("invalid NGSI-LD: {e:?}\n{entity:#}"))
}

pub fn start() -> DateTime<Utc> {
    // A Monday morning in spring, 00:00 KST.
    DateTime::parse_from_rfc3339("2025-03-03T00:00:00+09:00").unwrap().with_timezone(&Utc)
}

pub fn config(scenario: Scenario, seed: u64) -> SimConfig {
    SimConfig { scenario, scale: 1.0, seed, start: start(), anomalies: false }
}

/// Every update of `ticks` ticks, devices reporting at most every `resolution`.
pub fn updates(config: &SimConfig, ticks: u64, resolution: Duration) -> Vec<Value> {
    let mut sim = Simulation::new(config);
    (0..ticks).flat_map(|_| sim.step(resolution).updates).collect()
}

pub fn hours(h: u64) -> u64 {
    h * 3600 / hanbat_sim::TICK.as_secs()
}

/// All positions in a GeoJSON geometry.
pub fn positions(geometry: &Value) -> Vec<[f64; 2]> {
    fn walk(v: &Value, out: &mut Vec<[f64; 2]>) {
        match v.as_array() {
            Some(items) if items.len() >= 2 && items.iter().all(Value::is_number) => {
                out.push([items[0].as_f64().unwrap(), items[1].as_f64().unwrap()]);
            }
            Some(items) => items.iter().for_each(|i| walk(i, out)),
            None => {}
        }
    }
    let mut out = Vec::new();
    walk(&geometry["coordinates"], &mut out);
    out
}

/// Ray casting over every ring of a (Multi)Polygon: inside an odd number of rings.
pub fn contains(geometry: &Value, p: [f64; 2]) -> bool {
    let polygons: Vec<&Value> = match geometry["type"].as_str() {
        Some("Polygon") => vec![&geometry["coordinates"]],
        Some("MultiPolygon") => geometry["coordinates"].as_array().unwrap().iter().collect(),
        _ => return false,
    };
    let mut inside = false;
    for polygon in polygons {
        for ring in polygon.as_array().unwrap() {
            let ring: Vec<[f64; 2]> =
                ring.as_array().unwrap().iter().map(|c| [c[0].as_f64().unwrap(), c[1].as_f64().unwrap()]).collect();
            for w in ring.windows(2) {
                let ([x1, y1], [x2, y2]) = (w[0], w[1]);
                if (y1 > p[1]) != (y2 > p[1]) && p[0] < (x2 - x1) * (p[1] - y1) / (y2 - y1) + x1 {
                    inside = !inside;
                }
            }
        }
    }
    inside
}

/// The legal neighbourhood (법정동) with this code from the shipped boundaries.
pub fn emd(code: &str) -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/geo/daejeon-emd.geojson")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["properties"]["code"] == code)
        .unwrap_or_else(|| panic!("no neighbourhood {code}"))["geometry"]
        .clone()
}

/// The objects of every relationship of an entity: (attribute, target id).
pub fn links(entity: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, attr) in entity.as_object().unwrap() {
        if attr.get("type").and_then(Value::as_str) == Some("Relationship") {
            match &attr["object"] {
                Value::String(s) => out.push((name.clone(), s.clone())),
                Value::Array(items) => {
                    out.extend(items.iter().map(|i| (name.clone(), i.as_str().unwrap().to_string())))
                }
                _ => {}
            }
        }
    }
    out
}
