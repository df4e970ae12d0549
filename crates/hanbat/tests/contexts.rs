//! The @context hosting service (§5.13, §6.29): add, list, serve and delete, per tenant.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed assertion

mod common;

use common::{TestBroker, assert_problem};
use reqwest::Method;
use serde_json::{Value, json};

async fn add(b: &TestBroker, tenant: Option<&str>, document: &Value) -> reqwest::Response {
    let mut req = b.request(Method::POST, "/jsonldContexts").header("Content-Type", "application/json");
    if let Some(t) = tenant {
        req = req.header("NGSILD-Tenant", t);
    }
    req.body(document.to_string()).send().await.expect("request sent")
}

async fn get(b: &TestBroker, tenant: &str, path: &str) -> reqwest::Response {
    b.request(Method::GET, path).header("NGSILD-Tenant", tenant).send().await.expect("request sent")
}

async fn hosted_contexts(b: &TestBroker) {
    let r = add(b, None, &json!({"@context": {"pm25": "https://example.org/pm25"}})).await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let local_id = location.strip_prefix("/ngsi-ld/v1/jsonldContexts/").expect("relative Location");
    let r = b.get(&format!("/jsonldContexts/{local_id}")).await;
    assert_eq!(r.headers()["content-type"], "application/json");
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["@context"]["pm25"], "https://example.org/pm25");
    let details = b.get_json(&format!("/jsonldContexts/{local_id}?details=true")).await;
    assert_eq!(details["kind"], "Hosted");
    assert!(details["createdAt"].as_str().is_some_and(|t| t.ends_with('Z')));
    // Usable by URL in a request.
    let url = format!("{}{location}", b.origin);
    let r = b
        .request(Method::POST, "/entities")
        .header("Content-Type", "application/ld+json")
        .body(json!({"id": "urn:ngsi-ld:Air:1", "type": "Air", "pm25": 3, "@context": url}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let e = b.get_json("/entities/urn:ngsi-ld:Air:1").await;
    assert_eq!(e["https://example.org/pm25"]["value"], 3);
    assert_eq!(b.delete(&format!("/jsonldContexts/{local_id}")).await.status(), 204);
    assert_problem(b.get(&format!("/jsonldContexts/{local_id}")).await, 404, "ResourceNotFound").await;
}

async fn invalid_documents(b: &TestBroker) {
    assert_problem(add(b, None, &json!({"A1": "urn:a"})).await, 400, "InvalidRequest").await;
    for bad in [json!({"@context": 5}), json!({"@context": ["https://example.org/c.jsonld", 5]})] {
        let r = add(b, None, &bad).await;
        assert!(!r.headers().contains_key("location"));
        assert_problem(r, 400, "BadRequestData").await;
    }
    assert_problem(b.delete("/jsonldContexts/wrong_id?reload=true").await, 400, "BadRequestData").await;
    assert_problem(b.delete("/jsonldContexts/wrong_id").await, 404, "ResourceNotFound").await;
    let core = "https%3A%2F%2Furi.etsi.org%2Fngsi-ld%2Fv1%2Fngsi-ld-core-context-v1.6.jsonld";
    assert_eq!(b.delete(&format!("/jsonldContexts/{core}?reload=true")).await.status(), 204);
    assert_problem(b.delete(&format!("/jsonldContexts/{core}")).await, 400, "BadRequestData").await;
    let details = b.get_json(&format!("/jsonldContexts/{core}?details=true")).await;
    assert_eq!(details["kind"], "Cached");
}

/// §5.5.10: what one tenant hosts, another neither sees, lists nor deletes.
async fn hosted_contexts_are_per_tenant(b: &TestBroker) {
    let r = add(b, Some("tenant-a"), &json!({"@context": {"secret": "https://example.org/secret"}})).await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(get(b, "tenant-a", &location.replace("/ngsi-ld/v1", "")).await.status(), 200);
    let r = get(b, "tenant-b", &location.replace("/ngsi-ld/v1", "")).await;
    assert_problem(r, 404, "ResourceNotFound").await;
    let listed = get(b, "tenant-b", "/jsonldContexts?details=true").await.text().await.unwrap();
    assert!(!listed.contains(&location), "{listed}");
    let listed = get(b, "tenant-a", "/jsonldContexts").await.text().await.unwrap();
    assert!(listed.contains(&location), "{listed}");
}

store_tests! {
    hosted_contexts,
    invalid_documents,
    hosted_contexts_are_per_tenant,
}
