//! Distributed operations (§4.3.6) between two real brokers: a "city" broker that registers a
//! "district" broker as a context source, and reads and writes through the city broker.

mod common;

use common::{TestBroker, assert_problem};
use reqwest::Method;
use serde_json::{Value, json};

/// A registration of `source`; `operations` null leaves the default (federationOps).
fn registration(id: &str, source: &TestBroker, mode: &str, information: Value, operations: Value) -> Value {
    let mut r = json!({"id": id, "type": "ContextSourceRegistration", "endpoint": source.origin, "mode": mode,
           "information": information});
    if !operations.is_null() {
        r["operations"] = operations;
    }
    r
}

async fn register(broker: &TestBroker, body: &Value) {
    let r = broker.post("/csourceRegistrations", body).await;
    let status = r.status();
    assert_eq!(status, 201, "{}", r.text().await.unwrap_or_default());
}

fn vehicle(id: &str, attrs: Value) -> Value {
    let mut v = json!({"id": id, "type": "Vehicle"});
    for (k, a) in attrs.as_object().expect("attrs") {
        v[k] = a.clone();
    }
    v
}

fn prop(value: Value) -> Value {
    json!({"type": "Property", "value": value})
}

#[tokio::test]
async fn inclusive_source_adds_to_reads_and_receives_writes() {
    let (city, district) = (TestBroker::embedded().await, TestBroker::embedded().await);
    let id = "urn:ngsi-ld:Vehicle:fed-1";
    // The district knows the vehicle's speed; the city its brand.
    assert_eq!(district.post("/entities", &vehicle(id, json!({"speed": prop(json!(42))}))).await.status(), 201);
    assert_eq!(city.post("/entities", &vehicle(id, json!({"brandName": prop(json!("Hyundai"))}))).await.status(), 201);
    register(
        &city,
        &registration(
            "urn:ngsi-ld:ContextSourceRegistration:district",
            &district,
            "inclusive",
            json!([{"entities": [{"type": "Vehicle"}]}]),
            json!(["redirectionOps"]),
        ),
    )
    .await;

    let merged = city.get_json(&format!("/entities/{id}")).await;
    assert_eq!(merged["brandName"]["value"], "Hyundai", "{merged}");
    assert_eq!(merged["speed"]["value"], 42, "{merged}");
    let local = city.get_json(&format!("/entities/{id}?local=true")).await;
    assert!(local.get("speed").is_none(), "local=true reads the city's own data only: {local}");

    let listed = city.get_json("/entities?type=Vehicle").await;
    let listed = listed.as_array().expect("array");
    assert_eq!(listed.len(), 1, "one entity, merged by id: {listed:?}");
    assert_eq!(listed[0]["speed"]["value"], 42);

    // A write through the city reaches both.
    let r = city.patch(&format!("/entities/{id}/attrs"), &json!({"brandName": prop(json!("Kia"))})).await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
    assert_eq!(district.get_json(&format!("/entities/{id}")).await["brandName"]["value"], "Kia");
    let created = "urn:ngsi-ld:Vehicle:fed-2";
    let r = city.post("/entities", &vehicle(created, json!({"speed": prop(json!(7))}))).await;
    assert_eq!(r.status(), 201);
    assert_eq!(district.get_json(&format!("/entities/{created}")).await["speed"]["value"], 7);
    assert_eq!(city.get_json(&format!("/entities/{created}?local=true")).await["speed"]["value"], 7);
    // Creating it again fails in both places: one 207 names each failed part.
    let r = city.post("/entities", &vehicle(created, json!({"speed": prop(json!(8))}))).await;
    assert_eq!(r.status(), 207);
    let body: Value = r.json().await.expect("json");
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{body}");
    for e in errors {
        assert_eq!(e["error"]["status"], 409, "{body}");
        assert_eq!(e["error"]["type"], "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists", "{body}");
    }
    assert!(errors.iter().any(|e| e["registrationId"] == "urn:ngsi-ld:ContextSourceRegistration:district"));

    let r = city.delete(&format!("/entities/{created}")).await;
    assert_eq!(r.status(), 204);
    assert_eq!(district.get(&format!("/entities/{created}")).await.status(), 404);
}

