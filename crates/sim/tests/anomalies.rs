//! Injected anomalies: the ground truth is well-formed and tells exactly what was corrupted.
// Helpers of the tests panic on unexpected data like the tests themselves (clippy.toml allows
// unwrap in #[test] functions only).
#![allow(clippy::unwrap_used)]
mod common;

use common::*;
use hanbat_sim::{AnomalyKind, AnomalyLabel, Scenario, SimConfig, Simulation};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// (entity, attribute, observedAt) → value, for every measured value of a run.
type Readings = HashMap<(String, String, String), Value>;

fn simulate(anomalies: bool, days: u64) -> (Readings, Vec<AnomalyLabel>) {
    let mut sim = Simulation::new(&SimConfig { anomalies, ..config(Scenario::All, 21) });
    let mut readings = HashMap::new();
    let mut labels = Vec::new();
    for _ in 0..hours(24 * days) {
        // Five-minute resolution: long enough a run for every kind of fault, quick to compare.
        let step = sim.step(Duration::from_secs(300));
        labels.extend(step.labels);
        for u in step.updates {
            let id = u["id"].as_str().unwrap().to_string();
            for (name, attr) in u.as_object().unwrap() {
                if let Some(at) = attr["observedAt"].as_str() {
                    readings.insert((id.clone(), name.clone(), at.to_string()), attr["value"].clone());
                }
            }
        }
    }
    labels.extend(sim.finish());
    (readings, labels)
}

#[test]
fn labels_are_well_formed_and_cover_exactly_the_corrupted_values() {
    let (clean, _) = simulate(false, 4);
    let (dirty, labels) = simulate(true, 4);
    assert!(labels.len() > 100, "only {} anomalies in 4 days", labels.len());
    let kinds: BTreeSet<String> = labels.iter().map(|l| format!("{:?}", l.kind)).collect();
    assert_eq!(kinds.len(), 5, "{kinds:?}");
    let start = start();
    let end = start + chrono::Duration::days(4);
    let mut windows: HashMap<(&str, &str), Vec<&AnomalyLabel>> = HashMap::new();
    for label in &labels {
        assert!(label.entity.starts_with("urn:ngsi-ld:"), "{label:?}");
        assert!(start <= label.start && label.start <= label.end && label.end < end, "{label:?}");
        if label.kind == AnomalyKind::Spike {
            assert_eq!(label.start, label.end, "a spike is one sample");
        }
        let observed = label.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let key = (label.entity.clone(), label.attribute.clone(), observed);
        assert!(clean.get(&key).is_some_and(Value::is_number), "{label:?} is not a numeric measurement");
        windows.entry((&label.entity, &label.attribute)).or_default().push(label);
    }
    // The labels whose window covers a reading.
    let covering = |(id, name, at): &(String, String, String)| -> Vec<&AnomalyLabel> {
        let t = chrono::DateTime::parse_from_rfc3339(at).unwrap();
        windows
            .get(&(id.as_str(), name.as_str()))
            .map_or_else(Vec::new, |ls| ls.iter().copied().filter(|l| l.start <= t && t <= l.end).collect())
    };
    // Outside the windows the data is exactly the clean data; inside, faults show.
    let mut corrupted = 0;
    let mut traced = BTreeSet::new();
    for (key, value) in &clean {
        if dirty.get(key) != Some(value) {
            let labels = covering(key);
            assert!(!labels.is_empty(), "{key:?} changed without a label");
            traced.extend(labels.into_iter().map(|l| (l.entity.clone(), l.attribute.clone(), l.start)));
            corrupted += 1;
        }
    }
    assert!(dirty.keys().all(|k| clean.contains_key(k)), "anomalies added readings");
    // A stuck value may be one that did not move anyway (no rain, a stopped machine).
    for label in labels.iter().filter(|l| l.kind != AnomalyKind::Stuck) {
        let key = (label.entity.clone(), label.attribute.clone(), label.start);
        assert!(traced.contains(&key), "{label:?} left no trace");
    }
    assert!(corrupted > 0);
}

#[test]
fn labels_serialise_as_the_documented_ndjson() {
    let (_, labels) = simulate(true, 1);
    let line = serde_json::to_string(&labels[0]).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["attribute", "end", "entity", "kind", "start"].into());
    assert!(["spike", "stuck", "drift", "offset", "dropout"].contains(&v["kind"].as_str().unwrap()));
    assert_eq!(serde_json::from_str::<AnomalyLabel>(&line).unwrap(), labels[0]);
}
