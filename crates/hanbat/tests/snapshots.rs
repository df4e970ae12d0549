//! Snapshots (§5.16, §6.36–6.38 of V1.9.1): a frozen copy of what queries matched, addressed
//! with the `NGSILD-Snapshot` header (§6.3.22); updates, clones, purges, tenants, expiry, and a
//! snapshot that takes in a context source's entities.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed assertion

mod common;

use common::{TestBroker, assert_problem, vehicle};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use std::time::Duration;

const HEADER: &str = "NGSILD-Snapshot";

/// Creates a snapshot; returns its path (under `/ngsi-ld/v1`).
async fn create(b: &TestBroker, body: &Value) -> String {
    let r = b.post("/snapshots", body).await;
    let status = r.status();
    let location = r.headers().get("location").map(|l| l.to_str().unwrap().to_string());
    assert_eq!(status, 201, "{}", r.text().await.unwrap_or_default());
    let location = location.expect("Location");
    assert!(location.starts_with("/ngsi-ld/v1/snapshots/urn:ngsi-ld:Snapshot:"), "{location}");
    location.trim_start_matches("/ngsi-ld/v1").to_string()
}

/// The snapshot once it is no longer `preparing`.
async fn ready(b: &TestBroker, path: &str) -> Value {
    for _ in 0..100 {
        let snapshot = b.get_json(path).await;
        if snapshot["snapshotStatus"] != "preparing" {
            return snapshot;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("snapshot {path} stayed preparing");
}

async fn through(b: &TestBroker, method: Method, path: &str, snapshot: &str) -> Response {
    b.request(method, path).header(HEADER, snapshot).send().await.unwrap()
}

async fn ids_through(b: &TestBroker, path: &str, snapshot: &str) -> Vec<String> {
    let r = through(b, Method::GET, path, snapshot).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[HEADER], snapshot, "the header is echoed");
    let body: Value = r.json().await.unwrap();
    let mut ids: Vec<String> = body.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

fn fast_vehicles() -> Value {
    json!({"type": "Snapshot",
           "snapshotQueries": [{"type": "Query", "entities": [{"type": "Vehicle"}], "q": "speed>50"}]})
}

async fn freezes_query_results(b: &TestBroker) {
    vehicle(b, "urn:ngsi-ld:Vehicle:fast", 80).await;
    vehicle(b, "urn:ngsi-ld:Vehicle:slow", 30).await;
    let live = b.get_json("/entities/urn:ngsi-ld:Vehicle:fast?options=sysAttrs").await;
    let path = create(b, &fast_vehicles()).await;
    let snapshot = ready(b, &path).await;
    assert_eq!(snapshot["type"], "Snapshot");
    assert_eq!(snapshot["snapshotStatus"], "success", "{snapshot}");
    assert_eq!(snapshot["snapshotPriority"], 5, "the default priority");
    assert_eq!(snapshot["snapshotQueriesDetails"], json!([{"resultStatus": "success"}]));
    for member in ["createdAt", "modifiedAt", "lastUsedAt", "expiresAt"] {
        assert!(snapshot[member].is_string(), "{member}: {snapshot}");
    }
    let id = snapshot["id"].as_str().unwrap();

    assert_eq!(ids_through(b, "/entities?type=Vehicle", id).await, ["urn:ngsi-ld:Vehicle:fast"]);
    // The live entity changes; the copy does not, and keeps the entity's own times.
    let r =
        b.patch("/entities/urn:ngsi-ld:Vehicle:fast/attrs", &json!({"speed": {"type": "Property", "value": 10}})).await;
    assert_eq!(r.status(), 204);
    let frozen: Value =
        through(b, Method::GET, "/entities/urn:ngsi-ld:Vehicle:fast?options=sysAttrs", id).await.json().await.unwrap();
    assert_eq!(frozen["speed"]["value"], 80, "{frozen}");
    assert_eq!(frozen["createdAt"], live["createdAt"]);
    assert_eq!(frozen["speed"]["modifiedAt"], live["speed"]["modifiedAt"]);
    assert_eq!(b.get_json("/entities/urn:ngsi-ld:Vehicle:fast").await["speed"]["value"], 10);
    // Queries through the snapshot filter its copy; counting and types work there too.
    let r = through(b, Method::GET, "/entities?type=Vehicle&q=speed>50&count=true", id).await;
    assert_eq!(r.headers()["NGSILD-Results-Count"], "1");
    let types = through(b, Method::GET, "/types", id).await.json::<Value>().await.unwrap();
    assert_eq!(types["typeList"], json!(["Vehicle"]), "{types}");

    // A write through the snapshot changes its copy only.
    let r = b
        .request(Method::PATCH, "/entities/urn:ngsi-ld:Vehicle:fast/attrs")
        .header(HEADER, id)
        .json(&json!({"speed": {"type": "Property", "value": 99}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let frozen: Value = through(b, Method::GET, "/entities/urn:ngsi-ld:Vehicle:fast", id).await.json().await.unwrap();
    assert_eq!(frozen["speed"]["value"], 99);
    assert_eq!(b.get_json("/entities/urn:ngsi-ld:Vehicle:fast").await["speed"]["value"], 10);

    // Deleted: the header then names nothing.
    assert_eq!(b.delete(&path).await.status(), 204);
    assert_problem(b.get(&path).await, 404, "ResourceNotFound").await;
    assert_problem(through(b, Method::GET, "/entities?type=Vehicle", id).await, 404, "ResourceNotFound").await;
    assert_problem(b.delete(&path).await, 404, "ResourceNotFound").await;
}

async fn validation(b: &TestBroker) {
    vehicle(b, "urn:ngsi-ld:Vehicle:v", 60).await;
    assert_problem(b.post("/snapshots", &json!({"type": "Snapshot"})).await, 400, "BadRequestData").await;
    let temporal = json!({"type": "Snapshot", "snapshotQueries": [{"type": "Query", "entities": [{"type": "Vehicle"}],
        "temporalQ": {"timerel": "after", "timeAt": "2020-01-01T00:00:00Z"}}]});
    assert_problem(b.post("/snapshots", &temporal).await, 400, "BadRequestData").await;
    let mut bad = fast_vehicles();
    bad["snapshotPriority"] = json!(0);
    assert_problem(b.post("/snapshots", &bad).await, 400, "BadRequestData").await;
    let mut bad = fast_vehicles();
    bad["snapshotLifetime"] = json!("one hour");
    assert_problem(b.post("/snapshots", &bad).await, 400, "BadRequestData").await;
    let mut bad = fast_vehicles();
    bad["type"] = json!("Query");
    assert_problem(b.post("/snapshots", &bad).await, 400, "BadRequestData").await;
    let history = json!({"type": "Snapshot", "snapshotTemporalQueries": [{"type": "Query"}]});
    assert_problem(b.post("/snapshots", &history).await, 422, "OperationNotSupported").await;
    let mut named = fast_vehicles();
    named["id"] = json!("urn:ngsi-ld:Snapshot:mine");
    assert_eq!(create(b, &named).await, "/snapshots/urn:ngsi-ld:Snapshot:mine");
    assert_problem(b.post("/snapshots", &named).await, 409, "AlreadyExists").await;

    assert_problem(
        through(b, Method::GET, "/entities?type=Vehicle", "urn:ngsi-ld:Snapshot:absent").await,
        404,
        "ResourceNotFound",
    )
    .await;
    assert_problem(through(b, Method::GET, "/subscriptions", "urn:ngsi-ld:Snapshot:mine").await, 400, "BadRequestData")
        .await;
}

async fn update_clone_purge(b: &TestBroker) {
    vehicle(b, "urn:ngsi-ld:Vehicle:c", 70).await;
    let all = json!({"type": "Snapshot", "snapshotQueries": [{"type": "Query", "entities": [{"type": "Vehicle"}]}]});
    let original = create(b, &all).await;
    ready(b, &original).await;

    let r = b.patch(&original, &json!({"snapshotPriority": 2})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["snapshotPriority"], 2);
    assert_problem(b.patch(&original, &json!({"snapshotQueries": []})).await, 400, "BadRequestData").await;
    assert_problem(b.patch(&original, &json!({"snapshotStatus": "success"})).await, 400, "BadRequestData").await;
    let before = b.get_json(&original).await;
    let r = b.patch(&original, &json!({"snapshotLifetime": "P2D"})).await;
    assert_eq!(r.status(), 200);
    let after: Value = r.json().await.unwrap();
    assert_ne!(after["expiresAt"], before["expiresAt"], "a new lifetime moves the expiry");

    let r = b.post(&format!("{original}/clone"), &json!({"type": "Snapshot", "snapshotPriority": 9})).await;
    assert_eq!(r.status(), 201);
    let clone = r.headers()["location"].to_str().unwrap().trim_start_matches("/ngsi-ld/v1").to_string();
    let cloned = ready(b, &clone).await;
    assert_eq!(cloned["snapshotStatus"], "success");
    assert_eq!(cloned["snapshotPriority"], 9);
    assert_ne!(cloned["id"], before["id"]);
    assert_problem(b.post(&format!("{original}/clone"), &json!({"snapshotQueries": []})).await, 400, "BadRequestData")
        .await;

    // Purging by a q over the snapshot's own members: priority 2 goes, 9 stays.
    let r = b.delete("/snapshots?q=speed%3E50").await;
    assert_problem(r, 400, "BadRequestData").await;
    assert_eq!(b.get(&original).await.status(), 200, "a refused purge deletes nothing");
    let r = b.delete("/snapshots?q=snapshotPriority%3C5").await;
    assert_eq!(r.status(), 204);
    assert_problem(b.get(&original).await, 404, "ResourceNotFound").await;
    // The clone keeps its copy after the original is gone.
    let clone_id = cloned["id"].as_str().unwrap();
    assert_eq!(ids_through(b, "/entities?type=Vehicle", clone_id).await, ["urn:ngsi-ld:Vehicle:c"]);
    let listed = b.get_json("/snapshots").await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
}

async fn tenants_and_expiry(b: &TestBroker) {
    let tenant = |r: reqwest::RequestBuilder| r.header("NGSILD-Tenant", "district");
    let body = json!({"id": "urn:ngsi-ld:Vehicle:t", "type": "Vehicle", "speed": {"type": "Property", "value": 90}});
    assert_eq!(tenant(b.request(Method::POST, "/entities")).json(&body).send().await.unwrap().status(), 201);
    let r = tenant(b.request(Method::POST, "/snapshots")).json(&fast_vehicles()).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let path = r.headers()["location"].to_str().unwrap().trim_start_matches("/ngsi-ld/v1").to_string();
    let id = path.rsplit('/').next().unwrap().to_string();
    for _ in 0..100 {
        let got: Value = tenant(b.request(Method::GET, &path)).send().await.unwrap().json().await.unwrap();
        if got["snapshotStatus"] == "success" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = tenant(b.request(Method::GET, "/entities?type=Vehicle")).header(HEADER, &id).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()[0]["id"], "urn:ngsi-ld:Vehicle:t");
    // Another tenant does not see it.
    assert_problem(b.get(&path).await, 404, "ResourceNotFound").await;
    assert_problem(through(b, Method::GET, "/entities?type=Vehicle", &id).await, 404, "ResourceNotFound").await;

    // A snapshot past its lifetime is gone.
    vehicle(b, "urn:ngsi-ld:Vehicle:e", 90).await;
    let mut short = fast_vehicles();
    short["snapshotLifetime"] = json!("PT1S");
    let path = create(b, &short).await;
    let snapshot = ready(b, &path).await;
    let id = snapshot["id"].as_str().unwrap().to_string();
    assert_eq!(ids_through(b, "/entities?type=Vehicle", &id).await, ["urn:ngsi-ld:Vehicle:e"]);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_problem(b.get(&path).await, 404, "ResourceNotFound").await;
    assert_problem(through(b, Method::GET, "/entities?type=Vehicle", &id).await, 404, "ResourceNotFound").await;
}

store_tests!(freezes_query_results, validation, update_clone_purge, tenants_and_expiry);

/// §5.16.1.4: the queries run as distributed queries do, so a registered context source's
/// entities join the snapshot (here another broker, registered for Vehicle).
#[tokio::test]
async fn snapshot_takes_in_context_sources() {
    let (city, district) = (TestBroker::embedded().await, TestBroker::embedded().await);
    vehicle(&city, "urn:ngsi-ld:Vehicle:local", 80).await;
    vehicle(&district, "urn:ngsi-ld:Vehicle:remote", 88).await;
    vehicle(&district, "urn:ngsi-ld:Vehicle:remote-slow", 20).await;
    let registration = json!({"id": "urn:ngsi-ld:ContextSourceRegistration:district", "type": "ContextSourceRegistration",
        "endpoint": district.origin, "information": [{"entities": [{"type": "Vehicle"}]}], "operations": ["queryEntity"]});
    assert_eq!(city.post("/csourceRegistrations", &registration).await.status(), 201);
    let path = create(&city, &fast_vehicles()).await;
    let snapshot = ready(&city, &path).await;
    assert_eq!(snapshot["snapshotStatus"], "success", "{snapshot}");
    let id = snapshot["id"].as_str().unwrap();
    assert_eq!(
        ids_through(&city, "/entities?type=Vehicle", id).await,
        ["urn:ngsi-ld:Vehicle:local", "urn:ngsi-ld:Vehicle:remote"]
    );
    // Frozen: the source's later changes stay out.
    let r = district
        .patch("/entities/urn:ngsi-ld:Vehicle:remote/attrs", &json!({"speed": {"type": "Property", "value": 1}}))
        .await;
    assert_eq!(r.status(), 204);
    let frozen: Value =
        through(&city, Method::GET, "/entities/urn:ngsi-ld:Vehicle:remote", id).await.json().await.unwrap();
    assert_eq!(frozen["speed"]["value"], 88);
}
