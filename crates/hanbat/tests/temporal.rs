//! The temporal API (§5.6.11–5.7.4, §6.18–6.22 of V1.8.1) over HTTP: what each kind of write
//! records, every endpoint, time windows, lastN, filters, the representations, aggregation
//! checked against values computed here from the samples written, pagination of instances,
//! history edits, errors, and retention.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed assertion

mod common;

use common::{TestBroker, assert_problem};
use hanbat_model::Timestamp;
use hanbat_model::time::format_micros;
use serde_json::{Value, json};
use std::collections::BTreeSet;

const E: &str = "urn:ngsi-ld:Sensor:t1";

/// `2024-05-01T00:00:00Z` plus `minutes`.
fn at(minutes: i64) -> String {
    format_micros(micros("2024-05-01T00:00:00Z") + minutes * 60_000_000)
}

fn micros(text: &str) -> i64 {
    Timestamp::parse(text).unwrap().micros()
}

/// An attribute's instances in a temporal entity (a lone instance is also a list).
fn instances(entity: &Value, attr: &str) -> Vec<Value> {
    match &entity[attr] {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        one => vec![one.clone()],
    }
}

/// The values of an attribute's instances; numbers written as `2.0` compare as `2`.
fn values(entity: &Value, attr: &str) -> Vec<Value> {
    let integral = |v: Value| match v.as_f64() {
        Some(x) if x.fract() == 0.0 => json!(x as i64),
        _ => v,
    };
    instances(entity, attr).iter().map(|i| integral(i["value"].clone())).collect()
}

fn instance_ids(entity: &Value, attr: &str) -> BTreeSet<String> {
    instances(entity, attr).iter().map(|i| i["instanceId"].as_str().unwrap().to_string()).collect()
}

/// A Sensor with `attr` observed at each (minute, value), in one `POST /temporal/entities`.
fn temporal_body(id: &str, kind: &str, attr: &str, samples: &[(i64, f64)]) -> Value {
    let list: Vec<Value> =
        samples.iter().map(|(m, v)| json!({"type": "Property", "value": v, "observedAt": at(*m)})).collect();
    json!({"id": id, "type": kind, attr: list})
}

async fn write_samples(b: &TestBroker, id: &str, attr: &str, samples: &[(i64, f64)]) {
    let r = b.post("/temporal/entities", &temporal_body(id, "Sensor", attr, samples)).await;
    assert!([201, 204].contains(&r.status().as_u16()), "{}", r.text().await.unwrap());
}

async fn status(r: reqwest::Response, expected: u16) {
    let code = r.status().as_u16();
    assert_eq!(code, expected, "{}", r.text().await.unwrap());
}

/// Every kind of entity write records its instances: each with an instanceId, observedAt as
/// sent, createdAt/modifiedAt when recorded, and deletions with deletedAt.
async fn writes_of_every_kind_are_recorded(b: &TestBroker) {
    let temp = |v: i64, m: i64| json!({"type": "Property", "value": v, "observedAt": at(m)});
    let created =
        json!({"id": E, "type": "Sensor", "temperature": temp(20, 0), "humidity": {"type": "Property", "value": 50}});
    status(b.post("/entities", &created).await, 201).await;
    status(b.patch(&format!("/entities/{E}/attrs"), &json!({"temperature": temp(21, 1)})).await, 204).await;
    status(
        b.post(&format!("/entities/{E}/attrs"), &json!({"pressure": {"type": "Property", "value": 1000}})).await,
        204,
    )
    .await;
    status(b.patch(&format!("/entities/{E}"), &json!({"temperature": temp(22, 2)})).await, 204).await;
    status(b.patch(&format!("/entities/{E}/attrs/temperature"), &json!({"value": 23, "observedAt": at(3)})).await, 204)
        .await;
    let replaced = json!({"type": "Sensor", "temperature": temp(24, 4), "humidity": {"type": "Property", "value": 55}});
    status(b.put(&format!("/entities/{E}"), &replaced).await, 204).await;
    status(b.delete(&format!("/entities/{E}/attrs/humidity")).await, 204).await;

    let te = b.get_json(&format!("/temporal/entities/{E}?options=sysAttrs")).await;
    assert_eq!(te["id"], E);
    assert_eq!(te["type"], "Sensor");
    assert_eq!(values(&te, "temperature"), [20, 21, 22, 23, 24].map(|v| json!(v)), "{te}");
    let observed: Vec<Value> = instances(&te, "temperature").iter().map(|i| i["observedAt"].clone()).collect();
    assert_eq!(observed, (0..5).map(|m| json!(at(m))).collect::<Vec<_>>());
    // Every instance: its own id, and when it was recorded.
    let mut ids = BTreeSet::new();
    for attr in ["temperature", "humidity", "pressure"] {
        for i in instances(&te, attr) {
            assert!(ids.insert(i["instanceId"].as_str().unwrap().to_string()), "instanceId repeated: {te}");
            assert!(i["instanceId"].as_str().unwrap().contains(':'), "instanceId is a URI: {i}");
            let created = micros(i["createdAt"].as_str().unwrap());
            assert_eq!(i["createdAt"], i["modifiedAt"], "{i}");
            assert!(created > micros("2025-01-01T00:00:00Z"), "createdAt is the recording instant: {i}");
        }
    }
    assert_eq!(ids.len(), 5 + 3 + 2);
    // Deletions are instances too: the replace removed pressure, the delete removed humidity.
    let humidity = instances(&te, "humidity");
    assert_eq!(values(&te, "humidity")[..2], [json!(50), json!(55)]);
    assert_eq!(humidity[2]["value"], "urn:ngsi-ld:null", "{te}");
    assert!(humidity[2]["deletedAt"].is_string(), "{te}");
    assert!(humidity[..2].iter().all(|i| i.get("deletedAt").is_none()), "{te}");
    let pressure = instances(&te, "pressure");
    assert_eq!(pressure[0]["value"], 1000);
    assert!(pressure[1]["deletedAt"].is_string(), "{te}");
    // Recording instants follow the writes.
    let recorded: Vec<i64> =
        instances(&te, "temperature").iter().map(|i| micros(i["createdAt"].as_str().unwrap())).collect();
    assert!(recorded.windows(2).all(|w| w[0] < w[1]), "{recorded:?}");
    assert!(micros(pressure[1]["deletedAt"].as_str().unwrap()) < micros(humidity[2]["deletedAt"].as_str().unwrap()));

    // Deleting the entity records the deletion of what it had; its history stays.
    status(b.delete(&format!("/entities/{E}")).await, 204).await;
    let te = b.get_json(&format!("/temporal/entities/{E}?options=sysAttrs")).await;
    let temperature = instances(&te, "temperature");
    assert_eq!(temperature.len(), 6, "{te}");
    assert!(temperature[5]["deletedAt"].is_string(), "{te}");
    assert!(te["deletedAt"].is_string(), "the entity's deletion: {te}");
    assert_eq!(instances(&te, "humidity").len(), 3, "humidity was already deleted: {te}");
}

