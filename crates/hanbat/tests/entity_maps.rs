//! Entity maps (§5.14, §5.5.9.3, §6.34, §6.35 of V1.9.1): creation by a query, paging through the
//! fixed set of ids, the `/entityMaps/{id}` resource, tenants and expiry.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed assertion

mod common;

use common::{TestBroker, assert_problem, vehicle};
use hanbat_model::Timestamp;
use reqwest::{Method, Response};
use serde_json::{Value, json};

const HEADER: &str = "NGSILD-EntityMap";

/// The map location a response announces, and the map id (its last segment).
fn map_of(r: &Response) -> (String, String) {
    let location = r.headers().get(HEADER).expect("NGSILD-EntityMap header").to_str().unwrap().to_string();
    let id = location.rsplit('/').next().unwrap().to_string();
    (location, id)
}

/// `GET` with an `NGSILD-EntityMap` header.
async fn get_with_map(b: &TestBroker, path: &str, location: &str) -> Response {
    b.request(Method::GET, path).header(HEADER, location).send().await.unwrap()
}

/// Every `Link` header of a response, joined.
fn links(r: &Response) -> String {
    r.headers().get_all("link").iter().map(|v| v.to_str().unwrap()).collect::<Vec<_>>().join(", ")
}

fn ids(body: &Value) -> Vec<String> {
    body.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
}

fn map_ids(map: &Value) -> Vec<String> {
    let mut ids: Vec<String> = map["entityMap"].as_object().unwrap().keys().cloned().collect();
    ids.sort();
    ids
}

fn quoted(id: &str) -> String {
    id.replace(':', "%3A")
}

