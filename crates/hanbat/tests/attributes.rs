//! Attributes of an entity: append (§5.6.3), update (§5.6.2), partial update (§5.6.4), replace
//! (§5.6.19) and delete (§5.6.5), with `scope` handled like an attribute (§4.18).
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed assertion

mod common;

use common::{TestBroker, assert_problem};
use serde_json::{Value, json};

const V: &str = "https://uri.etsi.org/ngsi-ld/default-context/";

async fn setup(b: &TestBroker, entity: Value) {
    let r = b.post("/entities", &entity).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
}

/// noOverwrite leaves existing instances and reports them with their full names (207).
async fn append_no_overwrite_and_scope(b: &TestBroker) {
    setup(b, json!({"id": "urn:ngsi-ld:Car:1", "type": "Car", "speed": 1, "scope": "/Daejeon"})).await;
    let r = b
        .post(
            "/entities/urn:ngsi-ld:Car:1/attrs?options=noOverwrite",
            &json!({"speed": 2, "brand": "K", "scope": "/Seoul"}),
        )
        .await;
    assert_eq!(r.status(), 207);
    let result: Value = r.json().await.unwrap();
    assert_eq!(result["updated"], json!([format!("{V}brand")]));
    assert_eq!(result["notUpdated"][0]["attributeName"], format!("{V}speed"));
    let e = b.get_json("/entities/urn:ngsi-ld:Car:1").await;
    assert_eq!(e["speed"]["value"], 1);
    assert_eq!(e["scope"], json!(["/Daejeon", "/Seoul"]));
    assert_eq!(b.post("/entities/urn:ngsi-ld:Car:1/attrs", &json!({"scope": "/Busan"})).await.status(), 204);
    assert_eq!(b.get_json("/entities/urn:ngsi-ld:Car:1").await["scope"], "/Busan");
    let r = b.post("/entities/urn:ngsi-ld:Car:1/attrs?type=Bus", &json!({"speed": 9})).await;
    assert_problem(r, 404, "ResourceNotFound").await;
    assert_eq!(b.get_json("/entities/urn:ngsi-ld:Car:1").await["speed"]["value"], 1);
}

