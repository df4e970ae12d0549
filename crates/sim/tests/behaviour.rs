//! The simulated city behaves like one: days and nights, commutes, shifts, care rounds.
//! All checks are on simulated time from a fixed seed (no wall-clock timing).
// Helpers of the tests panic on unexpected data like the tests themselves (clippy.toml allows
// unwrap in #[test] functions only).
#![allow(clippy::unwrap_used)]
mod common;

use chrono::{DateTime, Datelike, Timelike, Utc};
use common::*;
use hanbat_sim::{Scenario, Simulation};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

fn simulate(scenario: Scenario, days: u64, resolution_s: u64) -> Vec<Value> {
    let mut sim = Simulation::new(&config(scenario, 4));
    (0..hours(24 * days)).flat_map(|_| sim.step(Duration::from_secs(resolution_s)).updates).collect()
}

/// Local (KST) time of an observation.
struct At {
    hour: f64,
    weekday: u32,
    day: u32,
}

fn at(text: &str) -> At {
    let t = DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc) + chrono::Duration::hours(9);
    At {
        hour: f64::from(t.hour()) + f64::from(t.minute()) / 60.0,
        weekday: t.weekday().num_days_from_monday(),
        day: t.ordinal(),
    }
}

/// (entity id, local time, value) of one attribute of one entity type.
fn readings<'a>(updates: &'a [Value], entity_type: &str, attr: &str) -> Vec<(&'a str, At, &'a Value)> {
    updates
        .iter()
        .filter(|u| u["type"] == entity_type)
        .filter_map(|u| {
            let a = u.get(attr)?;
            Some((u["id"].as_str().unwrap(), at(a["observedAt"].as_str()?), &a["value"]))
        })
        .collect()
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0), |(s, n), v| (s + v, n + 1));
    assert!(n > 0, "no values");
    sum / f64::from(n)
}

fn mean_when(r: &[(&str, At, &Value)], when: impl Fn(&At) -> bool) -> f64 {
    mean(r.iter().filter(|(_, t, _)| when(t)).map(|(_, _, v)| v.as_f64().unwrap()))
}

fn weekday(t: &At) -> bool {
    t.weekday < 5
}

#[test]
fn lights_follow_the_sun() {
    let updates = simulate(Scenario::Street, 2, 300);
    for (id, t, power) in readings(&updates, "Streetlight", "powerState") {
        if (11.0..15.0).contains(&t.hour) {
            assert_eq!(power, "off", "{id} at {}", t.hour);
        }
        if (20.0..23.5).contains(&t.hour) || (1.0..4.5).contains(&t.hour) {
            assert_eq!(power, "on", "{id} at {}", t.hour);
        }
    }
    let level = readings(&updates, "Streetlight", "illuminanceLevel");
    let ok: HashMap<(&str, String), bool> = readings(&updates, "Streetlight", "status")
        .into_iter()
        .map(|(id, t, s)| ((id, format!("{}:{}", t.day, t.hour)), s == "ok"))
        .collect();
    for (id, t, v) in level {
        if ok[&(id, format!("{}:{}", t.day, t.hour))] && (1.0..4.5).contains(&t.hour) {
            assert_eq!(v, 0.5, "dimmed after midnight");
        }
    }
}

#[test]
fn traffic_and_air_follow_the_week() {
    let updates = simulate(Scenario::Street, 7, 300);
    let flow = readings(&updates, "TrafficFlowObserved", "intensity");
    let rush = mean_when(&flow, |t| weekday(t) && (7.5..8.5).contains(&t.hour));
    let night = mean_when(&flow, |t| (2.0..4.0).contains(&t.hour));
    assert!(rush > 4.0 * night, "rush {rush} vs night {night}");
    let no2 = readings(&updates, "AirQualityObserved", "no2");
    let weekday_morning = mean_when(&no2, |t| weekday(t) && (7.0..9.0).contains(&t.hour));
    let weekend_morning = mean_when(&no2, |t| !weekday(t) && (7.0..9.0).contains(&t.hour));
    assert!(weekday_morning > 1.3 * weekend_morning, "NO2 {weekday_morning} on weekdays vs {weekend_morning}");
    let o3 = readings(&updates, "AirQualityObserved", "o3");
    assert!(
        mean_when(&o3, |t| (14.0..16.0).contains(&t.hour)) > 1.5 * mean_when(&o3, |t| (5.0..7.0).contains(&t.hour))
    );
    for (_, _, level) in readings(&updates, "AirQualityObserved", "airQualityLevel") {
        assert!(["good", "moderate", "unhealthy", "veryUnhealthy"].contains(&level.as_str().unwrap()));
    }
    let parking = readings(&updates, "ParkingSpot", "status");
    let occupied = |when: &dyn Fn(&At) -> bool| {
        mean(parking.iter().filter(|(_, t, _)| when(t)).map(|(_, _, s)| if *s == "occupied" { 1.0 } else { 0.0 }))
    };
    let busy = occupied(&|t| weekday(t) && (12.0..15.0).contains(&t.hour));
    let empty = occupied(&|t| (2.0..5.0).contains(&t.hour));
    assert!(busy > 0.55 && empty < 0.3, "car park {busy} at lunch, {empty} at night");
}

