//! Everything is where it should be: inside Daejeon, sites in their neighbourhoods.
// Helpers of the tests panic on unexpected data like the tests themselves (clippy.toml allows
// unwrap in #[test] functions only).
#![allow(clippy::unwrap_used)]
mod common;

use common::*;
use hanbat_sim::{Scenario, SimConfig, Simulation, city_model};
use serde_json::Value;
use std::time::Duration;

/// Daejeon's bounding box (lon 127.25–127.56, lat 36.18–36.50), widened by `margin` degrees.
fn in_daejeon(p: [f64; 2], margin: f64) -> bool {
    (127.25 - margin..=127.56 + margin).contains(&p[0]) && (36.18 - margin..=36.50 + margin).contains(&p[1])
}

/// The entities of one scenario's first tick and two simulated hours of moving things (the
/// breakfast round of the care robots).
fn simulated(scenario: Scenario, scale: f64) -> Vec<Value> {
    let start = start() + chrono::Duration::hours(7);
    let mut sim = Simulation::new(&SimConfig { scale, start, ..config(scenario, 2) });
    (0..hours(2)).flat_map(|_| sim.step(Duration::ZERO).updates).collect()
}

fn locations(entities: &[Value]) -> Vec<(String, [f64; 2])> {
    entities
        .iter()
        .filter(|e| e["location"]["value"]["type"] == "Point")
        .map(|e| (e["id"].as_str().unwrap().to_string(), positions(&e["location"]["value"])[0]))
        .collect()
}

#[test]
fn every_coordinate_is_in_daejeon() {
    for e in city_model() {
        if let Some(geometry) = e.get("location").map(|l| &l["value"]) {
            let points = positions(geometry);
            assert!(!points.is_empty(), "{} has an empty location", e["id"]);
            // The boundaries themselves reach 127.2467° E and 36.5002° N, just past the rounded box.
            let margin = if geometry["type"] == "Point" { 0.0 } else { 0.005 };
            assert!(points.iter().all(|p| in_daejeon(*p, margin)), "{} lies outside Daejeon", e["id"]);
        }
    }
    for scale in [1.0, 4.0] {
        let entities = simulated(Scenario::All, scale);
        let located = locations(&entities);
        assert!(located.len() > 200);
        for (id, p) in located {
            assert!(in_daejeon(p, 0.0), "{id} at {p:?} lies outside Daejeon");
        }
    }
}

#[test]
fn sites_lie_in_their_legal_neighbourhood() {
    for site in city_model().into_iter().filter(|e| e["type"] == "Site") {
        let p = positions(&site["location"]["value"])[0];
        let code = site["adminCode"]["value"].as_str().unwrap();
        assert!(contains(&emd(code), p), "{} at {p:?} is not in 법정동 {code}", site["id"]);
    }
}

#[test]
fn devices_lie_in_their_sites_neighbourhood() {
    let model = city_model();
    let area_of = |site: &str| -> Value {
        let site = model.iter().find(|e| e["id"] == site).unwrap();
        match site.get("isInNeighbourhood") {
            // Testbeds: the whole testbed neighbourhood of the city model.
            Some(n) => model.iter().find(|e| e["id"] == n["object"]).unwrap()["location"]["value"].clone(),
            // The factory: its own legal neighbourhood.
            None => emd(site["adminCode"]["value"].as_str().unwrap()),
        }
    };
    for scenario in Scenario::SITES {
        for scale in [1.0, 4.0] {
            let entities = simulated(scenario, scale);
            let site = entities.iter().find_map(|e| e["isInSite"]["object"].as_str()).unwrap().to_string();
            let area = area_of(&site);
            for (id, p) in locations(&entities) {
                assert!(contains(&area, p), "{id} at {p:?} is outside {site}'s neighbourhood");
            }
        }
    }
}

#[test]
fn boundaries_carry_their_attribution() {
    const ATTRIBUTION: &str = "Boundaries: © 국토지리정보원 (NGII), data.go.kr, 2023-09-15";
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/geo/README.md")).unwrap();
    assert!(readme.contains(ATTRIBUTION));
    for e in city_model().into_iter().filter(|e| e["location"]["value"]["type"] == "MultiPolygon") {
        assert_eq!(e["boundarySource"]["value"], ATTRIBUTION, "{}", e["id"]);
    }
}
