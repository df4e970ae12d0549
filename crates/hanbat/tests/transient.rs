//! Transient entities and attributes (§4.22 of V1.9): gone from the instant `expiresAt` passes.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed assertion

mod common;

use common::{TestBroker, assert_problem};
use hanbat_model::Timestamp;
use serde_json::json;
use std::time::Duration;

/// An NGSI-LD DateTime `ms` milliseconds from now (negative: in the past).
fn in_ms(ms: i64) -> String {
    Timestamp::from_micros(Timestamp::now().micros() + ms * 1000).canonical()
}

async fn entities_and_attributes_expire(b: &TestBroker) {
    let soon = in_ms(800);
    let r = b
        .post("/entities", &json!({"id": "urn:ngsi-ld:Alert:1", "type": "Alert", "expiresAt": soon, "level": 3}))
        .await;
    assert_eq!(r.status(), 201);
    let r = b
        .post(
            "/entities",
            &json!({"id": "urn:ngsi-ld:Sensor:1", "type": "Sensor",
                "speed": [{"type": "Property", "value": 10}, {"type": "Property", "value": 20, "datasetId": "urn:ngsi-ld:d:1", "expiresAt": soon}],
                "reading": {"type": "Property", "value": 1, "expiresAt": soon}}),
        )
        .await;
    assert_eq!(r.status(), 201);
    // expiresAt is a system-managed member: only shown with sysAttrs.
    assert!(!b.get("/entities/urn:ngsi-ld:Sensor:1").await.text().await.unwrap().contains("expiresAt"));
    let e = b.get_json("/entities/urn:ngsi-ld:Sensor:1?options=sysAttrs").await;
    assert_eq!(e["reading"]["expiresAt"], soon);
    assert_eq!(b.get_json("/entities/urn:ngsi-ld:Alert:1?options=sysAttrs").await["expiresAt"], soon);
    // So it is in history: an instance recorded with expiresAt keeps it, shown with sysAttrs.
    let history =
        "/temporal/entities/urn:ngsi-ld:Sensor:1?timeproperty=createdAt&timerel=after&timeAt=2020-01-01T00:00:00Z";
    assert!(!b.get(history).await.text().await.unwrap().contains("expiresAt"));
    let te = b.get_json(&format!("{history}&options=sysAttrs")).await;
    assert_eq!(te["reading"][0]["expiresAt"], soon, "{te}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_problem(b.get("/entities/urn:ngsi-ld:Alert:1").await, 404, "ResourceNotFound").await;
    let e = b.get_json("/entities/urn:ngsi-ld:Sensor:1").await;
    assert!(e.get("reading").is_none());
    assert_eq!(e["speed"], json!({"type": "Property", "value": 10}));
    // The sweep removes it from the store too: the id can be created again.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let r = b.post("/entities", &json!({"id": "urn:ngsi-ld:Alert:1", "type": "Alert"})).await;
    assert_eq!(r.status(), 201);
}

async fn expiry_set_by_merge(b: &TestBroker) {
    let r = b.post("/entities", &json!({"id": "urn:ngsi-ld:Job:1", "type": "Job", "step": 1})).await;
    assert_eq!(r.status(), 201);
    let r = b.patch("/entities/urn:ngsi-ld:Job:1", &json!({"expiresAt": in_ms(30_000)})).await;
    assert_eq!(r.status(), 204);
    b.get_json("/entities/urn:ngsi-ld:Job:1").await;
    // `urn:ngsi-ld:null` ends the expiry: the entity outlives the instant it was due.
    let r = b.patch("/entities/urn:ngsi-ld:Job:1", &json!({"expiresAt": in_ms(400)})).await;
    assert_eq!(r.status(), 204);
    let e = b.get_json("/entities/urn:ngsi-ld:Job:1?options=sysAttrs").await;
    assert!(e.get("expiresAt").is_some(), "{e}");
    let r = b.patch("/entities/urn:ngsi-ld:Job:1", &json!({"expiresAt": "urn:ngsi-ld:null"})).await;
    assert_eq!(r.status(), 204);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let e = b.get_json("/entities/urn:ngsi-ld:Job:1?options=sysAttrs").await;
    assert!(e.get("expiresAt").is_none(), "{e}");
    let unexpiring = json!({"id": "urn:ngsi-ld:Job:3", "type": "Job", "expiresAt": "urn:ngsi-ld:null"});
    for path in ["/entities", "/temporal/entities"] {
        assert_problem(b.post(path, &unexpiring).await, 400, "BadRequestData").await;
    }
    let r = b.patch("/entities/urn:ngsi-ld:Job:1", &json!({"expiresAt": "2020-01-01T00:00:00Z"})).await;
    assert_eq!(r.status(), 204);
    assert_problem(b.get("/entities/urn:ngsi-ld:Job:1").await, 404, "ResourceNotFound").await;
    for bad in ["not-a-date", "2026-13-45T00:00:00Z", "2026-08-10T12:00:00+02:00"] {
        let r = b.post("/entities", &json!({"id": "urn:ngsi-ld:Job:2", "type": "Job", "expiresAt": bad})).await;
        assert_problem(r, 400, "BadRequestData").await;
    }
}

/// History of a transient attribute goes with it (its instances carry its expiresAt, kept by
/// partial updates); a durable sibling's history stays, and so does the history of an entity
/// that expired, as after a deletion.
async fn history_of_what_expired(b: &TestBroker) {
    let soon = in_ms(1000);
    let r = b
        .post(
            "/entities",
            &json!({"id": "urn:ngsi-ld:Building:1", "type": "Building",
                "flash": {"type": "Property", "value": 10, "expiresAt": soon},
                "steady": {"type": "Property", "value": 100}}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = b
        .post("/entities", &json!({"id": "urn:ngsi-ld:Building:2", "type": "Building", "expiresAt": soon, "t": 7}))
        .await;
    assert_eq!(r.status(), 201);
    let r = b.patch("/entities/urn:ngsi-ld:Building:1/attrs/flash", &json!({"type": "Property", "value": 11})).await;
    assert_eq!(r.status(), 204);
    let r = b.patch("/entities/urn:ngsi-ld:Building:2/attrs/t", &json!({"type": "Property", "value": 8})).await;
    assert_eq!(r.status(), 204);
    let values = |te: &serde_json::Value, attr: &str| -> Vec<i64> {
        let mut v: Vec<i64> =
            te[attr]["values"].as_array().map(|a| a.iter().filter_map(|p| p[0].as_i64()).collect()).unwrap_or_default();
        v.sort_unstable();
        v
    };
    let history = |id: &str| {
        format!(
            "/temporal/entities/urn:ngsi-ld:Building:{id}?timerel=before&timeAt=2100-01-01T00:00:00Z&timeproperty=modifiedAt&options=temporalValues"
        )
    };
    assert_eq!(values(&b.get_json(&history("1")).await, "flash"), vec![10, 11]);
    // Past the expiry and the sweep (every 500 ms) that deletes the attribute: its deletion
    // is history of a transient instance too, and expires with it.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let te = b.get_json(&history("1")).await;
    assert!(te.get("flash").is_none(), "{te}");
    let deletions =
        "/temporal/entities/urn:ngsi-ld:Building:1?timerel=before&timeAt=2100-01-01T00:00:00Z&timeproperty=deletedAt";
    assert!(b.get_json(deletions).await.get("flash").is_none());
    assert_eq!(values(&te, "steady"), vec![100]);
    assert_problem(b.get("/entities/urn:ngsi-ld:Building:2").await, 404, "ResourceNotFound").await;
    assert_eq!(values(&b.get_json(&history("2")).await, "t"), vec![7, 8]);
}

/// `lastN` over compacted history: an expired newest instance is not one of the N latest, so
/// the older chunk that holds the answer is still read.
async fn last_n_skips_expired_instances(b: &TestBroker) {
    let observed =
        |m: i64| Timestamp::from_micros(Timestamp::now().micros() - 600_000_000 + m * 60_000_000).canonical();
    let r = b
        .post(
            "/entities",
            &json!({"id": "urn:ngsi-ld:Gauge:1", "type": "Gauge",
                "level": {"type": "Property", "value": 1, "observedAt": observed(0)}}),
        )
        .await;
    assert_eq!(r.status(), 201);
    // The embedded store compacts every second: the two values end in separate chunks.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let transient = json!({"type": "Property", "value": 2, "observedAt": observed(1), "expiresAt": in_ms(500)});
    assert_eq!(b.patch("/entities/urn:ngsi-ld:Gauge:1/attrs/level", &transient).await.status(), 204);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let te = b.get_json("/temporal/entities/urn:ngsi-ld:Gauge:1?lastN=1&options=temporalValues").await;
    let values: Vec<i64> = te["level"]["values"].as_array().unwrap().iter().map(|p| p[0].as_i64().unwrap()).collect();
    assert_eq!(values, [1], "{te}");
}

store_tests! {
    entities_and_attributes_expire,
    expiry_set_by_merge,
    history_of_what_expired,
    last_n_skips_expired_instances,
}