/// Batch operations record history as single writes do.
async fn batch_operations_are_recorded(b: &TestBroker) {
    let e = |id: &str, v: i64, m: i64| json!({"id": id, "type": "Sensor", "temperature": {"type": "Property", "value": v, "observedAt": at(m)}});
    let (a, c) = ("urn:ngsi-ld:Sensor:a", "urn:ngsi-ld:Sensor:c");
    status(b.post("/entityOperations/create", &json!([e(a, 1, 0), e(c, 1, 0)])).await, 201).await;
    status(b.post("/entityOperations/upsert", &json!([e(a, 2, 1), e("urn:ngsi-ld:Sensor:d", 9, 0)])).await, 201).await;
    status(b.post("/entityOperations/upsert?options=update", &json!([e(a, 3, 2)])).await, 204).await;
    status(b.post("/entityOperations/update", &json!([e(a, 4, 3), e(c, 2, 1)])).await, 204).await;
    status(b.post("/entityOperations/merge", &json!([e(a, 5, 4)])).await, 204).await;
    status(b.post("/entityOperations/delete", &json!([c])).await, 204).await;

    let te = b.get_json(&format!("/temporal/entities/{a}")).await;
    assert_eq!(values(&te, "temperature"), [1, 2, 3, 4, 5].map(|v| json!(v)), "{te}");
    let te = b.get_json(&format!("/temporal/entities/{c}?options=sysAttrs")).await;
    let temperature = instances(&te, "temperature");
    assert_eq!(temperature.len(), 3, "{te}");
    assert_eq!(temperature[..2].iter().map(|i| i["value"].clone()).collect::<Vec<_>>(), [json!(1), json!(2)]);
    assert!(temperature[2]["deletedAt"].is_string(), "{te}");
    let te = b.get_json("/temporal/entities/urn:ngsi-ld:Sensor:d").await;
    assert_eq!(values(&te, "temperature"), [json!(9)]);
}