#[test]
fn machines_work_in_shifts_with_plausible_oee() {
    let updates = simulate(Scenario::Factory, 7, 60);
    let states = readings(&updates, "ManufacturingMachine", "machineState");
    for state in ["running", "idle", "fault"] {
        assert!(states.iter().any(|(_, _, s)| *s == state), "no machine was ever {state}");
    }
    assert!(states.iter().filter(|(_, t, _)| t.weekday == 6).all(|(_, _, s)| *s != "running"), "running on Sunday");
    let cycle: HashMap<&str, f64> =
        updates.iter().filter_map(|u| Some((u["id"].as_str()?, u.get("idealCycleTime")?["value"].as_f64()?))).collect();
    // Each machine's counters on Wednesday at the end of the second shift.
    let last = |attr: &str| -> HashMap<&str, f64> {
        readings(&updates, "ManufacturingMachine", attr)
            .into_iter()
            .filter(|(_, t, _)| t.weekday == 2 && t.hour < 22.0)
            .map(|(id, _, v)| (id, v.as_f64().unwrap()))
            .collect()
    };
    let (planned, run, parts, good) = (last("plannedTime"), last("runTime"), last("partsProduced"), last("goodParts"));
    assert_eq!(planned.len(), 12);
    for (id, planned) in &planned {
        let availability = run[id] / planned;
        let performance = cycle[id] * parts[id] / run[id];
        let quality = good[id] / parts[id];
        assert!(planned > &(15.0 * 3600.0), "{id} planned {planned} s");
        assert!((0.4..=1.0).contains(&availability), "{id} availability {availability}");
        assert!((0.75..=1.0).contains(&performance), "{id} performance {performance}");
        assert!((0.9..=1.0).contains(&quality), "{id} quality {quality}");
    }
}

#[test]
fn the_silver_town_lives() {
    let updates = simulate(Scenario::Silvertown, 3, 30);
    let tasks = readings(&updates, "CareRobot", "taskState");
    for state in ["idle", "busy", "charging"] {
        assert!(tasks.iter().any(|(_, _, s)| *s == state), "no robot was ever {state}");
    }
    for (id, _, b) in readings(&updates, "CareRobot", "batteryLevel") {
        assert!((0.0..=1.0).contains(&b.as_f64().unwrap()), "{id} battery {b}");
    }
    let mut moved: HashMap<&str, Vec<Value>> = HashMap::new();
    for (id, _, p) in readings(&updates, "CareRobot", "location") {
        moved.entry(id).or_default().push(p.clone());
    }
    assert!(moved.values().all(|track| track.iter().any(|p| *p != track[0])), "a robot never moved");
    let mut steps: HashMap<&str, (u32, i64)> = HashMap::new();
    for (id, t, s) in readings(&updates, "Wearable", "stepCount") {
        let s = s.as_i64().unwrap();
        if let Some((day, before)) = steps.get(id) {
            assert!(s >= *before || t.day != *day, "{id}'s steps went down within a day");
        }
        steps.insert(id, (t.day, s));
    }
    for (id, _, hr) in readings(&updates, "Wearable", "heartRate") {
        assert!((35..=200).contains(&hr.as_i64().unwrap()), "{id} heart rate {hr}");
    }
}

#[test]
fn meters_only_count_up_and_alerts_open_then_resolve() {
    let updates = simulate(Scenario::All, 3, 300);
    let mut register: HashMap<&str, f64> = HashMap::new();
    for (id, _, kwh) in readings(&updates, "ACMeasurement", "totalActiveEnergyImport") {
        let kwh = kwh.as_f64().unwrap();
        assert!(register.insert(id, kwh).is_none_or(|before| kwh >= before), "{id}'s register went back");
    }
    for (id, _, litres) in readings(&updates, "WaterConsumptionObserved", "waterConsumption") {
        assert!(litres.as_f64().unwrap() >= 0.0, "{id}");
    }
    let mut alerts: HashMap<&str, &str> = HashMap::new();
    let mut open_per_source: HashMap<(String, String), usize> = HashMap::new();
    for u in updates.iter().filter(|u| u["type"] == "Alert") {
        let id = u["id"].as_str().unwrap();
        let state = u["alertState"]["value"].as_str().unwrap();
        match alerts.insert(id, state) {
            None => {
                assert_eq!(state, "open", "{id} must open first");
                assert!(u["dateIssued"]["value"]["@value"].is_string() && u["alertSource"]["object"].is_string());
                let key = (u["alertSource"]["object"].to_string(), u["subCategory"]["value"].to_string());
                *open_per_source.entry(key).or_default() += 1;
            }
            Some("open") => {
                assert_eq!(state, "resolved", "{id}");
                assert!(u["validTo"]["value"]["@value"].is_string());
                let source = updates.iter().find(|o| o["id"] == id && o.get("alertSource").is_some()).unwrap();
                let key = (source["alertSource"]["object"].to_string(), source["subCategory"]["value"].to_string());
                *open_per_source.get_mut(&key).unwrap() -= 1;
            }
            Some(before) => panic!("{id} went from {before} to {state}"),
        }
        assert!(open_per_source.values().all(|n| *n <= 1), "two open alerts of one kind for one device");
    }
    let severities: Vec<&str> = updates.iter().filter_map(|u| u.get("severity")?["value"].as_str()).collect();
    assert!(severities.iter().all(|s| ["informational", "low", "medium", "high", "critical"].contains(s)));
    assert!(alerts.values().any(|s| *s == "resolved"));
}
