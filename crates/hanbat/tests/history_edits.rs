//! History edits and windows on every store (a short companion of `temporal.rs`): what writes
//! record, how queries window, cut and aggregate, and how instances are patched and deleted.

#![allow(clippy::unwrap_used)] // a test: failing loudly is the point

mod common;

use common::{TestBroker, assert_problem};
use serde_json::{Value, json};

const ID: &str = "urn:ngsi-ld:Sensor:t1";

fn reading(value: i64, at: &str) -> Value {
    json!({"type": "Property", "value": value, "unitCode": "CEL", "observedAt": at})
}

/// A temporal entity with three readings, then one more through the normal write path.
async fn seed(b: &TestBroker) {
    let r = b
        .post(
            "/temporal/entities",
            &json!({"id": ID, "type": "Sensor", "temperature": [
                reading(20, "2024-01-01T00:00:00Z"),
                reading(21, "2024-01-01T01:00:00Z"),
                reading(23, "2024-01-01T02:00:00Z"),
            ]}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r =
        b.patch(&format!("/entities/{ID}/attrs"), &json!({"temperature": reading(25, "2024-01-01T03:00:00Z")})).await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
}

fn values(body: &Value) -> Vec<i64> {
    body["temperature"].as_array().unwrap().iter().map(|i| i["value"].as_i64().unwrap()).collect()
}

async fn records_and_windows(b: &TestBroker) {
    seed(b).await;
    let all = b.get_json(&format!("/temporal/entities/{ID}")).await;
    assert_eq!(values(&all), [20, 21, 23, 25], "{all}");
    assert_eq!(all["temperature"][0]["unitCode"], "CEL");
    let window = b
        .get_json(&format!(
            "/temporal/entities/{ID}?timerel=between&timeAt=2024-01-01T00:30:00Z&endTimeAt=2024-01-01T02:30:00Z"
        ))
        .await;
    assert_eq!(values(&window), [21, 23], "{window}");
    let last = b.get_json(&format!("/temporal/entities/{ID}?lastN=2")).await;
    assert_eq!(values(&last), [23, 25], "{last}");
    let aggr = b
        .get_json(&format!(
            "/temporal/entities/{ID}?format=aggregatedValues&aggrMethods=max,sum&aggrPeriodDuration=P1D"
        ))
        .await;
    assert_eq!(aggr["temperature"]["max"][0][0], 25, "{aggr}");
    assert_eq!(aggr["temperature"]["sum"][0][0], 89, "{aggr}");
    // A query selects by type and q on history.
    let list = b.get_json("/temporal/entities?type=Sensor&q=temperature>24&count=true").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let none = b.get_json("/temporal/entities?type=Sensor&q=temperature>30").await;
    assert_eq!(none, json!([]));
}

async fn edits(b: &TestBroker) {
    seed(b).await;
    let all = b.get_json(&format!("/temporal/entities/{ID}")).await;
    let first = all["temperature"][0]["instanceId"].as_str().unwrap().to_string();
    let second = all["temperature"][1]["instanceId"].as_str().unwrap().to_string();
    let r = b
        .patch(&format!("/temporal/entities/{ID}/attrs/temperature/{first}"), &json!({"type": "Property", "value": 19}))
        .await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    // No attribute name: the path reads as an attribute's, which takes no PATCH.
    let r = b.patch(&format!("/temporal/entities/{ID}/attrs//{first}"), &json!({"type": "Property", "value": 1})).await;
    assert_problem(r, 405, "MethodNotAllowed").await;
    let r = b.delete(&format!("/temporal/entities/{ID}/attrs/temperature/{second}")).await;
    assert_eq!(r.status(), 204);
    let after = b.get_json(&format!("/temporal/entities/{ID}")).await;
    assert_eq!(values(&after), [19, 23, 25], "{after}");
    assert_eq!(after["temperature"][0]["instanceId"], first.as_str());
    let r = b.delete(&format!("/temporal/entities/{ID}/attrs/temperature/{second}")).await;
    assert_problem(r, 404, "ResourceNotFound").await;
    let r = b.delete(&format!("/temporal/entities/{ID}/attrs/temperature")).await;
    assert_eq!(r.status(), 204);
    let r = b.delete(&format!("/temporal/entities/{ID}")).await;
    assert_eq!(r.status(), 204);
    let r = b.get(&format!("/temporal/entities/{ID}")).await;
    assert_problem(r, 404, "ResourceNotFound").await;
}

store_tests! {
    records_and_windows,
    edits,
}