/// Every endpoint of §6.18–6.22: create and add instances, retrieve, query (GET and POST),
/// patch and delete one instance, delete an attribute's history, delete the temporal entity.
async fn every_endpoint(b: &TestBroker) {
    let r = b.post("/temporal/entities", &temporal_body(E, "Sensor", "speed", &[(0, 10.0), (1, 11.0)])).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], format!("/ngsi-ld/v1/temporal/entities/{E}"));
    // Creating it again adds instances.
    status(b.post("/temporal/entities", &temporal_body(E, "Sensor", "speed", &[(2, 12.0)])).await, 204).await;
    // The entity holds the latest instance of each attribute.
    let current = b.get_json(&format!("/entities/{E}")).await;
    assert_eq!(current["speed"]["value"], 12.0);
    let body = json!({"speed": [{"type": "Property", "value": 13, "observedAt": at(3)}],
                      "fuel": [{"type": "Property", "value": 50, "observedAt": at(0)},
                               {"type": "Property", "value": 40, "observedAt": at(3)}]});
    status(b.post(&format!("/temporal/entities/{E}/attrs"), &body).await, 204).await;
    let r = b.post("/temporal/entities/urn:ngsi-ld:Sensor:none/attrs", &body).await;
    assert_problem(r, 404, "ResourceNotFound").await;

    let te = b.get_json(&format!("/temporal/entities/{E}")).await;
    assert_eq!(values(&te, "speed"), [10, 11, 12, 13].map(|v| json!(v)));
    assert_eq!(values(&te, "fuel"), [json!(50), json!(40)]);
    let listed = b.get_json("/temporal/entities?type=Sensor").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0], te);
    let r =
        b.post("/temporal/entityOperations/query", &json!({"type": "Query", "entities": [{"type": "Sensor"}]})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()[0], te);
    let r = b
        .post(
            "/temporal/entityOperations/query",
            &json!({"type": "Query", "entities": [{"type": "Sensor"}], "attrs": ["fuel"],
                    "temporalQ": {"timerel": "after", "timeAt": at(1)}}),
        )
        .await;
    let queried: Value = r.json().await.unwrap();
    assert_eq!(values(&queried[0], "fuel"), [json!(40)], "{queried}");
    assert!(queried[0].get("speed").is_none(), "{queried}");

    // Patch one instance: its value changes, nothing else does.
    let speed = instances(&te, "speed");
    let second = speed[1]["instanceId"].as_str().unwrap();
    let path = format!("/temporal/entities/{E}/attrs/speed/{second}");
    status(b.patch(&path, &json!({"speed": {"type": "Property", "value": 111}})).await, 204).await;
    let te = b.get_json(&format!("/temporal/entities/{E}")).await;
    assert_eq!(values(&te, "speed"), [10, 111, 12, 13].map(|v| json!(v)));
    assert_eq!(instances(&te, "speed")[1]["instanceId"], second);
    assert_eq!(instances(&te, "speed")[1]["observedAt"], at(1));
    assert_eq!(b.get_json(&format!("/entities/{E}")).await["speed"]["value"], 13.0, "the entity is not changed");
    // Delete it: gone, once.
    status(b.delete(&path).await, 204).await;
    assert_eq!(values(&b.get_json(&format!("/temporal/entities/{E}")).await, "speed"), [10, 12, 13].map(|v| json!(v)));
    assert_problem(b.delete(&path).await, 404, "ResourceNotFound").await;
    let r = b.patch(&path, &json!({"value": 1})).await;
    assert_problem(r, 404, "ResourceNotFound").await;
    let r = b.delete(&format!("/temporal/entities/{E}/attrs/speed/not-a-uri")).await;
    assert_problem(r, 400, "BadRequestData").await;

    // Delete an attribute's history.
    status(b.delete(&format!("/temporal/entities/{E}/attrs/fuel")).await, 204).await;
    let te = b.get_json(&format!("/temporal/entities/{E}")).await;
    assert!(te.get("fuel").is_none(), "{te}");
    assert_eq!(values(&te, "speed").len(), 3);
    assert_problem(b.delete(&format!("/temporal/entities/{E}/attrs/fuel")).await, 404, "ResourceNotFound").await;

    // Delete the temporal entity (and the entity it describes).
    status(b.delete(&format!("/temporal/entities/{E}")).await, 204).await;
    assert_problem(b.get(&format!("/temporal/entities/{E}")).await, 404, "ResourceNotFound").await;
    assert_problem(b.get(&format!("/entities/{E}")).await, 404, "ResourceNotFound").await;
    assert_problem(b.delete(&format!("/temporal/entities/{E}")).await, 404, "ResourceNotFound").await;
    assert_eq!(b.get_json("/temporal/entities?type=Sensor").await, json!([]));
}

/// The instants of an instance for each time property, as the broker reports them.
fn instant(i: &Value, property: &str) -> Option<i64> {
    i.get(property).and_then(Value::as_str).map(micros)
}

/// Every `timerel` × `timeproperty`: the instances returned are those whose instant of that
/// property lies in the window, as computed here from the unfiltered history.
async fn every_timerel_and_timeproperty(b: &TestBroker) {
    // Instances observed at minutes 0..6, each recorded by a write of its own, then deleted
    // and written again, so that every property has instants on both sides of each pivot.
    for m in 0..6 {
        let body = json!({"level": [{"type": "Property", "value": m, "observedAt": at(m * 10)}]});
        if m == 0 {
            let r = b.post("/temporal/entities", &json!({"id": E, "type": "Sensor", "level": body["level"]})).await;
            status(r, 201).await;
        } else {
            status(b.post(&format!("/temporal/entities/{E}/attrs"), &body).await, 204).await;
        }
        if m % 2 == 1 {
            status(b.delete(&format!("/entities/{E}/attrs/level")).await, 204).await;
        }
    }
    let all = b.get_json(&format!("/temporal/entities/{E}?options=sysAttrs")).await;
    let everything = instances(&all, "level");
    assert_eq!(everything.len(), 9, "6 writes and 3 deletions: {all}");
    for property in ["observedAt", "createdAt", "modifiedAt", "deletedAt"] {
        let mut times: Vec<(i64, String)> = everything
            .iter()
            .filter_map(|i| Some((instant(i, property)?, i["instanceId"].as_str()?.to_string())))
            .collect();
        times.sort();
        assert!(times.len() >= 3, "{property}: {all}");
        let (lo, hi) = (times[1].0, times[times.len() - 1].0);
        let windows = [
            ("before", format!("timerel=before&timeAt={}", format_micros(hi)), (i64::MIN, hi)),
            ("after", format!("timerel=after&timeAt={}", format_micros(lo)), (lo, i64::MAX)),
            (
                "between",
                format!("timerel=between&timeAt={}&endTimeAt={}", format_micros(lo), format_micros(hi)),
                (lo, hi),
            ),
        ];
        for (rel, query, (from, to)) in windows {
            let expected: BTreeSet<String> =
                times.iter().filter(|(t, _)| *t >= from && *t < to).map(|(_, id)| id.clone()).collect();
            assert!(!expected.is_empty() && expected.len() < times.len(), "{property} {rel}: a window that cuts");
            let path = format!("/temporal/entities/{E}?timeproperty={property}&{query}&options=sysAttrs");
            let te = b.get_json(&path).await;
            assert_eq!(instance_ids(&te, "level"), expected, "{property} {rel}: {te}");
            // The query endpoint agrees.
            let listed = b.get_json(&format!("/temporal/entities?type=Sensor&timeproperty={property}&{query}")).await;
            assert_eq!(instance_ids(&listed[0], "level"), expected, "{property} {rel} (query): {listed}");
        }
    }
    // A window with nothing in it: the entity is left out of queries, and retrieved empty.
    let empty = format!("timerel=before&timeAt={}", at(-10));
    assert_eq!(b.get_json(&format!("/temporal/entities?type=Sensor&{empty}")).await, json!([]));
    let te = b.get_json(&format!("/temporal/entities/{E}?{empty}")).await;
    assert!(instances(&te, "level").is_empty(), "{te}");
}

