//! The city model and the simulated entities are valid NGSI-LD, named by the city @context,
//! and linked so that a user can walk from a strategy to the live sensors.
// Helpers of the tests panic on unexpected data like the tests themselves (clippy.toml allows
// unwrap in #[test] functions only).
#![allow(clippy::unwrap_used)]
mod common;

use common::*;
use hanbat_model::jsonld::DEFAULT_VOCAB;
use hanbat_sim::{CITY_CONTEXT, Scenario, SimConfig, Simulation, city_model};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(60);

/// Full entities of the first tick, every update of the next two hours (live resolution), and
/// every Alert upsert of three days, for one scenario.
fn sample_updates(scenario: Scenario) -> Vec<Value> {
    let mut sim = Simulation::new(&SimConfig { anomalies: true, ..config(scenario, 11) });
    let mut out: Vec<Value> = (0..hours(2)).flat_map(|_| sim.step(Duration::ZERO).updates).collect();
    for _ in 0..hours(72) {
        out.extend(sim.step(MINUTE).updates.into_iter().filter(|u| u["type"] == "Alert"));
    }
    out
}

/// Asserts that every type and attribute name is a term of the city or core context.
fn assert_named_by_context(entity: &hanbat_model::Entity, source: &Value) {
    for t in &entity.types {
        assert!(!t.starts_with(DEFAULT_VOCAB), "type {t} is not in the city @context: {source}");
    }
    for (name, instances) in &entity.attrs {
        assert!(!name.starts_with(DEFAULT_VOCAB), "attribute {name} is not in the city @context: {source}");
        for sub in instances.iter().flat_map(|i| i.sub.keys()) {
            assert!(!sub.starts_with(DEFAULT_VOCAB), "sub-attribute {sub} is not in the city @context");
        }
    }
}

#[test]
fn city_model_is_valid_ngsi_ld_named_by_the_city_context() {
    let ctx = city_context();
    for e in city_model() {
        let parsed = parse(&e, &ctx);
        assert_named_by_context(&parsed, &e);
        let names = &e["name"]["languageMap"];
        assert!(names["ko"].is_string() && names["en"].is_string(), "{} needs Korean and English names", e["id"]);
    }
}

#[test]
fn simulated_entities_are_valid_ngsi_ld_named_by_the_city_context() {
    let ctx = city_context();
    let mut alerts = 0;
    for scenario in Scenario::SITES {
        let updates = sample_updates(scenario);
        alerts += updates.iter().filter(|u| u["type"] == "Alert").count();
        let mut seen = HashSet::new();
        for u in &updates {
            let parsed = parse(u, &ctx);
            assert_named_by_context(&parsed, u);
            let id = u["id"].as_str().unwrap();
            if seen.insert(id.to_string()) {
                // The first write creates the entity: it must be complete.
                assert_eq!(u["location"]["type"], "GeoProperty", "{id} has no location");
                let names = &u["name"]["languageMap"];
                assert!(names["ko"].is_string() && names["en"].is_string(), "{id} needs Korean and English names");
            } else if u["type"] != "Alert" {
                // Later writes carry measurements only, each with its observation time.
                for (name, attr) in u.as_object().unwrap().iter().filter(|(k, _)| !["id", "type"].contains(&k.as_str()))
                {
                    assert!(attr["observedAt"].is_string(), "{id}.{name} has no observedAt");
                }
            }
        }
    }
    assert!(alerts > 0, "no alert in three days to check");
}

#[test]
fn every_context_term_is_used_and_every_used_name_is_defined() {
    let doc: Value = serde_json::from_str(CITY_CONTEXT).unwrap();
    let defined: BTreeSet<String> = doc["@context"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !["hanbat", "sdm"].contains(&k.as_str()))
        .cloned()
        .collect();
    let core: HashSet<&str> = ["location", "description", "status"].into();
    let mut used = BTreeSet::new();
    let mut entities = city_model();
    entities.extend(Scenario::SITES.into_iter().flat_map(sample_updates));
    for e in &entities {
        used.insert(e["type"].as_str().unwrap().to_string());
        used.extend(e.as_object().unwrap().keys().filter(|k| !["id", "type"].contains(&k.as_str())).cloned());
    }
    let used: BTreeSet<String> = used.into_iter().filter(|u| !core.contains(u.as_str())).collect();
    assert_eq!(defined, used, "the @context and the payloads disagree");
}

