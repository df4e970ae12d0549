//! Subscriptions and notifications over real HTTP: a broker, a real HTTP receiver (axum) and the
//! real Mosquitto on 127.0.0.1:1883. Timing assertions wait for events with timeouts and allow
//! generous tolerances: the machine is shared.

mod common;

use common::{Received, Receiver, TestBroker, assert_problem};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

fn building(id: &str) -> Value {
    json!({
        "id": id, "type": "Building",
        "name": {"type": "Property", "value": "Eiffel Tower"},
        "height": {"type": "Property", "value": 300, "unitCode": "MTR"},
        "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:1"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.29, 48.85]}},
        "scope": "/paris/7"
    })
}

fn subscription(uri: &str, extra: Value) -> Value {
    let mut s = json!({
        "type": "Subscription",
        "entities": [{"type": "Building"}],
        "notification": {"endpoint": {"uri": uri}}
    });
    if let (Some(s), Some(extra)) = (s.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    s
}

/// Creates a subscription and returns its id.
async fn subscribe(broker: &TestBroker, body: &Value) -> String {
    let r = broker.post("/subscriptions", body).await;
    let status = r.status();
    let location = r.headers().get("location").map(|l| l.to_str().unwrap_or_default().to_string());
    assert_eq!(status, 201, "{}", r.text().await.unwrap_or_default());
    let location = location.expect("Location");
    location.rsplit('/').next().expect("id").to_string()
}

async fn create(broker: &TestBroker, entity: &Value) {
    let r = broker.post("/entities", entity).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
}

async fn patch_attrs(broker: &TestBroker, id: &str, fragment: &Value) {
    let r = broker.patch(&format!("/entities/{id}/attrs"), fragment).await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
}

fn entity0(r: &Received) -> &Value {
    &r.body["data"][0]
}

async fn crud_and_errors(broker: &TestBroker) {
    let body = subscription(
        "http://127.0.0.1:9/notify",
        json!({"id": "urn:ngsi-ld:Subscription:crud", "watchedAttributes": ["height"], "q": "height>100"}),
    );
    let r = broker.post("/subscriptions", &body).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], "/ngsi-ld/v1/subscriptions/urn:ngsi-ld:Subscription:crud");
    assert_problem(broker.post("/subscriptions", &body).await, 409, "AlreadyExists").await;
    let got = broker.get_json("/subscriptions/urn:ngsi-ld:Subscription:crud").await;
    assert_eq!(got["entities"], json!([{"type": "Building"}]));
    assert_eq!(got["watchedAttributes"], json!(["height"]));
    assert_eq!(got["status"], "active");
    assert_eq!(got["q"], "height>100");
    assert_eq!(got["notificationTrigger"], json!(["attributeCreated", "attributeUpdated"]));
    // Names compact with the requester's @context: without a matching term they stay IRIs.
    let r = broker
        .request(reqwest::Method::GET, "/subscriptions/urn:ngsi-ld:Subscription:crud")
        .header("Accept", "application/ld+json")
        .send()
        .await
        .expect("sent");
    let ld: Value = r.json().await.expect("json");
    assert!(ld.get("@context").is_some(), "{ld}");

    for i in 0..3 {
        subscribe(
            broker,
            &subscription("http://127.0.0.1:9/notify", json!({"id": format!("urn:ngsi-ld:Subscription:p{i}")})),
        )
        .await;
    }
    let r = broker.get("/subscriptions?limit=2&offset=1&count=true").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["NGSILD-Results-Count"], "4");
    let links: Vec<String> =
        r.headers().get_all("link").iter().map(|v| v.to_str().unwrap_or_default().to_string()).collect();
    assert!(links.iter().any(|l| l.contains("rel=\"prev\"") && l.contains("offset=0")), "{links:?}");
    assert!(links.iter().any(|l| l.contains("rel=\"next\"") && l.contains("offset=3")), "{links:?}");
    let page: Value = r.json().await.expect("json");
    assert_eq!(page.as_array().map(Vec::len), Some(2));
    assert_eq!(page[0]["id"], "urn:ngsi-ld:Subscription:p0");

    let r = broker.patch("/subscriptions/urn:ngsi-ld:Subscription:crud", &json!({"isActive": false})).await;
    assert_eq!(r.status(), 204);
    assert_eq!(broker.get_json("/subscriptions/urn:ngsi-ld:Subscription:crud").await["status"], "paused");

    assert_problem(broker.get("/subscriptions/urn:ngsi-ld:Subscription:none").await, 404, "ResourceNotFound").await;
    assert_problem(broker.get("/subscriptions/not-a-uri").await, 400, "BadRequestData").await;
    assert_problem(
        broker.patch("/subscriptions/urn:ngsi-ld:Subscription:none", &json!({"isActive": true})).await,
        404,
        "ResourceNotFound",
    )
    .await;
    assert_problem(broker.delete("/subscriptions/urn:ngsi-ld:Subscription:none").await, 404, "ResourceNotFound").await;
    for bad in [
        json!({"type": "Subscription", "entities": [{"type": "Building"}]}),
        subscription("http://a/n", json!({"throttling": 10, "timeInterval": 5})),
        subscription("http://a/n", json!({"notificationTrigger": ["entityChanged"]})),
        subscription("http://a/n", json!({"q": "height>>1"})),
        subscription("http://a/n", json!({"expiresAt": "2000-01-01T00:00:00Z"})),
        subscription("ftp://a/n", json!({})),
    ] {
        assert_problem(broker.post("/subscriptions", &bad).await, 400, "BadRequestData").await;
    }
    let r = broker.patch("/subscriptions/urn:ngsi-ld:Subscription:crud", &json!({"notification": null})).await;
    assert_problem(r, 400, "BadRequestData").await;
    assert_eq!(broker.delete("/subscriptions/urn:ngsi-ld:Subscription:crud").await.status(), 204);
    assert_problem(broker.get("/subscriptions/urn:ngsi-ld:Subscription:crud").await, 404, "ResourceNotFound").await;
}