/// `lastN`: the N latest instances of each attribute in the window, in time order.
async fn last_n(b: &TestBroker) {
    let samples: Vec<(i64, f64)> = (0..15).map(|m| (m, m as f64)).collect();
    write_samples(b, E, "a", &samples).await;
    write_samples(b, E, "b", &samples[..3]).await;
    let te = b.get_json(&format!("/temporal/entities/{E}?lastN=4")).await;
    assert_eq!(values(&te, "a"), [11, 12, 13, 14].map(|v| json!(v)), "{te}");
    assert_eq!(values(&te, "b"), [0, 1, 2].map(|v| json!(v)), "{te}");
    let te = b.get_json(&format!("/temporal/entities/{E}?lastN=2&attrs=a&timerel=before&timeAt={}", at(10))).await;
    assert_eq!(values(&te, "a"), [json!(8), json!(9)]);
    assert!(te.get("b").is_none());
    let listed = b.get_json("/temporal/entities?type=Sensor&lastN=1").await;
    assert_eq!(values(&listed[0], "a"), [json!(14)]);
    assert_eq!(values(&listed[0], "b"), [json!(2)]);
}

/// `lastN` on compacted history (chunks of a day of minute samples): the latest instances
/// come from the latest chunks, and an instance without observedAt (a deletion) is placed by
/// when it was recorded.
async fn last_n_on_compacted_history(b: &TestBroker) {
    let samples: Vec<(i64, f64)> = (0..3000).map(|m| (m, (m % 97) as f64)).collect();
    write_samples(b, E, "a", &samples).await;
    status(b.delete(&format!("/entities/{E}/attrs/a")).await, 204).await;
    // Maintenance compacts the log into chunks every 5 s.
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    let te = b.get_json(&format!("/temporal/entities/{E}?lastN=3")).await;
    let a = instances(&te, "a");
    assert_eq!(a.len(), 3, "{te}");
    assert_eq!(values(&te, "a")[..2], [json!(2998 % 97), json!(2999 % 97)], "{te}");
    assert_eq!(a[2]["value"], "urn:ngsi-ld:null", "{te}");
    let te = b.get_json(&format!("/temporal/entities/{E}?lastN=2&timerel=before&timeAt={}", at(1500))).await;
    assert_eq!(values(&te, "a"), [json!(1498 % 97), json!(1499 % 97)], "{te}");
    let te = b.get_json(&format!("/temporal/entities/{E}?lastN=2&timeproperty=createdAt&options=sysAttrs")).await;
    assert_eq!(instances(&te, "a").len(), 2, "{te}");
    let all =
        b.get_json(&format!("/temporal/entities/{E}?attrs=a&options=aggregatedValues&aggrMethods=totalCount")).await;
    assert_eq!(all["a"]["totalCount"][0][0], 3001, "{all}");
}