fn by_id(entities: &[Value]) -> HashMap<String, &Value> {
    entities.iter().map(|e| (e["id"].as_str().unwrap().to_string(), e)).collect()
}

#[test]
fn city_model_has_the_programme_and_its_places() {
    let model = city_model();
    let count = |t: &str| model.iter().filter(|e| e["type"] == t).count();
    assert_eq!(count("City"), 1);
    assert_eq!(count("District"), 5);
    assert_eq!(count("Neighbourhood"), 3);
    assert_eq!(count("Strategy"), 3);
    assert_eq!(count("Industry"), 5);
    assert_eq!(count("Site"), 8);
    assert!(count("Task") >= 3 && count("Partner") >= 8);
    let sites: Vec<&Value> = model.iter().filter(|e| e["type"] == "Site").collect();
    let category = |c: &str| sites.iter().filter(|s| s["siteCategory"]["value"] == c).count();
    assert_eq!((category("infrastructure"), category("testbed")), (4, 4));
    let scenarios: BTreeSet<&str> = sites.iter().filter_map(|s| s["scenario"]["value"].as_str()).collect();
    assert_eq!(scenarios, ["factory", "silvertown", "street", "village"].into());
    let ids = by_id(&model);
    for e in &model {
        for (name, target) in links(e) {
            assert!(ids.contains_key(&target), "{}.{name} points at missing {target}", e["id"]);
        }
    }
    for (t, rel) in [
        ("Task", "belongsToStrategy"),
        ("Site", "implementsTask"),
        ("Site", "isInDistrict"),
        ("Partner", "participatesIn"),
    ] {
        for e in model.iter().filter(|e| e["type"] == t) {
            assert_eq!(e[rel]["type"], "Relationship", "{} lacks {rel}", e["id"]);
        }
    }
    for name in ["gene-medicine", "special-imaging", "defence-ict", "robotics", "advanced-sensors"] {
        assert!(ids.contains_key(&format!("urn:ngsi-ld:Industry:{name}")));
    }
}

/// Ids of entities whose `rel` points at one of `targets`.
fn sources(entities: &[Value], rel: &str, targets: &HashSet<String>) -> HashSet<String> {
    entities
        .iter()
        .filter(|e| links(e).iter().any(|(name, t)| name == rel && targets.contains(t)))
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_strategy_leads_to_the_live_sensors_that_serve_it() {
    let mut entities = city_model();
    let mut sim = Simulation::new(&config(Scenario::All, 5));
    entities.extend(sim.step(Duration::ZERO).updates);
    let ids = by_id(&entities);
    for e in &entities {
        for (name, target) in links(e) {
            assert!(ids.contains_key(&target), "{}.{name} points at missing {target}", e["id"]);
        }
    }
    for (strategy, expected_sites) in [("testbeds", 3), ("infrastructure", 1)] {
        let strategies: HashSet<String> = [format!("urn:ngsi-ld:Strategy:{strategy}")].into();
        let tasks = sources(&entities, "belongsToStrategy", &strategies);
        let sites = sources(&entities, "implementsTask", &tasks);
        let live: Vec<String> = sites
            .iter()
            .filter(|s| !sources(&entities, "isInSite", &[(*s).clone()].into()).is_empty())
            .cloned()
            .collect();
        assert_eq!(live.len(), expected_sites, "{strategy}: sites with live devices {live:?}");
    }
    // A care robot serves residents, who live in rooms whose sensors report.
    let robot = entities.iter().find(|e| e["type"] == "CareRobot").unwrap();
    let residents: HashSet<String> =
        links(robot).into_iter().filter(|(n, _)| n == "servesResident").map(|(_, t)| t).collect();
    assert!(!residents.is_empty());
    let rooms: HashSet<String> =
        residents.iter().flat_map(|r| links(ids[r])).filter(|(n, _)| n == "isInRoom").map(|(_, t)| t).collect();
    assert!(!sources(&entities, "isInRoom", &rooms).is_empty());
}