async fn every_trigger(broker: &TestBroker) {
    let rx = Receiver::start().await;
    for trigger in
        ["entityCreated", "entityUpdated", "entityDeleted", "attributeCreated", "attributeUpdated", "attributeDeleted"]
    {
        let mut body = subscription(&rx.url, json!({"notificationTrigger": [trigger]}));
        body["subscriptionName"] = json!(trigger);
        subscribe(broker, &body).await;
    }
    let id = "urn:ngsi-ld:Building:triggers";
    // A creation fires entityCreated, and attributeCreated for the attributes it brings.
    create(broker, &building(id)).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(rx.expect().await);
    }
    rx.expect_none(Duration::from_millis(300)).await;
    assert_eq!(got.iter().filter(|r| entity0(r)["id"] == id).count(), 2);
    // An update fires attributeUpdated and entityUpdated; a new attribute attributeCreated and
    // entityUpdated; a deleted one attributeDeleted and entityUpdated.
    patch_attrs(broker, id, &json!({"height": {"type": "Property", "value": 301}})).await;
    let (a, b) = (rx.expect().await, rx.expect().await);
    assert_eq!(entity0(&a)["height"]["value"], 301);
    assert_eq!(entity0(&b)["height"]["value"], 301);
    rx.expect_none(Duration::from_millis(300)).await;
    let r = broker.post(&format!("/entities/{id}/attrs"), &json!({"floors": {"type": "Property", "value": 3}})).await;
    assert_eq!(r.status(), 204);
    rx.expect().await;
    rx.expect().await;
    assert_eq!(broker.delete(&format!("/entities/{id}/attrs/floors")).await.status(), 204);
    let (a, b) = (rx.expect().await, rx.expect().await);
    let deleted =
        [a, b].into_iter().find(|r| entity0(r).get("floors").is_some()).expect("the deletion shows the attribute");
    assert_eq!(entity0(&deleted)["floors"], json!({"type": "Property", "value": "urn:ngsi-ld:null"}));
    // Deleting the entity fires entityDeleted (id, type, deletedAt) and attributeDeleted.
    assert_eq!(broker.delete(&format!("/entities/{id}")).await.status(), 204);
    let (a, b) = (rx.expect().await, rx.expect().await);
    let only_core =
        [&a, &b].into_iter().find(|r| entity0(r).as_object().map(|o| o.len()) == Some(3)).expect("entityDeleted");
    assert!(entity0(only_core)["deletedAt"].is_string());
    let with_attrs = [&a, &b].into_iter().find(|r| entity0(r).get("name").is_some()).expect("attributeDeleted");
    assert_eq!(entity0(with_attrs)["name"]["value"], "urn:ngsi-ld:null");
    rx.expect_none(Duration::from_millis(300)).await;
}