/// `attrs`, `type`, `id`, `idPattern`, `q` and geo-queries select on history.
async fn attrs_and_entity_filters(b: &TestBroker) {
    for (i, kind, lon) in [(1, "Sensor", 127.38), (2, "Sensor", 127.50), (3, "Meter", 127.38)] {
        let body = json!({
            "id": format!("urn:ngsi-ld:{kind}:{i}"), "type": kind,
            "temperature": [{"type": "Property", "value": 10 * i, "observedAt": at(0)},
                            {"type": "Property", "value": 10 * i + 1, "observedAt": at(1)}],
            "humidity": [{"type": "Property", "value": 50, "observedAt": at(0)}],
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, 36.35]}},
        });
        status(b.post("/temporal/entities", &body).await, 201).await;
    }
    let ids = |v: &Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
    };
    let sensors = b.get_json("/temporal/entities?type=Sensor").await;
    assert_eq!(ids(&sensors), ["urn:ngsi-ld:Sensor:1", "urn:ngsi-ld:Sensor:2"]);
    let one = b.get_json("/temporal/entities?type=Sensor&id=urn:ngsi-ld:Sensor:2").await;
    assert_eq!(ids(&one), ["urn:ngsi-ld:Sensor:2"]);
    let pattern = b.get_json("/temporal/entities?type=Sensor,Meter&idPattern=.*:[13]$").await;
    assert_eq!(ids(&pattern), ["urn:ngsi-ld:Sensor:1", "urn:ngsi-ld:Meter:3"]);
    let hot = b.get_json("/temporal/entities?type=Sensor,Meter&q=temperature>25").await;
    assert_eq!(ids(&hot), ["urn:ngsi-ld:Meter:3"]);
    let near = b
        .get_json(
            "/temporal/entities?type=Sensor&georel=near;maxDistance==2000&geometry=Point&coordinates=[127.38,36.35]",
        )
        .await;
    assert_eq!(ids(&near), ["urn:ngsi-ld:Sensor:1"]);
    let only = b.get_json("/temporal/entities?attrs=humidity").await;
    assert_eq!(ids(&only).len(), 3);
    for e in only.as_array().unwrap() {
        assert!(e.get("temperature").is_none() && e.get("location").is_none(), "{e}");
        assert_eq!(values(e, "humidity"), [json!(50)]);
    }
    let te = b.get_json("/temporal/entities/urn:ngsi-ld:Sensor:1?attrs=temperature").await;
    assert_eq!(values(&te, "temperature"), [json!(10), json!(11)]);
    assert!(te.get("humidity").is_none());
    let r = b.get("/temporal/entities/urn:ngsi-ld:Sensor:1?attrs=pressure").await;
    assert_problem(r, 404, "ResourceNotFound").await;
    let r = b.get("/temporal/entities?id=urn:ngsi-ld:Sensor:1").await;
    let p = assert_problem(r, 400, "BadRequestData").await;
    assert!(p["detail"].as_str().unwrap().contains("type"), "{p}");
}

/// `options=temporalValues`: per attribute, `[value, instant]` pairs.
async fn temporal_values(b: &TestBroker) {
    write_samples(b, E, "speed", &[(0, 1.5), (1, 2.0), (2, 2.5)]).await;
    let body = json!({"state": [{"type": "Property", "value": "on", "observedAt": at(0)},
                                {"type": "Property", "value": "off", "observedAt": at(2)}]});
    status(b.post(&format!("/temporal/entities/{E}/attrs"), &body).await, 204).await;
    let te = b.get_json(&format!("/temporal/entities/{E}?options=temporalValues")).await;
    assert_eq!(te["speed"], json!({"type": "Property", "values": [[1.5, at(0)], [2.0, at(1)], [2.5, at(2)]]}), "{te}");
    assert_eq!(te["state"], json!({"type": "Property", "values": [["on", at(0)], ["off", at(2)]]}));
    let listed = b.get_json("/temporal/entities?type=Sensor&options=temporalValues&lastN=1").await;
    assert_eq!(listed[0]["speed"]["values"], json!([[2.5, at(2)]]));
}

