//! Batch operations (§5.6.7–§5.6.10, §5.6.20) and purge (§5.6.21 of V1.9).
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed assertion

mod common;

use common::{TestBroker, assert_problem};
use reqwest::Method;
use serde_json::{Value, json};

async fn request_level_errors(b: &TestBroker) {
    let r = b.post("/entityOperations/create", &json!([{"id": "urn:ngsi-ld:A:1", "type": "A"}, null])).await;
    assert_problem(r, 400, "BadRequestData").await;
    let r = b.post("/entityOperations/merge", &json!([null])).await;
    assert_problem(r, 400, "BadRequestData").await;
    let r = b
        .request(Method::POST, "/entityOperations/create")
        .header("Content-Type", "application/ld+json")
        .header("Link", format!(r#"<{}>; rel="http://www.w3.org/ns/json-ld#context""#, common::CORE))
        .body(json!([{"id": "urn:ngsi-ld:A:1", "type": "A", "@context": common::CORE}]).to_string())
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "BadRequestData").await;
    assert_problem(b.post("/entityOperations/create", &json!([])).await, 400, "BadRequestData").await;
}

/// An entity whose payload is invalid (a JSON null value) fails alone, with BadRequestData.
async fn per_entity_errors(b: &TestBroker) {
    let r = b
        .post(
            "/entityOperations/create",
            &json!([{"id": "urn:ngsi-ld:A:2", "type": "A"}, {"id": "urn:ngsi-ld:A:3", "type": "A", "name": {"type": "Property", "value": null}}]),
        )
        .await;
    assert_eq!(r.status(), 207);
    let result: Value = r.json().await.unwrap();
    assert_eq!(result["success"], json!(["urn:ngsi-ld:A:2"]));
    assert_eq!(result["errors"][0]["entityId"], "urn:ngsi-ld:A:3");
    assert_eq!(result["errors"][0]["error"]["type"], "https://uri.etsi.org/ngsi-ld/errors/BadRequestData");
    let r = b
        .post(
            "/entityOperations/update",
            &json!([{"id": "urn:ngsi-ld:A:2", "type": "A", "name": {"type": "Property", "value": null}}]),
        )
        .await;
    assert_eq!(r.status(), 207);
    let result: Value = r.json().await.unwrap();
    assert_eq!(result["errors"][0]["error"]["type"], "https://uri.etsi.org/ngsi-ld/errors/BadRequestData");
}

/// Batch update with noOverwrite: an entity whose attributes all exist is reported (207).
async fn update_no_overwrite(b: &TestBroker) {
    let r = b.post("/entityOperations/create", &json!([{"id": "urn:ngsi-ld:B:1", "type": "B", "name": "x"}])).await;
    assert_eq!(r.status(), 201);
    let r = b
        .post(
            "/entityOperations/update?options=noOverwrite",
            &json!([{"id": "urn:ngsi-ld:B:1", "type": "B", "name": "y"}]),
        )
        .await;
    assert_eq!(r.status(), 207);
    let r = b
        .post(
            "/entityOperations/update?options=noOverwrite",
            &json!([{"id": "urn:ngsi-ld:B:1", "type": "B", "size": 3}]),
        )
        .await;
    assert_eq!(r.status(), 204);
    let e = b.get_json("/entities/urn:ngsi-ld:B:1").await;
    assert_eq!((e["name"]["value"].clone(), e["size"]["value"].clone()), (json!("x"), json!(3)));
}

async fn purge(b: &TestBroker) {
    let r = b
        .post(
            "/entityOperations/create",
            &json!([
                {"id": "urn:ngsi-ld:P:1", "type": "P", "name": "a", "size": 1, "colour": "red"},
                {"id": "urn:ngsi-ld:P:2", "type": "P", "name": "b", "size": 2},
                {"id": "urn:ngsi-ld:Q:1", "type": "Q", "name": "c"}
            ]),
        )
        .await;
    assert_eq!(r.status(), 201);
    for refused in [
        "",
        "?type=P&keep=name&drop=size",
        "?id=urn:ngsi-ld:P:1",
        "?idPattern=.*",
        "?attrs=createdAt",
        "?type=P&drop=owner{name}",
    ] {
        assert_problem(b.delete(&format!("/entities{refused}")).await, 400, "BadRequestData").await;
    }
    assert_eq!(b.delete("/entities?type=P&id=urn:ngsi-ld:P:1&drop=size").await.status(), 204);
    let e = b.get_json("/entities/urn:ngsi-ld:P:1").await;
    assert!(e.get("size").is_none() && e.get("name").is_some());
    assert_eq!(b.delete("/entities?type=P&id=urn:ngsi-ld:P:1&keep=name").await.status(), 204);
    let e = b.get_json("/entities/urn:ngsi-ld:P:1").await;
    assert!(e.get("colour").is_none() && e.get("name").is_some());
    assert_eq!(b.delete("/entities?type=P").await.status(), 204);
    assert_problem(b.get("/entities/urn:ngsi-ld:P:2").await, 404, "ResourceNotFound").await;
    b.get_json("/entities/urn:ngsi-ld:Q:1").await;
}

store_tests! {
    request_level_errors,
    per_entity_errors,
    update_no_overwrite,
    purge,
}