async fn watched_attributes_and_filters(broker: &TestBroker) {
    let rx = Receiver::start().await;
    let watched = subscribe(broker, &subscription(&rx.url, json!({"watchedAttributes": ["height"]}))).await;
    create(broker, &building("urn:ngsi-ld:Building:w1")).await;
    let r = rx.expect().await;
    assert_eq!(r.body["subscriptionId"], watched);
    patch_attrs(broker, "urn:ngsi-ld:Building:w1", &json!({"name": {"type": "Property", "value": "x"}})).await;
    rx.expect_none(Duration::from_millis(500)).await;
    assert_eq!(broker.delete(&format!("/subscriptions/{watched}")).await.status(), 204);

    // q, scopeQ, geoQ, idPattern, type expressions: only matching entities notify.
    for (name, extra) in [
        ("q", json!({"q": "height>1000"})),
        ("scopeQ", json!({"scopeQ": "/london/#"})),
        (
            "geoQ",
            json!({"geoQ": {"georel": "near;maxDistance==1000", "geometry": "Point", "coordinates": [-0.12, 51.5]}}),
        ),
        ("idPattern", json!({"entities": [{"idPattern": ".*:tall.*", "type": "Building"}]})),
        ("types", json!({"entities": [{"type": "(Building;Tower)|Bridge"}]})),
    ] {
        let mut body = subscription(&rx.url, extra);
        body["subscriptionName"] = json!(name);
        subscribe(broker, &body).await;
    }
    let mut tall = building("urn:ngsi-ld:Building:tall1");
    tall["type"] = json!(["Building", "Tower"]);
    tall["height"]["value"] = json!(2000);
    tall["scope"] = json!("/london/westminster");
    tall["location"]["value"]["coordinates"] = json!([-0.121, 51.501]);
    create(broker, &tall).await;
    let mut names = Vec::new();
    for _ in 0..5 {
        let Some(r) = rx.next(Duration::from_secs(10)).await else {
            let all = broker.get_json("/subscriptions?limit=100").await;
            panic!("5 filters match, got {names:?} of {all}");
        };
        assert_eq!(entity0(&r)["id"], "urn:ngsi-ld:Building:tall1");
        names.push(r.body["subscriptionId"].as_str().unwrap_or_default().to_string());
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 5);
    create(broker, &building("urn:ngsi-ld:Building:small")).await;
    rx.expect_none(Duration::from_millis(500)).await;
}

