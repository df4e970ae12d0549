//! Linked entity retrieval (§4.5.23 of V1.8): `join=inline|flat`, `joinLevel`, and pick/omit
//! projections of the linked entities.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed assertion

mod common;

use common::{TestBroker, assert_problem};
use serde_json::json;

async fn setup(b: &TestBroker) {
    let r = b
        .post(
            "/entityOperations/create",
            &json!([
                {"id": "urn:ngsi-ld:Building:1", "type": "Building", "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:Daejeon"}},
                {"id": "urn:ngsi-ld:City:Daejeon", "type": "City", "name": "Daejeon", "isInCountry": {"type": "Relationship", "object": "urn:ngsi-ld:Country:KR"}},
                {"id": "urn:ngsi-ld:Country:KR", "type": "Country", "name": "Korea", "description": "a country"}
            ]),
        )
        .await;
    assert_eq!(r.status(), 201);
}

async fn inline_and_flat(b: &TestBroker) {
    setup(b).await;
    let e = b.get_json("/entities/urn:ngsi-ld:Building:1?join=inline").await;
    assert_eq!(e["locatedAt"]["entity"]["id"], "urn:ngsi-ld:City:Daejeon");
    assert!(e["locatedAt"]["entity"]["isInCountry"].get("entity").is_none(), "joinLevel defaults to 1");
    let e = b.get_json("/entities/urn:ngsi-ld:Building:1?join=inline&joinLevel=2&options=keyValues").await;
    assert_eq!(e["locatedAt"]["isInCountry"]["name"], "Korea");
    let all = b.get_json("/entities/urn:ngsi-ld:Building:1?join=flat&joinLevel=2").await;
    let ids: Vec<&str> = all.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["urn:ngsi-ld:Building:1", "urn:ngsi-ld:City:Daejeon", "urn:ngsi-ld:Country:KR"]);
    let e = b.get_json("/entities/urn:ngsi-ld:City:Daejeon?join=inline&options=sysAttrs").await;
    assert!(e["isInCountry"]["entity"].get("createdAt").is_some());
    // Flat with nothing linked is the entity alone.
    let e = b.get_json("/entities/urn:ngsi-ld:Country:KR?join=flat").await;
    assert_eq!(e["id"], "urn:ngsi-ld:Country:KR");
    let list = b.get_json("/entities?type=Building&join=flat").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
}

async fn projections_of_linked_entities(b: &TestBroker) {
    setup(b).await;
    let e = b.get_json("/entities/urn:ngsi-ld:Building:1?join=inline&joinLevel=2&pick=id,locatedAt{id,name,isInCountry{id,description}}").await;
    assert!(e.get("type").is_none());
    let city = &e["locatedAt"]["entity"];
    assert_eq!(city["name"]["value"], "Daejeon");
    assert!(city.get("type").is_none());
    assert_eq!(
        city["isInCountry"]["entity"],
        json!({"id": "urn:ngsi-ld:Country:KR", "description": {"type": "Property", "value": "a country"}})
    );
    let e = b.get_json("/entities/urn:ngsi-ld:Building:1?join=inline&omit=type,locatedAt{name}").await;
    assert!(e.get("type").is_none());
    assert!(e["locatedAt"]["entity"].get("name").is_none() && e["locatedAt"]["entity"].get("type").is_some());
    for bad in [
        "pick=locatedAt{name}",
        "join=inline&joinLevel=1&pick=locatedAt{isInCountry{name}}",
        "join=inline&joinLevel=0",
        "join=sideways",
    ] {
        assert_problem(b.get(&format!("/entities/urn:ngsi-ld:Building:1?{bad}")).await, 400, "BadRequestData").await;
    }
}

store_tests! {
    inline_and_flat,
    projections_of_linked_entities,
}