/// Update replaces whole instances (§5.5.8 example 2), adds new datasetIds, deletes with the
/// NGSI-LD null; a scope is only updated where one exists.
async fn update_attributes(b: &TestBroker) {
    setup(b, json!({"id": "urn:ngsi-ld:Room:1", "type": "Room", "temperature": {"type": "Property", "value": 25, "unitCode": "CEL"}, "humidity": 40})).await;
    let r = b
        .patch(
            "/entities/urn:ngsi-ld:Room:1/attrs",
            &json!({"temperature": {"type": "Property", "value": 30, "datasetId": "urn:ngsi-ld:Dataset:extra"}}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let r =
        b.patch("/entities/urn:ngsi-ld:Room:1/attrs", &json!({"temperature": {"type": "Property", "value": 26}})).await;
    assert_eq!(r.status(), 204);
    let e = b.get_json("/entities/urn:ngsi-ld:Room:1").await;
    let values: Vec<i64> = e["temperature"].as_array().unwrap().iter().map(|i| i["value"].as_i64().unwrap()).collect();
    assert_eq!(values, vec![26, 30]);
    assert!(!e.to_string().contains("CEL"), "the replaced instance lost its unitCode: {e}");
    let r = b.patch("/entities/urn:ngsi-ld:Room:1/attrs", &json!({"humidity": "urn:ngsi-ld:null"})).await;
    assert_eq!(r.status(), 204);
    assert!(b.get_json("/entities/urn:ngsi-ld:Room:1").await.get("humidity").is_none());
    let r = b.patch("/entities/urn:ngsi-ld:Room:1/attrs", &json!({"scope": "/Daejeon"})).await;
    assert_eq!(r.status(), 207);
    let r = b.patch("/entities/urn:ngsi-ld:Room:1/attrs?type=Hall", &json!({"humidity": 1})).await;
    assert_problem(r, 404, "ResourceNotFound").await;
    let r = b.patch("/entities/urn:ngsi-ld:Room:404/attrs", &json!({"humidity": 1})).await;
    assert_problem(r, 404, "ResourceNotFound").await;
}

/// Partial update merges into one instance (§5.5.8 example 1); its kind cannot change; the
/// NGSI-LD null deletes the instance; nulls inside compound values and null datasetIds are
/// refused.
async fn partial_attribute_update(b: &TestBroker) {
    setup(
        b,
        json!({"id": "urn:ngsi-ld:Room:2", "type": "Room",
            "temperature": {"type": "Property", "value": 25, "unitCode": "CEL"},
            "address": {"type": "Property", "value": {"street": "Daehak-ro", "country": "KR"}},
            "parkedAt": {"type": "Relationship", "object": "urn:ngsi-ld:Park:1"},
            "name": [{"type": "Property", "value": "a"}, {"type": "Property", "value": "b", "datasetId": "urn:ngsi-ld:Dataset:01"}]}),
    )
    .await;
    let attr = |name: &str| format!("/entities/urn:ngsi-ld:Room:2/attrs/{name}");
    let r = b
        .patch(
            &attr("temperature"),
            &json!({"type": "Property", "value": 100, "observedAt": "2022-03-14T13:00:00.000Z"}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = b
        .patch(&attr("parkedAt"), &json!({"providedBy": {"type": "Relationship", "object": "urn:ngsi-ld:Person:1"}}))
        .await;
    assert_eq!(r.status(), 204);
    let e = b.get_json("/entities/urn:ngsi-ld:Room:2").await;
    assert_eq!(e["temperature"]["unitCode"], "CEL");
    assert_eq!(e["temperature"]["observedAt"], "2022-03-14T13:00:00.000Z");
    assert_eq!(e["parkedAt"]["object"], "urn:ngsi-ld:Park:1");
    assert_eq!(e["parkedAt"]["providedBy"]["object"], "urn:ngsi-ld:Person:1");
    for (name, fragment) in [
        ("temperature", json!({"type": "Relationship", "object": "urn:ngsi-ld:X:1"})),
        ("address", json!({"value": {"country": "urn:ngsi-ld:null"}})),
        ("temperature", json!({"datasetId": "urn:ngsi-ld:null"})),
        ("temperature", json!({})),
    ] {
        assert_problem(b.patch(&attr(name), &fragment).await, 400, "BadRequestData").await;
    }
    let r = b
        .patch(
            &attr("name"),
            &json!({"type": "Property", "value": "urn:ngsi-ld:null", "datasetId": "urn:ngsi-ld:Dataset:01"}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let e = b.get_json("/entities/urn:ngsi-ld:Room:2").await;
    assert_eq!(e["name"], json!({"type": "Property", "value": "a"}));
    assert_eq!(e["address"]["value"]["country"], "KR");
}

async fn replace_and_delete_attributes(b: &TestBroker) {
    setup(b, json!({"id": "urn:ngsi-ld:Shop:1", "type": "Shop", "name": "x", "scope": "/Daejeon"})).await;
    let r = b.put("/entities/urn:ngsi-ld:Shop:1/attrs/@invalid", &json!({"type": "Property", "value": 1})).await;
    assert_problem(r, 400, "BadRequestData").await;
    let r = b.put("/entities/urn:ngsi-ld:Shop:1/attrs/brand", &json!({"type": "Property", "value": 1})).await;
    assert_problem(r, 404, "ResourceNotFound").await;
    assert_problem(b.delete("/entities/urn:ngsi-ld:Shop:1/attrs/name?type=Car").await, 404, "ResourceNotFound").await;
    assert_eq!(b.delete("/entities/urn:ngsi-ld:Shop:1/attrs/name?type=Shop").await.status(), 204);
    assert_eq!(b.delete("/entities/urn:ngsi-ld:Shop:1/attrs/scope").await.status(), 204);
    let e = b.get_json("/entities/urn:ngsi-ld:Shop:1").await;
    assert!(e.get("scope").is_none() && e.get("name").is_none(), "{e}");
    assert_problem(b.delete("/entities/urn:ngsi-ld:Shop:1/attrs/scope").await, 404, "ResourceNotFound").await;
}

store_tests! {
    append_no_overwrite_and_scope,
    update_attributes,
    partial_attribute_update,
    replace_and_delete_attributes,
}