async fn create_retrieve_update_delete(b: &TestBroker) {
    vehicle(b, "urn:ngsi-ld:Vehicle:slow", 30).await;
    vehicle(b, "urn:ngsi-ld:Vehicle:fast", 90).await;
    let r = b.get("/entityMaps?type=Vehicle").await;
    assert_eq!(r.status(), 201);
    let (_, id) = map_of(&r);
    assert!(id.starts_with("urn:ngsi-ld:EntityMap:"), "{id}");
    let map: Value = r.json().await.unwrap();
    assert_eq!(map["id"], id);
    assert_eq!(map["type"], "EntityMap");
    assert_eq!(map["entityMap"]["urn:ngsi-ld:Vehicle:slow"], json!(["@none"]));
    assert_eq!(map_ids(&map), ["urn:ngsi-ld:Vehicle:fast", "urn:ngsi-ld:Vehicle:slow"]);
    assert!(Timestamp::parse(map["expiresAt"].as_str().unwrap()).unwrap() > Timestamp::now());

    // Filters narrow the map.
    let r = b.get("/entityMaps?type=Vehicle&q=speed%3E50").await;
    assert_eq!(r.status(), 201);
    assert_eq!(map_ids(&r.json().await.unwrap()), ["urn:ngsi-ld:Vehicle:fast"]);
    // Too wide a query, a lifetime that is not a duration.
    assert_problem(b.get("/entityMaps?id=urn:ngsi-ld:Vehicle:slow").await, 400, "BadRequestData").await;
    assert_problem(b.get("/entityMaps?type=Vehicle&entityMapLifetime=1hour").await, 400, "BadRequestData").await;
    // A ten-year lifetime is bounded by the broker.
    let r = b.get("/entityMaps?type=Vehicle&entityMapLifetime=P3650D").await;
    assert_eq!(r.status(), 201);
    let expires = Timestamp::parse(r.json::<Value>().await.unwrap()["expiresAt"].as_str().unwrap()).unwrap();
    assert!(expires.micros() - Timestamp::now().micros() < 365 * 86_400_000_000, "lifetime not bounded");

    let path = format!("/entityMaps/{}", quoted(&id));
    let got = b.get_json(&path).await;
    assert_eq!(got, map);
    assert!(got.get("speed").is_none());
    assert_problem(b.get("/entityMaps/not%20a%20uri").await, 400, "BadRequestData").await;
    assert_problem(b.get("/entityMaps/urn:ngsi-ld:entitymap:nothing").await, 404, "ResourceNotFound").await;

    // PATCH: expiresAt only (bounded), output-only members ignored.
    let r = b
        .patch(
            &path,
            &json!({"expiresAt": "2099-01-01T00:00:00Z", "entityMap": {"urn:ngsi-ld:Vehicle:injected": ["@none"]}}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let got = b.get_json(&path).await;
    assert!(got["expiresAt"].as_str().unwrap() < "2099-01-01T00:00:00Z", "{got}");
    assert_eq!(map_ids(&got), ["urn:ngsi-ld:Vehicle:fast", "urn:ngsi-ld:Vehicle:slow"]);
    assert_problem(b.patch(&path, &json!({"expiresAt": "tomorrow"})).await, 400, "BadRequestData").await;
    let r = b.patch("/entityMaps/urn:ngsi-ld:entitymap:nothing", &json!({"expiresAt": "2099-01-01T00:00:00Z"})).await;
    assert_problem(r, 404, "ResourceNotFound").await;

    // DELETE: 204, then gone.
    assert_problem(b.delete("/entityMaps/not%20a%20uri").await, 400, "BadRequestData").await;
    let r = b.delete(&path).await;
    assert_eq!(r.status(), 204);
    assert!(r.text().await.unwrap().is_empty());
    assert_problem(b.get(&path).await, 404, "ResourceNotFound").await;
    assert_problem(b.delete(&path).await, 404, "ResourceNotFound").await;
}

async fn expired_maps_and_other_tenants_are_out_of_reach(b: &TestBroker) {
    vehicle(b, "urn:ngsi-ld:Vehicle:1", 50).await;
    let r = b.get("/entityMaps?type=Vehicle").await;
    let (_, id) = map_of(&r);
    let path = format!("/entityMaps/{}", quoted(&id));
    let other = |m: Method| b.request(m, &path).header("NGSILD-Tenant", "elsewhere");
    let r = other(Method::GET).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(!r.text().await.unwrap().contains("urn:ngsi-ld:Vehicle:1"));
    assert_eq!(other(Method::DELETE).send().await.unwrap().status(), 404);
    assert_eq!(map_ids(&b.get_json(&path).await), ["urn:ngsi-ld:Vehicle:1"]);
    // A map made in another tenant sees that tenant's entities only.
    let r = b
        .request(Method::POST, "/entities")
        .header("NGSILD-Tenant", "elsewhere")
        .header("Content-Type", "application/json")
        .body(json!({"id": "urn:ngsi-ld:Vehicle:2", "type": "Vehicle"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r =
        b.request(Method::GET, "/entityMaps?type=Vehicle").header("NGSILD-Tenant", "elsewhere").send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(map_ids(&r.json().await.unwrap()), ["urn:ngsi-ld:Vehicle:2"]);

    // An expiresAt in the past ends the map.
    assert_eq!(b.patch(&path, &json!({"expiresAt": "2000-01-01T00:00:00Z"})).await.status(), 204);
    assert_problem(b.get(&path).await, 404, "ResourceNotFound").await;
}

async fn pages_walk_the_map(b: &TestBroker) {
    for i in 0..5 {
        vehicle(b, &format!("urn:ngsi-ld:Vehicle:p{i}"), 50).await;
    }
    let r = b.get("/entities?type=Vehicle&entityMap=true&limit=2").await;
    assert_eq!(r.status(), 201);
    let (location, id) = map_of(&r);
    let link = links(&r);
    // The next page goes through this map, not through a new one.
    assert!(link.contains(&format!("entityMap={id}")) && link.contains("offset=2"), "{link}");
    assert_eq!(ids(&r.json().await.unwrap()), ["urn:ngsi-ld:Vehicle:p0", "urn:ngsi-ld:Vehicle:p1"]);

    // Entities created later are not in the map; the location is echoed.
    vehicle(b, "urn:ngsi-ld:Vehicle:late", 50).await;
    let r = get_with_map(b, "/entities?type=Vehicle&limit=2&offset=4", &location).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[HEADER], location.as_str());
    let link = links(&r);
    assert!(link.contains(r#"rel="prev""#) && !link.contains(r#"rel="next""#), "{link}");
    assert_eq!(ids(&r.json().await.unwrap()), ["urn:ngsi-ld:Vehicle:p4"]);
    let r = b.get(&format!("/entities?type=Vehicle&entityMap={id}&limit=100")).await;
    assert_eq!(r.status(), 200);
    assert!(!ids(&r.json().await.unwrap()).contains(&"urn:ngsi-ld:Vehicle:late".to_string()));

    // A deleted entity is pruned from the map, and pages still fill up.
    assert_eq!(b.delete("/entities/urn:ngsi-ld:Vehicle:p1").await.status(), 204);
    let r = get_with_map(b, "/entities?type=Vehicle&limit=3", &location).await;
    assert_eq!(
        ids(&r.json().await.unwrap()),
        ["urn:ngsi-ld:Vehicle:p0", "urn:ngsi-ld:Vehicle:p2", "urn:ngsi-ld:Vehicle:p3"]
    );
    let map = b.get_json(&format!("/entityMaps/{}", quoted(&id))).await;
    assert_eq!(
        map_ids(&map),
        ["urn:ngsi-ld:Vehicle:p0", "urn:ngsi-ld:Vehicle:p2", "urn:ngsi-ld:Vehicle:p3", "urn:ngsi-ld:Vehicle:p4"]
    );
    // count walks the whole map.
    let r = get_with_map(b, "/entities?type=Vehicle&limit=2&count=true", &location).await;
    assert_eq!(r.headers()["NGSILD-Results-Count"], "4");
    assert_eq!(ids(&r.json().await.unwrap()).len(), 2);

    // The same through POST /entityOperations/query.
    let r = b
        .post("/entityOperations/query?entityMap=true", &json!({"type": "Query", "entities": [{"type": "Vehicle"}]}))
        .await;
    assert_eq!(r.status(), 201);
    let (_, other) = map_of(&r);
    assert_ne!(other, id);
    assert_eq!(ids(&r.json().await.unwrap()).len(), 5);

    // A dead reference creates a new map and is not echoed.
    let r = get_with_map(b, "/entities?type=Vehicle", "urn:ngsi-ld:entitymap:dead").await;
    assert_eq!(r.status(), 201);
    let (fresh, _) = map_of(&r);
    assert!(!fresh.contains("dead"));
}

async fn retrieval_of_one_entity(b: &TestBroker) {
    vehicle(b, "urn:ngsi-ld:Vehicle:r", 30).await;
    let r = b.get("/entities/urn:ngsi-ld:Vehicle:r?entityMap=true").await;
    assert_eq!(r.status(), 200);
    let (location, id) = map_of(&r);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], "urn:ngsi-ld:Vehicle:r");
    assert!(body.get("entityMap").is_none());
    assert_eq!(
        b.get_json(&format!("/entityMaps/{}", quoted(&id))).await["entityMap"],
        json!({"urn:ngsi-ld:Vehicle:r": ["@none"]})
    );
    let r = get_with_map(b, "/entities/urn:ngsi-ld:Vehicle:r", &location).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[HEADER], location.as_str());
    let r = get_with_map(b, "/entities/urn:ngsi-ld:Vehicle:r", "urn:ngsi-ld:entitymap:dead").await;
    assert_eq!(r.status(), 200);
    assert!(!map_of(&r).0.contains("dead"));
}

async fn temporal_maps(b: &TestBroker) {
    vehicle(b, "urn:ngsi-ld:Vehicle:t1", 30).await;
    vehicle(b, "urn:ngsi-ld:Vehicle:t2", 60).await;
    let window = "timerel=before&timeAt=2999-01-01T00:00:00Z&timeproperty=createdAt";
    assert_problem(b.get("/temporal/entityMaps?type=Vehicle").await, 400, "BadRequestData").await;
    let r = b.get(&format!("/temporal/entityMaps?type=Vehicle&{window}")).await;
    assert_eq!(r.status(), 201);
    assert_eq!(map_ids(&r.json().await.unwrap()), ["urn:ngsi-ld:Vehicle:t1", "urn:ngsi-ld:Vehicle:t2"]);
    let r = b
        .get("/temporal/entityMaps?type=Vehicle&timerel=before&timeAt=2000-01-01T00:00:00Z&timeproperty=createdAt")
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(map_ids(&r.json().await.unwrap()), Vec::<String>::new());

    // A map narrowed to one id fixes a broader follow-up query.
    let r = b.get(&format!("/temporal/entities?type=Vehicle&id=urn:ngsi-ld:Vehicle:t1&{window}&entityMap=true")).await;
    assert_eq!(r.status(), 201);
    let (location, _) = map_of(&r);
    assert_eq!(ids(&r.json().await.unwrap()), ["urn:ngsi-ld:Vehicle:t1"]);
    let r = get_with_map(b, &format!("/temporal/entities?type=Vehicle&{window}"), &location).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[HEADER], location.as_str());
    assert_eq!(ids(&r.json().await.unwrap()), ["urn:ngsi-ld:Vehicle:t1"]);
    // Retrieval of one temporal entity.
    let r = b.get(&format!("/temporal/entities/urn:ngsi-ld:Vehicle:t2?{window}&entityMap=true")).await;
    assert_eq!(r.status(), 200);
    let (_, id) = map_of(&r);
    assert_eq!(map_ids(&b.get_json(&format!("/entityMaps/{}", quoted(&id))).await), ["urn:ngsi-ld:Vehicle:t2"]);
}

store_tests!(
    create_retrieve_update_delete,
    expired_maps_and_other_tenants_are_out_of_reach,
    pages_walk_the_map,
    retrieval_of_one_entity,
    temporal_maps,
);