#[tokio::test]
async fn exclusive_source_holds_its_attributes_in_place_of_the_broker() {
    let (city, district) = (TestBroker::embedded().await, TestBroker::embedded().await);
    let id = "urn:ngsi-ld:Vehicle:fed-ex";
    assert_eq!(district.post("/entities", &vehicle(id, json!({"speed": prop(json!(10))}))).await.status(), 201);
    assert_eq!(city.post("/entities", &vehicle(id, json!({"brandName": prop(json!("Hyundai"))}))).await.status(), 201);
    register(
        &city,
        &registration(
            "urn:ngsi-ld:ContextSourceRegistration:speed",
            &district,
            "exclusive",
            json!([{"entities": [{"id": id, "type": "Vehicle"}], "propertyNames": ["speed"]}]),
            json!(["redirectionOps"]),
        ),
    )
    .await;

    // Only the speed goes to the district; the broker keeps the rest.
    let r = city
        .post(&format!("/entities/{id}/attrs"), &json!({"speed": prop(json!(55)), "colour": prop(json!("blue"))}))
        .await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
    let at_district = district.get_json(&format!("/entities/{id}")).await;
    assert_eq!(at_district["speed"]["value"], 55);
    assert!(at_district.get("colour").is_none(), "{at_district}");
    let at_city = city.get_json(&format!("/entities/{id}?local=true")).await;
    assert!(at_city.get("speed").is_none(), "{at_city}");
    assert_eq!(at_city["colour"]["value"], "blue");

    let merged = city.get_json(&format!("/entities/{id}")).await;
    assert_eq!(merged["speed"]["value"], 55);
    assert_eq!(merged["brandName"]["value"], "Hyundai");

    // A source that is down: reads still answer with the broker's data and a warning, and a
    // write of an attribute only that source may hold fails.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let mut dead = registration(
        "urn:ngsi-ld:ContextSourceRegistration:fuel",
        &district,
        "exclusive",
        json!([{"entities": [{"id": id, "type": "Vehicle"}], "propertyNames": ["fuel"]}]),
        json!(["redirectionOps"]),
    );
    dead["endpoint"] = json!(format!("http://127.0.0.1:{closed_port}"));
    register(&city, &dead).await;
    let r = city.get(&format!("/entities/{id}")).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("NGSILD-Warning").is_some(), "a warning names the source that failed");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["brandName"]["value"], "Hyundai");
    assert_eq!(body["speed"]["value"], 55, "the live source still answers");
    let r = city.patch(&format!("/entities/{id}/attrs/fuel"), &json!({"value": 60})).await;
    assert!(r.status().is_server_error(), "{}", r.status());
}

#[tokio::test]
async fn brokers_registering_each_other_do_not_loop() {
    let (a, b) = (TestBroker::embedded().await, TestBroker::embedded().await);
    let info = json!([{"entities": [{"type": "Vehicle"}]}]);
    register(&a, &registration("urn:ngsi-ld:ContextSourceRegistration:b", &b, "inclusive", info.clone(), Value::Null))
        .await;
    register(&b, &registration("urn:ngsi-ld:ContextSourceRegistration:a", &a, "inclusive", info, Value::Null)).await;
    assert_eq!(b.post("/entities", &vehicle("urn:ngsi-ld:Vehicle:b1", json!({}))).await.status(), 201);
    let ids: Vec<String> = a
        .get_json("/entities?type=Vehicle")
        .await
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids, ["urn:ngsi-ld:Vehicle:b1"]);

    // A redirect registration in a loop cannot be served: 508.
    let redirect = registration(
        "urn:ngsi-ld:ContextSourceRegistration:loop",
        &a,
        "redirect",
        json!([{"entities": [{"type": "Car"}]}]),
        json!(["redirectionOps"]),
    );
    register(&a, &redirect).await;
    let r = a
        .request(Method::POST, "/entities")
        .header("Content-Type", "application/json")
        .body(json!({"id": "urn:ngsi-ld:Car:1", "type": "Car"}).to_string())
        .send()
        .await
        .expect("sent");
    assert_problem(r, 508, "LoopDetected").await;
}
