//! Same seed, same data; another seed, other data; a site's data does not depend on the others.
// Helpers of the tests panic on unexpected data like the tests themselves (clippy.toml allows
// unwrap in #[test] functions only).
#![allow(clippy::unwrap_used)]
mod common;

use common::*;
use hanbat_sim::{Scenario, SimConfig};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// Six hours at backfill resolution, then half an hour live: both phases' code paths.
fn run(config: &SimConfig) -> Vec<Value> {
    let mut sim = hanbat_sim::Simulation::new(config);
    let mut out: Vec<Value> = (0..hours(6)).flat_map(|_| sim.step(Duration::from_secs(60)).updates).collect();
    out.extend((0..hours(1) / 2).flat_map(|_| sim.step(Duration::ZERO).updates));
    out
}

fn ids(updates: &[Value]) -> BTreeSet<String> {
    updates.iter().map(|u| u["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn the_same_seed_gives_the_same_payloads() {
    let config = SimConfig { anomalies: true, ..config(Scenario::All, 7) };
    let (a, b) = (run(&config), run(&config));
    assert!(a.len() > 10_000);
    assert_eq!(a, b);
}

#[test]
fn another_seed_gives_other_data_for_the_same_entities() {
    let a = run(&config(Scenario::All, 7));
    let b = run(&config(Scenario::All, 8));
    assert_ne!(a, b);
    // Devices, rooms and residents keep their ids (alerts come and go with the data).
    let devices = |u: &[Value]| -> BTreeSet<String> {
        ids(u).into_iter().filter(|id| !id.starts_with("urn:ngsi-ld:Alert:")).collect()
    };
    assert_eq!(devices(&a), devices(&b));
    let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert!(differing > a.len() / 2, "only {differing} of {} payloads differ", a.len());
}

#[test]
fn a_site_runs_the_same_alone_or_with_the_others() {
    let all = run(&config(Scenario::All, 3));
    for scenario in Scenario::SITES {
        let alone = run(&config(scenario, 3));
        let own = ids(&alone);
        let together: Vec<Value> = all.iter().filter(|u| own.contains(u["id"].as_str().unwrap())).cloned().collect();
        assert_eq!(alone, together, "{scenario:?}");
    }
}