/// The aggregation methods of §4.5.19 computed from `xs` (stddev: the sample standard
/// deviation, as Stellio computes it; see docs/decisions.md).
fn expected_aggregates(xs: &[f64]) -> Vec<(&'static str, Value)> {
    let n = xs.len() as f64;
    let sum: f64 = xs.iter().sum();
    let mean = sum / n;
    let distinct: BTreeSet<String> = xs.iter().map(|x| x.to_string()).collect();
    let stddev = if xs.len() > 1 {
        json!((xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt())
    } else {
        Value::Null
    };
    vec![
        ("totalCount", json!(xs.len())),
        ("distinctCount", json!(distinct.len())),
        ("sum", json!(sum)),
        ("avg", json!(mean)),
        ("min", json!(xs.iter().copied().fold(f64::INFINITY, f64::min))),
        ("max", json!(xs.iter().copied().fold(f64::NEG_INFINITY, f64::max))),
        ("stddev", stddev),
        ("sumsq", json!(xs.iter().map(|x| x * x).sum::<f64>())),
    ]
}

fn close(actual: &Value, expected: &Value) -> bool {
    match (actual.as_f64(), expected.as_f64()) {
        (Some(a), Some(e)) => (a - e).abs() <= 1e-9 * e.abs().max(1.0),
        _ => actual == expected,
    }
}

/// Checks one aggregated attribute: per method, one row per period `[value, start, end]`.
fn assert_aggregated(attr: &Value, periods: &[(String, String, Vec<f64>)]) {
    assert_eq!(attr["type"], "Property", "{attr:#}");
    let methods: Vec<Vec<(&'static str, Value)>> = periods.iter().map(|(_, _, xs)| expected_aggregates(xs)).collect();
    for (m, (name, _)) in methods[0].iter().enumerate() {
        let rows = attr[name].as_array().unwrap_or_else(|| panic!("{name} missing: {attr}"));
        assert_eq!(rows.len(), periods.len(), "{name}: {attr}");
        for (row, ((start, end, _), expected)) in rows.iter().zip(periods.iter().zip(&methods)) {
            assert!(close(&row[0], &expected[m].1), "{name} over {start}: {} != {}", row[0], expected[m].1);
            assert_eq!(row[1], *start, "{name}: {row}");
            assert_eq!(row[2], *end, "{name}: {row}");
        }
    }
}

const ALL_METHODS: &str = "totalCount,distinctCount,sum,avg,min,max,stddev,sumsq";

/// `options=aggregatedValues` with every method, per hour and over the whole window, checked
/// against values computed here.
async fn aggregated_values(b: &TestBroker) {
    // Three hours of samples every 10 minutes, with repeats (distinctCount) and fractions.
    let samples: Vec<(i64, f64)> = (0..18).map(|i| (i * 10, ((i * 7) % 5) as f64 * 1.5 - 2.0)).collect();
    write_samples(b, E, "speed", &samples).await;
    write_samples(b, "urn:ngsi-ld:Sensor:t2", "speed", &samples[..7]).await;
    let hour = |h: i64| -> Vec<f64> {
        samples.iter().filter(|(m, _)| *m >= h * 60 && *m < (h + 1) * 60).map(|(_, v)| *v).collect()
    };
    let window = format!("timerel=between&timeAt={}&endTimeAt={}", at(0), at(180));
    let path = format!(
        "/temporal/entities/{E}?options=aggregatedValues&aggrMethods={ALL_METHODS}&aggrPeriodDuration=PT1H&{window}"
    );
    let te = b.get_json(&path).await;
    let hours: Vec<(String, String, Vec<f64>)> = (0..3).map(|h| (at(h * 60), at(h * 60 + 60), hour(h))).collect();
    assert_aggregated(&te["speed"], &hours);
    // No period, or PT0S: one period spanning the window.
    let whole = vec![(at(0), at(180), samples.iter().map(|(_, v)| *v).collect::<Vec<_>>())];
    for period in ["", "&aggrPeriodDuration=PT0S"] {
        let path =
            format!("/temporal/entities/{E}?options=aggregatedValues&aggrMethods={ALL_METHODS}{period}&{window}");
        assert_aggregated(&b.get_json(&path).await["speed"], &whole);
    }
    // A window cutting into the samples, and hour periods starting at its start.
    let path = format!(
        "/temporal/entities/{E}?options=aggregatedValues&aggrMethods=sum,avg&aggrPeriodDuration=PT1H\
         &timerel=between&timeAt={}&endTimeAt={}",
        at(30),
        at(150)
    );
    let te = b.get_json(&path).await;
    let span = |from: i64, to: i64| -> Vec<f64> {
        samples.iter().filter(|(m, _)| *m >= from && *m < to).map(|(_, v)| *v).collect()
    };
    for (name, index) in [("sum", 2), ("avg", 3)] {
        let rows = te["speed"][name].as_array().unwrap();
        assert_eq!(rows.len(), 2, "{te}");
        for (row, (from, to)) in rows.iter().zip([(30, 90), (90, 150)]) {
            assert!(close(&row[0], &expected_aggregates(&span(from, to))[index].1), "{name}: {row}");
            assert_eq!(row[1], at(from));
            assert_eq!(row[2], at(to));
        }
    }
    // Over a type, each entity is aggregated on its own; POST query with aggrParams agrees.
    let listed = b
        .get_json(&format!(
            "/temporal/entities?type=Sensor&options=aggregatedValues&aggrMethods={ALL_METHODS}&{window}"
        ))
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_aggregated(&listed[0]["speed"], &whole);
    let first7 = vec![(at(0), at(180), samples[..7].iter().map(|(_, v)| *v).collect::<Vec<_>>())];
    assert_aggregated(&listed[1]["speed"], &first7);
    let r = b
        .post(
            "/temporal/entityOperations/query",
            &json!({"type": "Query", "entities": [{"type": "Sensor"}],
                    "temporalQ": {"timerel": "between", "timeAt": at(0), "endTimeAt": at(180),
                                  "aggrMethods": ALL_METHODS.split(',').collect::<Vec<_>>(), "aggrPeriodDuration": "PT1H"}}),
        )
        .await;
    let queried: Value = r.json().await.unwrap();
    assert_aggregated(&queried[0]["speed"], &hours);
    // One sample: no sample standard deviation.
    let path = format!(
        "/temporal/entities/{E}?options=aggregatedValues&aggrMethods=stddev,avg&timerel=between&timeAt={}&endTimeAt={}",
        at(0),
        at(5)
    );
    let te = b.get_json(&path).await;
    assert_eq!(te["speed"]["stddev"][0][0], Value::Null, "{te}");
    assert!(close(&te["speed"]["avg"][0][0], &json!(samples[0].1)));
}

/// More instances than a response holds (`--temporal-page-size`, 20 by default): 206 with
/// `Content-Range`, and the next request from there returns the rest, across attributes.
async fn instance_pagination(b: &TestBroker) {
    // Two attributes interleaved: 25 + 10 instances over minutes 0..25.
    let a: Vec<(i64, f64)> = (0..25).map(|m| (m, m as f64)).collect();
    let bb: Vec<(i64, f64)> = (0..25).filter(|m| m % 5 < 2).map(|m| (m, 100.0 + m as f64)).collect();
    write_samples(b, E, "a", &a).await;
    write_samples(b, E, "b", &bb).await;
    let total = a.len() + bb.len();
    let mut seen: Vec<(String, Value)> = Vec::new();
    let mut from = at(0);
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 10, "pagination does not end");
        let r = b.get(&format!("/temporal/entities/{E}?timerel=after&timeAt={from}")).await;
        let code = r.status().as_u16();
        let range = r.headers().get("content-range").map(|v| v.to_str().unwrap().to_string());
        let te: Value = r.json().await.unwrap();
        let page: Vec<(String, Value)> = ["a", "b"]
            .iter()
            .flat_map(|n| instances(&te, n).into_iter().map(|i| (i["observedAt"].as_str().unwrap().to_string(), i)))
            .collect();
        if code == 200 {
            assert!(range.is_none());
            seen.extend(page);
            break;
        }
        assert_eq!(code, 206, "{te}");
        assert_eq!(page.len(), 20, "a page holds --temporal-page-size instances: {te}");
        let range = range.expect("206 has Content-Range");
        let last = page.iter().map(|(t, _)| t.clone()).max().unwrap();
        assert_eq!(range, format!("date-time {from}-{last}/*"));
        // Everything up to the last instant returned is in this page; the next starts after it.
        seen.extend(page.into_iter().filter(|(t, _)| *t < last));
        from = last;
    }
    assert!(pages >= 2);
    seen.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(seen.len(), total, "every instance exactly once");
    let ids: BTreeSet<&str> = seen.iter().map(|(_, i)| i["instanceId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), total);

    // lastN pages from the most recent instance backwards.
    let r = b.get(&format!("/temporal/entities/{E}?lastN=24&attrs=a")).await;
    assert_eq!(r.status(), 206);
    let range = r.headers()["content-range"].to_str().unwrap().to_string();
    let te: Value = r.json().await.unwrap();
    assert_eq!(values(&te, "a"), (5..25).map(|v| json!(v)).collect::<Vec<_>>());
    assert_eq!(range, format!("date-time {}-{}/24", at(24), at(5)));
    // A query pages the same way, entity by entity.
    let r = b.get("/temporal/entities?type=Sensor&attrs=a").await;
    assert_eq!(r.status(), 206);
    assert!(r.headers().contains_key("content-range"));
}

/// Parameter errors: 400 BadRequestData with a detail naming what is wrong.
async fn parameter_errors(b: &TestBroker) {
    write_samples(b, E, "speed", &[(0, 1.0)]).await;
    let cases = [
        ("timerel=during&timeAt=2024-05-01T00:00:00Z", "during"),
        ("timerel=before", "timeAt"),
        ("timerel=between&timeAt=2024-05-01T00:00:00Z", "endTimeAt"),
        ("timerel=between&timeAt=2024-05-02T00:00:00Z&endTimeAt=2024-05-01T00:00:00Z", "endTimeAt"),
        ("timerel=after&timeAt=yesterday", "timeAt"),
        ("timeAt=2024-05-01T00:00:00Z", "timerel"),
        ("timeproperty=recordedAt&timerel=after&timeAt=2024-05-01T00:00:00Z", "timeproperty"),
        ("lastN=0", "lastN"),
        ("lastN=-3", "lastN"),
        ("lastN=ten", "lastN"),
        ("options=aggregatedValues", "aggrMethods"),
        ("options=aggregatedValues&aggrMethods=median", "median"),
        ("options=aggregatedValues&aggrMethods=", "aggrMethods"),
        ("options=aggregatedValues&aggrMethods=avg&aggrPeriodDuration=1H", "aggrPeriodDuration"),
        ("options=aggregatedValues&aggrMethods=avg&aggrPeriodDuration=PT", "aggrPeriodDuration"),
        ("options=aggregatedValues&aggrMethods=avg&aggrPeriodDuration=P1H", "aggrPeriodDuration"),
        ("options=aggregatedValues&aggrMethods=avg&aggrPeriodDuration=PT-1H", "aggrPeriodDuration"),
    ];
    for (query, named) in cases {
        for path in [format!("/temporal/entities/{E}?{query}"), format!("/temporal/entities?type=Sensor&{query}")] {
            let p = assert_problem(b.get(&path).await, 400, "BadRequestData").await;
            let detail = p["detail"].as_str().unwrap();
            assert!(detail.contains(named), "{path}: the detail should name '{named}': {detail}");
        }
    }
    let r = b
        .post(
            "/temporal/entityOperations/query",
            &json!({"type": "Query", "entities": [{"type": "Sensor"}], "temporalQ": {"timerel": "before"}}),
        )
        .await;
    assert_problem(r, 400, "BadRequestData").await;
    let r = b.get("/temporal/entities/urn:ngsi-ld:Sensor:none").await;
    assert_problem(r, 404, "ResourceNotFound").await;
    let r = b.delete(&format!("/temporal/entities/{E}/attrs/missing")).await;
    assert_problem(r, 404, "ResourceNotFound").await;
}

/// A scope given over time (§4.18: valid from when it was set until it is replaced) selects,
/// under a scopeQ, the entities whose matching scope held in the window, with only the
/// instances observed while it held; the entity's scope is the latest one.
async fn scope_over_time(b: &TestBroker) {
    let scope = |value: Value, minute: i64| json!({"type": "Property", "value": value, "observedAt": at(minute)});
    let speed = |value: i64, minute: i64| json!({"type": "Property", "value": value, "observedAt": at(minute)});
    let sensors = [
        // /R from 0, replaced by /S at 90; readings at 75 and 105.
        ("urn:ngsi-ld:Sensor:rep", json!([scope(json!("/R"), 0), scope(json!("/S"), 90)]), [(1, 75), (2, 105)]),
        // /M set at 70 only; readings at 65 and 75.
        ("urn:ngsi-ld:Sensor:mid", json!([scope(json!(["/M", "/Q"]), 70)]), [(3, 65), (4, 75)]),
        // /Z set only after the window.
        ("urn:ngsi-ld:Sensor:late", json!([scope(json!("/Z"), 200)]), [(5, 65), (6, 75)]),
    ];
    for (id, scopes, readings) in &sensors {
        let speeds: Vec<Value> = readings.iter().map(|(v, m)| speed(*v, *m)).collect();
        let body = json!({"id": id, "type": "Sensor", "scope": scopes, "speed": speeds});
        status(b.post("/temporal/entities", &body).await, 201).await;
    }
    // The entity's scope is the latest instance's.
    assert_eq!(b.get_json("/entities/urn:ngsi-ld:Sensor:rep").await["scope"], "/S");
    assert_eq!(b.get_json("/entities/urn:ngsi-ld:Sensor:mid").await["scope"], json!(["/M", "/Q"]));
    let window = format!("timerel=between&timeAt={}&endTimeAt={}", at(60), at(120));
    let query = |scope_q: &str| {
        let path = format!("/temporal/entities?type=Sensor&scopeQ={scope_q}&{window}");
        async move { b.get_json(&path).await.as_array().unwrap().clone() }
    };
    let speeds_of = |entities: &[Value]| -> Vec<(String, Vec<Value>)> {
        let mut out: Vec<_> =
            entities.iter().map(|e| (e["id"].as_str().unwrap().to_string(), values(e, "speed"))).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    };
    assert_eq!(speeds_of(&query("/R").await), vec![("urn:ngsi-ld:Sensor:rep".to_string(), vec![json!(1)])]);
    assert_eq!(speeds_of(&query("/S").await), vec![("urn:ngsi-ld:Sensor:rep".to_string(), vec![json!(2)])]);
    assert_eq!(speeds_of(&query("/M").await), vec![("urn:ngsi-ld:Sensor:mid".to_string(), vec![json!(4)])]);
    assert_eq!(speeds_of(&query("(/M;/Q)").await).len(), 1);
    assert!(query("/Z").await.is_empty(), "a scope set after the window never held in it");
    let any: BTreeSet<String> = query("/%23").await.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(any, BTreeSet::from(["urn:ngsi-ld:Sensor:mid".to_string(), "urn:ngsi-ld:Sensor:rep".to_string()]));
    // A scope instance must hold scopes.
    let bad = json!({"id": "urn:ngsi-ld:Sensor:bad", "type": "Sensor", "scope": [scope(json!("no-slash"), 0)]});
    assert_problem(b.post("/temporal/entities", &bad).await, 400, "BadRequestData").await;
}

/// A burst of changes larger than one compaction pass of the embedded store (4,000 log
/// records) moves into chunks over several passes, none lost: every entity keeps each value
/// it was written.
async fn history_of_a_burst_survives_compaction(b: &TestBroker) {
    const ENTITIES: usize = 2000;
    for round in 0..3 {
        for half in [0..ENTITIES / 2, ENTITIES / 2..ENTITIES] {
            let batch: Vec<Value> = half
                .map(|i| json!({"id": format!("urn:ngsi-ld:Meter:{i}"), "type": "Meter", "energy": round * 10_000 + i}))
                .collect();
            let r = b.post("/entityOperations/upsert", &json!(batch)).await;
            assert!([201, 204].contains(&r.status().as_u16()), "{}", r.text().await.unwrap());
        }
    }
    // Passes run every second, and at once while a backlog remains.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    // Aggregated per entity, as instances are paged 20 to a response: all three values are
    // there when their count is 3 and their sum is 3i + 30,000.
    let mut seen = 0;
    for offset in (0..ENTITIES).step_by(100) {
        let page = b
            .get_json(&format!(
                "/temporal/entities?type=Meter&timeproperty=createdAt&timerel=after&timeAt=2000-01-01T00:00:00Z\
                 &options=aggregatedValues&aggrMethods=totalCount,sum&limit=100&offset={offset}"
            ))
            .await;
        for e in page.as_array().unwrap() {
            let i: f64 = e["id"].as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap();
            assert_eq!(e["energy"]["totalCount"][0][0].as_f64(), Some(3.0), "{e}");
            assert_eq!(e["energy"]["sum"][0][0].as_f64(), Some(3.0 * i + 30_000.0), "{e}");
            seen += 1;
        }
    }
    assert_eq!(seen, ENTITIES);
}

store_tests!(
    history_of_a_burst_survives_compaction,
    scope_over_time,
    writes_of_every_kind_are_recorded,
    batch_operations_are_recorded,
    every_endpoint,
    every_timerel_and_timeproperty,
    last_n,
    last_n_on_compacted_history,
    attrs_and_entity_filters,
    temporal_values,
    aggregated_values,
    instance_pagination,
    parameter_errors,
);

/// `--history-retention`: history recorded longer ago than the retention is pruned by the
/// periodic maintenance; the entity itself stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_old_history() {
    let b = TestBroker::embedded_with(|args| args.history_retention = Some(std::time::Duration::from_secs(1))).await;
    write_samples(&b, E, "speed", &[(0, 1.0), (1, 2.0)]).await;
    assert_eq!(values(&b.get_json(&format!("/temporal/entities/{E}")).await, "speed").len(), 2);
    let start = std::time::Instant::now();
    loop {
        let te = b.get_json(&format!("/temporal/entities/{E}")).await;
        if values(&te, "speed").is_empty() {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "history not pruned: {te}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(b.get_json(&format!("/entities/{E}")).await["speed"]["value"], 2.0);
}