async fn formats_and_headers(broker: &TestBroker) {
    let rx = Receiver::start().await;
    let id = "urn:ngsi-ld:Building:fmt";
    create(broker, &building(id)).await;
    let base = |notification: Value| {
        let mut n = notification;
        n["endpoint"]["uri"] = json!(rx.url);
        json!({"type": "Subscription", "entities": [{"id": id, "type": "Building"}], "notification": n})
    };
    let kv = subscribe(broker, &base(json!({"format": "keyValues", "attributes": ["height"], "endpoint": {"receiverInfo": [{"key": "X-Auth", "value": "secret"}]}}))).await;
    let concise = subscribe(broker, &base(json!({"format": "concise", "sysAttrs": true, "endpoint": {}}))).await;
    let changes =
        subscribe(broker, &base(json!({"showChanges": true, "endpoint": {"accept": "application/ld+json"}}))).await;
    patch_attrs(broker, id, &json!({"height": {"type": "Property", "value": 310, "unitCode": "MTR"}})).await;
    let mut by_sub = std::collections::HashMap::new();
    for _ in 0..3 {
        let r = rx.expect().await;
        by_sub.insert(r.body["subscriptionId"].as_str().unwrap_or_default().to_string(), r);
    }
    let r = &by_sub[&kv];
    assert_eq!(entity0(r), &json!({"id": id, "type": "Building", "scope": "/paris/7", "height": 310}));
    assert_eq!(r.headers["x-auth"], "secret");
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(r.headers["link"].to_str().unwrap_or_default().contains("ngsi-ld-core-context"));
    assert_eq!(r.body["type"], "Notification");
    assert!(r.body["id"].as_str().is_some_and(|i| i.starts_with("urn:ngsi-ld:Notification:")));
    assert!(r.body["notifiedAt"].is_string());
    let r = &by_sub[&concise];
    assert_eq!(entity0(r)["height"]["value"], 310);
    assert!(entity0(r)["height"].get("type").is_none());
    assert!(entity0(r)["createdAt"].is_string());
    let r = &by_sub[&changes];
    assert_eq!(r.headers["content-type"], "application/ld+json");
    assert!(r.headers.get("link").is_none());
    assert!(entity0(r).get("@context").is_some());
    assert_eq!(entity0(r)["height"]["previousValue"], 300);
    assert_eq!(entity0(r)["height"]["value"], 310);

    // Tenants: the notification names the tenant of the subscription.
    let t = broker
        .request(reqwest::Method::POST, "/subscriptions")
        .header("Content-Type", "application/json")
        .header("NGSILD-Tenant", "daejeon")
        .body(subscription(&rx.url, json!({})).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(t.status(), 201);
    let r = broker
        .request(reqwest::Method::POST, "/entities")
        .header("Content-Type", "application/json")
        .header("NGSILD-Tenant", "daejeon")
        .body(building("urn:ngsi-ld:Building:t1").to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 201);
    let got = rx.expect().await;
    assert_eq!(got.headers["ngsild-tenant"], "daejeon");
    rx.expect_none(Duration::from_millis(300)).await;
}

async fn throttling_and_time_interval(broker: &TestBroker) {
    let rx = Receiver::start().await;
    let id = "urn:ngsi-ld:Building:throttle";
    create(broker, &building(id)).await;
    subscribe(broker, &subscription(&rx.url, json!({"entities": [{"id": id, "type": "Building"}], "throttling": 1})))
        .await;
    let start = Instant::now();
    for v in [1, 2, 3] {
        patch_attrs(broker, id, &json!({"height": {"type": "Property", "value": v}})).await;
    }
    let first = rx.expect().await;
    assert_eq!(entity0(&first)["height"]["value"], 1);
    let second = rx.expect().await;
    let gap = second.at - first.at;
    assert!(gap >= Duration::from_millis(900), "throttling of 1 s, yet {gap:?} between notifications");
    // The held-back changes arrive together, the entity in its latest state.
    assert_eq!(second.body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(entity0(&second)["height"]["value"], 3);
    assert!(start.elapsed() < Duration::from_secs(8));
    rx.expect_none(Duration::from_millis(1500)).await;

    let rx2 = Receiver::start().await;
    let periodic = subscribe(
        broker,
        &subscription(&rx2.url, json!({"entities": [{"id": id, "type": "Building"}], "timeInterval": 1})),
    )
    .await;
    let a = rx2.expect().await;
    let b = rx2.expect().await;
    let c = rx2.expect().await;
    assert_eq!(a.body["subscriptionId"], periodic);
    assert_eq!(entity0(&a)["id"], id);
    for gap in [b.at - a.at, c.at - b.at] {
        assert!(gap >= Duration::from_millis(700) && gap <= Duration::from_millis(2500), "period of 1 s, got {gap:?}");
    }
    assert_eq!(broker.delete(&format!("/subscriptions/{periodic}")).await.status(), 204);
    // At most one more (already queued) after the deletion.
    let _ = rx2.next(Duration::from_millis(200)).await;
    rx2.expect_none(Duration::from_millis(1500)).await;
}

async fn expiry_and_is_active(broker: &TestBroker) {
    let rx = Receiver::start().await;
    let id = "urn:ngsi-ld:Building:expiry";
    create(broker, &building(id)).await;
    let expires = chrono_like_in(Duration::from_secs(2));
    let sub = subscribe(broker, &subscription(&rx.url, json!({"expiresAt": expires, "isActive": false}))).await;
    patch_attrs(broker, id, &json!({"height": {"type": "Property", "value": 1}})).await;
    rx.expect_none(Duration::from_millis(500)).await;
    assert_eq!(broker.patch(&format!("/subscriptions/{sub}"), &json!({"isActive": true})).await.status(), 204);
    patch_attrs(broker, id, &json!({"height": {"type": "Property", "value": 2}})).await;
    assert_eq!(entity0(&rx.expect().await)["height"]["value"], 2);
    // After expiresAt, nothing more, and the status says so.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    patch_attrs(broker, id, &json!({"height": {"type": "Property", "value": 3}})).await;
    rx.expect_none(Duration::from_millis(700)).await;
    assert_eq!(broker.get_json(&format!("/subscriptions/{sub}")).await["status"], "expired");
    let later = chrono_like_in(Duration::from_secs(3600));
    assert_eq!(broker.patch(&format!("/subscriptions/{sub}"), &json!({"expiresAt": later})).await.status(), 204);
    assert_eq!(broker.get_json(&format!("/subscriptions/{sub}")).await["status"], "active");
}

/// An ISO 8601 instant `d` from now.
fn chrono_like_in(d: Duration) -> String {
    let micros = hanbat_model::Timestamp::now().micros() + d.as_micros() as i64;
    hanbat_model::time::format_micros(micros)
}

async fn status_counters_and_retries(broker: &TestBroker) {
    let rx = Receiver::start().await;
    let id = "urn:ngsi-ld:Building:status";
    create(broker, &building(id)).await;
    let sub = subscribe(broker, &subscription(&rx.url, json!({"entities": [{"id": id, "type": "Building"}]}))).await;
    patch_attrs(broker, id, &json!({"height": {"type": "Property", "value": 1}})).await;
    rx.expect().await;
    let n = wait_for(broker, &sub, |n| n["timesSent"] == 1).await;
    assert_eq!(n["status"], "ok");
    assert!(n["lastSuccess"].is_string() && n["lastNotification"].is_string());
    assert!(n.get("lastFailure").is_none());

    // Two failures, then success: retried with backoff, counted, status back to ok.
    rx.behaviour.fail_first.store(2, Ordering::SeqCst);
    patch_attrs(broker, id, &json!({"height": {"type": "Property", "value": 2}})).await;
    let attempts = [rx.expect().await, rx.expect().await, rx.expect().await];
    assert!(attempts.iter().all(|a| entity0(a)["height"]["value"] == 2));
    let backoff = attempts[2].at - attempts[1].at;
    assert!(backoff >= Duration::from_millis(800), "the second retry waits longer than the first: {backoff:?}");
    let n = wait_for(broker, &sub, |n| n["timesSent"] == 4).await;
    assert_eq!(n["timesFailed"], 2);
    assert_eq!(n["status"], "ok");
    assert!(n["lastFailure"].is_string());

    // A receiver that keeps failing: status failed after the first failed attempt.
    rx.behaviour.status.store(503, Ordering::SeqCst);
    patch_attrs(broker, id, &json!({"height": {"type": "Property", "value": 3}})).await;
    rx.expect().await;
    let n = wait_for(broker, &sub, |n| n["status"] == "failed").await;
    assert!(n["timesFailed"].as_u64().is_some_and(|f| f >= 3));
}

/// Polls the subscription until its notification status satisfies `cond` (10 s at most).
async fn wait_for(broker: &TestBroker, sub: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let n = broker.get_json(&format!("/subscriptions/{sub}")).await["notification"].clone();
        if cond(&n) {
            return n;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "status never reached the expected state: {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn restart_keeps_subscriptions(broker: &TestBroker) {
    let rx = Receiver::start().await;
    let id = "urn:ngsi-ld:Building:restart";
    create(broker, &building(id)).await;
    let ctx = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";
    let sub = subscribe(
        broker,
        &subscription(
            &rx.url,
            json!({"entities": [{"id": id, "type": "Building"}], "q": "height>0", "jsonldContext": ctx}),
        ),
    )
    .await;
    patch_attrs(broker, id, &json!({"height": {"type": "Property", "value": 1}})).await;
    rx.expect().await;
    wait_for(broker, &sub, |n| n["timesSent"] == 1).await;
    let broker = broker.restart().await;
    let got = broker.get_json(&format!("/subscriptions/{sub}")).await;
    assert_eq!(got["q"], "height>0");
    assert_eq!(got["notification"]["timesSent"], 1, "counters written back at shutdown");
    patch_attrs(&broker, id, &json!({"height": {"type": "Property", "value": 2}})).await;
    assert_eq!(entity0(&rx.expect().await)["height"]["value"], 2);
    patch_attrs(&broker, id, &json!({"height": {"type": "Property", "value": -1}})).await;
    rx.expect_none(Duration::from_millis(500)).await;
}

async fn dead_receiver_delays_only_its_own(broker: &TestBroker) {
    let dead = Receiver::start().await;
    dead.behaviour.status.store(0, Ordering::SeqCst);
    let live = Receiver::start().await;
    subscribe(broker, &subscription(&dead.url, json!({}))).await;
    let ok = subscribe(broker, &subscription(&live.url, json!({}))).await;
    for i in 0..20 {
        create(broker, &building(&format!("urn:ngsi-ld:Building:iso{i}"))).await;
    }
    let start = Instant::now();
    let mut ids = Vec::new();
    while ids.len() < 20 {
        let r = live.expect().await;
        assert_eq!(r.body["subscriptionId"], ok);
        ids.extend(
            r.body["data"].as_array().into_iter().flatten().filter_map(|e| e["id"].as_str()).map(str::to_string),
        );
    }
    assert!(start.elapsed() < Duration::from_secs(3), "the live receiver waited {:?}", start.elapsed());
    assert!(dead.next(Duration::from_secs(1)).await.is_some(), "the dead receiver was tried");
}

/// Mosquitto on 127.0.0.1:1883 (skipped with a message when it is not running).
async fn mqtt_notifications(broker: &TestBroker) {
    if tokio::net::TcpStream::connect("127.0.0.1:1883").await.is_err() {
        eprintln!("mqtt_notifications: no MQTT broker on 127.0.0.1:1883; skipped");
        return;
    }
    for (version, qos) in [("mqtt3.1.1", "1"), ("mqtt5.0", "2"), ("mqtt3.1.1", "0")] {
        let topic = format!("hanbat/test/{}", uuid_like());
        let (client, mut events) =
            rumqttc::AsyncClient::new(rumqttc::MqttOptions::new(format!("t-{}", uuid_like()), "127.0.0.1", 1883), 64);
        client.subscribe(&topic, rumqttc::QoS::AtLeastOnce).await.expect("subscribe");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let poller = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        let _ = tx.send(None);
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        let _ = tx.send(Some(p.payload.to_vec()));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        assert!(matches!(tokio::time::timeout(Duration::from_secs(5), rx.recv()).await, Ok(Some(None))), "SubAck");
        let id = format!("urn:ngsi-ld:Building:mqtt{}", uuid_like());
        let body = json!({
            "type": "Subscription", "entities": [{"id": id, "type": "Building"}],
            "notificationTrigger": ["entityCreated"],
            "notification": {"endpoint": {
                "uri": format!("mqtt://127.0.0.1:1883/{topic}"),
                "receiverInfo": [{"key": "x-site", "value": "daejeon"}],
                "notifierInfo": [{"key": "MQTT-Version", "value": version}, {"key": "MQTT-QoS", "value": qos}]
            }}
        });
        let sub = subscribe(broker, &body).await;
        create(broker, &building(&id)).await;
        let payload = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .ok()
            .flatten()
            .flatten()
            .expect("an MQTT notification");
        let message: Value = serde_json::from_slice(&payload).expect("JSON message");
        assert_eq!(message["metadata"]["Content-Type"], "application/json");
        assert!(message["metadata"]["Link"].is_string());
        assert_eq!(message["metadata"]["x-site"], "daejeon");
        assert_eq!(message["body"]["type"], "Notification");
        assert_eq!(message["body"]["subscriptionId"], sub);
        assert_eq!(message["body"]["data"][0]["id"], id.as_str());
        wait_for(broker, &sub, |n| n["timesSent"] == 1 && n["status"] == "ok").await;
        poller.abort();
    }
    // An unreachable MQTT broker fails like an unreachable HTTP receiver.
    let body = json!({"type": "Subscription", "entities": [{"type": "Building"}],
        "notification": {"endpoint": {"uri": "mqtt://127.0.0.1:9/none", "timeout": 300}}});
    let sub = subscribe(broker, &body).await;
    create(broker, &building("urn:ngsi-ld:Building:mqtt-dead")).await;
    wait_for(broker, &sub, |n| n["status"] == "failed").await;
}

/// `notification.join` (§4.5.23): the entity a Relationship points to comes with the
/// notification, inline under the Relationship (in place of its object when simplified) or
/// flat after the entity; whole, whatever the subscription's attribute selection.
async fn linked_entities_join_notifications(broker: &TestBroker) {
    let person = json!({"id": "urn:ngsi-ld:Person:1", "type": "Person",
        "name": {"type": "Property", "value": "Gustave"}, "age": {"type": "Property", "value": 91}});
    create(broker, &person).await;
    let id = format!("urn:ngsi-ld:Building:join-{}", uuid_like());
    create(broker, &building(&id)).await;
    let (flat, inline) = (Receiver::start().await, Receiver::start().await);
    let selector = json!([{"type": "Building", "id": id}]);
    let mut body = subscription(&flat.url, json!({"entities": selector}));
    body["notification"]["join"] = json!("flat");
    body["notification"]["attributes"] = json!(["owner"]);
    subscribe(broker, &body).await;
    let mut body = subscription(&inline.url, json!({"entities": selector}));
    body["notification"]["join"] = json!("inline");
    body["notification"]["format"] = json!("keyValues");
    subscribe(broker, &body).await;

    patch_attrs(broker, &id, &json!({"owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:1"}})).await;
    let n = flat.expect().await;
    let data = n.body["data"].as_array().expect("data");
    assert_eq!(data.len(), 2, "the building, then its owner: {}", n.body);
    assert_eq!(data[0]["id"], id.as_str());
    assert!(data[0].get("height").is_none(), "the subscribed entity keeps its selection: {}", data[0]);
    assert_eq!(data[1]["id"], "urn:ngsi-ld:Person:1");
    assert_eq!(data[1]["age"]["value"], 91, "the linked entity comes whole: {}", data[1]);
    let n = inline.expect().await;
    let owner = &entity0(&n)["owner"];
    assert_eq!(owner["id"], "urn:ngsi-ld:Person:1", "{}", n.body);
    assert_eq!(owner["name"], "Gustave");
    assert_eq!(n.body["data"].as_array().map(Vec::len), Some(1));
}

/// The subscription ids of the next `n` notifications, sorted; nothing else may follow.
async fn received(rx: &Receiver, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    for _ in 0..n {
        got.push(rx.expect().await.body["subscriptionId"].as_str().unwrap_or_default().to_string());
    }
    rx.expect_none(Duration::from_millis(400)).await;
    got.sort();
    got
}

/// Subscriptions whose `q` pins an attribute to a number are found by that number: each write
/// notifies exactly the subscriptions its value matches, whatever the value's form (integer or
/// decimal, single or in an array), and re-indexing follows changes of `q` and deletions.
async fn equality_filters_notify_only_their_value(broker: &TestBroker) {
    let rx = Receiver::start().await;
    let mut subs = Vec::new();
    for floor in 1..=3 {
        subs.push(subscribe(broker, &subscription(&rx.url, json!({"q": format!("floors=={floor}")}))).await);
    }
    let range = subscribe(broker, &subscription(&rx.url, json!({"q": "floors>2"}))).await;

    let mut b = building("urn:ngsi-ld:Building:eq1");
    b["floors"] = json!({"type": "Property", "value": 2.0});
    create(broker, &b).await;
    assert_eq!(received(&rx, 1).await, [subs[1].clone()], "2.0 is the number 2");
    patch_attrs(broker, "urn:ngsi-ld:Building:eq1", &json!({"floors": {"type": "Property", "value": 3}})).await;
    let mut expected = vec![subs[2].clone(), range.clone()];
    expected.sort();
    assert_eq!(received(&rx, 2).await, expected);
    patch_attrs(broker, "urn:ngsi-ld:Building:eq1", &json!({"floors": {"type": "Property", "value": [1, 7]}})).await;
    let mut expected = vec![subs[0].clone(), range.clone()];
    expected.sort();
    assert_eq!(received(&rx, 2).await, expected, "an array matches by any element");

    // A changed q moves the subscription; a deleted one is gone.
    let r = broker.patch(&format!("/subscriptions/{}", subs[0]), &json!({"q": "floors==9"})).await;
    assert_eq!(r.status(), 204);
    assert_eq!(broker.delete(&format!("/subscriptions/{range}")).await.status(), 204);
    patch_attrs(broker, "urn:ngsi-ld:Building:eq1", &json!({"floors": {"type": "Property", "value": 9}})).await;
    assert_eq!(received(&rx, 1).await, [subs[0].clone()]);
    patch_attrs(broker, "urn:ngsi-ld:Building:eq1", &json!({"floors": {"type": "Property", "value": 1}})).await;
    rx.expect_none(Duration::from_millis(400)).await;
}

fn uuid_like() -> String {
    format!("{:x}", hanbat_model::Timestamp::now().micros() ^ (std::process::id() as i64) << 20)
}

store_tests!(
    crud_and_errors,
    every_trigger,
    watched_attributes_and_filters,
    formats_and_headers,
    throttling_and_time_interval,
    expiry_and_is_active,
    status_counters_and_retries,
    restart_keeps_subscriptions,
    dead_receiver_delays_only_its_own,
    mqtt_notifications,
    linked_entities_join_notifications,
    equality_filters_notify_only_their_value,
);
