//! Context source registrations and registration subscriptions over real HTTP: a broker and a
//! real HTTP receiver for the registration notifications.

mod common;

use common::{Receiver, TestBroker, assert_problem};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const REGS: &str = "/csourceRegistrations";
const SUBS: &str = "/csourceSubscriptions";

fn registration(id: &str, information: Value) -> Value {
    json!({"id": id, "type": "ContextSourceRegistration", "endpoint": "http://source.example/ngsi-ld/v1",
           "information": information})
}

fn buildings(id: &str) -> Value {
    registration(id, json!([{"entities": [{"type": "Building"}], "propertyNames": ["name", "height"]}]))
}

async fn register(broker: &TestBroker, body: &Value) -> String {
    let r = broker.post(REGS, body).await;
    let status = r.status();
    let location = r.headers().get("location").and_then(|l| l.to_str().ok()).map(str::to_string);
    assert_eq!(status, 201, "{}", r.text().await.unwrap_or_default());
    let location = location.expect("Location");
    assert!(location.starts_with("/ngsi-ld/v1/csourceRegistrations/"), "{location}");
    location.rsplit('/').next().expect("id").to_string()
}

/// The ids of a query's answer, in order.
async fn query_ids(broker: &TestBroker, query: &str) -> Vec<String> {
    let body = broker.get_json(&format!("{REGS}?{query}")).await;
    body.as_array().expect("array").iter().map(|r| r["id"].as_str().expect("id").to_string()).collect()
}

async fn crud_and_errors(broker: &TestBroker) {
    let id = register(broker, &buildings("urn:ngsi-ld:ContextSourceRegistration:crud")).await;
    let got = broker.get_json(&format!("{REGS}/{id}")).await;
    assert_eq!(got["type"], "ContextSourceRegistration");
    assert_eq!(got["information"], json!([{"entities": [{"type": "Building"}], "propertyNames": ["name", "height"]}]));
    assert_eq!(got["mode"], "inclusive");
    assert_eq!(got["operations"], json!(["federationOps"]));
    assert!(got.get("createdAt").is_none());
    let with_sys = broker.get_json(&format!("{REGS}/{id}?options=sysAttrs")).await;
    assert!(with_sys["createdAt"].is_string() && with_sys["modifiedAt"].is_string(), "{with_sys}");

    let again = broker.post(REGS, &buildings(&id)).await;
    assert_problem(again, 409, "AlreadyExists").await;

    // Validation: the detail says what is wrong.
    let mut no_endpoint = buildings("urn:ngsi-ld:ContextSourceRegistration:x");
    no_endpoint.as_object_mut().expect("object").remove("endpoint");
    let p = assert_problem(broker.post(REGS, &no_endpoint).await, 400, "BadRequestData").await;
    assert!(p["detail"].as_str().expect("detail").contains("endpoint"), "{p}");
    let bad_info = registration("urn:ngsi-ld:ContextSourceRegistration:x", json!([{"entities": [{"id": "urn:a"}]}]));
    let p = assert_problem(broker.post(REGS, &bad_info).await, 400, "BadRequestData").await;
    assert!(p["detail"].as_str().expect("detail").contains("type is mandatory"), "{p}");
    let mut info = buildings("urn:ngsi-ld:ContextSourceRegistration:x");
    info["contextSourceInfo"] = json!([{"key": "X-Custom", "value": 123}]);
    assert_problem(broker.post(REGS, &info).await, 400, "BadRequestData").await;
    let mut past = buildings("urn:ngsi-ld:ContextSourceRegistration:x");
    past["expiresAt"] = json!("2000-01-01T00:00:00Z");
    assert_problem(broker.post(REGS, &past).await, 400, "BadRequestData").await;

    assert_problem(broker.get(&format!("{REGS}/notAUri")).await, 400, "BadRequestData").await;
    assert_problem(
        broker.get(&format!("{REGS}/urn:ngsi-ld:ContextSourceRegistration:none")).await,
        404,
        "ResourceNotFound",
    )
    .await;
    assert_problem(
        broker.delete(&format!("{REGS}/urn:ngsi-ld:ContextSourceRegistration:none")).await,
        404,
        "ResourceNotFound",
    )
    .await;

    // PATCH replaces members, null removes optional ones, mandatory ones stay.
    let r =
        broker.patch(&format!("{REGS}/{id}"), &json!({"endpoint": "http://new.example:1026", "scope": "/a/b"})).await;
    assert_eq!(r.status(), 204);
    let got = broker.get_json(&format!("{REGS}/{id}")).await;
    assert_eq!(got["endpoint"], "http://new.example:1026");
    assert_eq!(got["scope"], "/a/b");
    assert_eq!(broker.patch(&format!("{REGS}/{id}"), &json!({"scope": null})).await.status(), 204);
    assert!(broker.get_json(&format!("{REGS}/{id}")).await.get("scope").is_none());
    let p = assert_problem(
        broker.patch(&format!("{REGS}/{id}"), &json!({"information": null})).await,
        400,
        "BadRequestData",
    )
    .await;
    assert!(p["detail"].as_str().expect("detail").contains("information"), "{p}");
    assert_problem(broker.patch(&format!("{REGS}/{id}"), &json!({"type": "Building"})).await, 400, "BadRequestData")
        .await;
    assert_problem(
        broker
            .patch(
                &format!("{REGS}/urn:ngsi-ld:ContextSourceRegistration:none"),
                &json!({"endpoint": "http://a.example"}),
            )
            .await,
        404,
        "ResourceNotFound",
    )
    .await;

    assert_eq!(broker.delete(&format!("{REGS}/{id}")).await.status(), 204);
    assert_problem(broker.get(&format!("{REGS}/{id}")).await, 404, "ResourceNotFound").await;

    // Without an id, one is generated.
    let mut anonymous = buildings("x");
    anonymous.as_object_mut().expect("object").remove("id");
    let generated = register(broker, &anonymous).await;
    assert!(generated.starts_with("urn:ngsi-ld:ContextSourceRegistration:"), "{generated}");
}

/// Names are expanded with the request's @context and compacted with the reader's; additional
/// registration properties are kept and expanded like attributes.
async fn context_expansion(broker: &TestBroker) {
    let body = json!({
        "id": "urn:ngsi-ld:ContextSourceRegistration:ctx", "type": "ContextSourceRegistration",
        "endpoint": "http://source.example",
        "information": [{"entities": [{"type": "Vehicle"}], "propertyNames": ["speed"], "relationshipNames": ["isParked"]}],
        "csourceProperty": "aValue",
        "@context": {"Vehicle": "https://example.org/v#Vehicle", "speed": "https://example.org/v#speed",
                     "csourceProperty": "https://example.org/v#csourceProperty"}
    });
    let r = broker
        .request(Method::POST, REGS)
        .header("Content-Type", "application/ld+json")
        .body(body.to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let got = broker.get_json(&format!("{REGS}/urn:ngsi-ld:ContextSourceRegistration:ctx")).await;
    let info = &got["information"][0];
    assert_eq!(info["entities"][0]["type"], "https://example.org/v#Vehicle");
    assert_eq!(info["propertyNames"], json!(["https://example.org/v#speed"]));
    // Not in the request's @context: the core context's default vocabulary, compacted back.
    assert_eq!(info["relationshipNames"], json!(["isParked"]));
    assert_eq!(got["https://example.org/v#csourceProperty"], "aValue");
    // Queries expand their names the same way.
    let ids = query_ids(broker, "type=https://example.org/v%23Vehicle&attrs=https://example.org/v%23speed").await;
    assert_eq!(ids, ["urn:ngsi-ld:ContextSourceRegistration:ctx"]);
    assert!(query_ids(broker, "type=Vehicle").await.is_empty());
}

async fn query_matching(broker: &TestBroker) {
    let vehicles = registration(
        "urn:ngsi-ld:ContextSourceRegistration:q1",
        json!([
            {"entities": [{"id": "urn:ngsi-ld:Vehicle:A456", "type": "Vehicle"}], "propertyNames": ["speed"]},
            {"entities": [{"idPattern": ".*downtown$", "type": "OffStreetParking"}]}
        ]),
    );
    let mut b1 = buildings("urn:ngsi-ld:ContextSourceRegistration:q2");
    b1["csourceProperty1"] = json!("aValue");
    b1["scope"] = json!("/Madrid/Centro");
    b1["location"] = json!({"type": "Point", "coordinates": [8.68, 49.41]});
    b1["observationInterval"] = json!({"startAt": "2020-08-01T22:07:00Z", "endAt": "2021-08-01T21:07:00Z"});
    let mut b2 = registration("urn:ngsi-ld:ContextSourceRegistration:q3", json!([{"propertyNames": ["name"]}]));
    b2["endpoint"] = json!("http://csf-b.example.com");
    b2["scope"] = json!("/Berlin");
    for r in [&vehicles, &b1, &b2] {
        register(broker, r).await;
    }
    let (q1, q2, q3) = (
        "urn:ngsi-ld:ContextSourceRegistration:q1",
        "urn:ngsi-ld:ContextSourceRegistration:q2",
        "urn:ngsi-ld:ContextSourceRegistration:q3",
    );
    // Entity type; a registration without entities covers every entity.
    assert_eq!(query_ids(broker, "type=Building").await, [q2, q3]);
    assert_eq!(query_ids(broker, "type=Vehicle").await, [q1, q3]);
    // Attributes: listed ones, or registrations covering every attribute.
    assert_eq!(query_ids(broker, "type=Vehicle&attrs=speed").await, [q1]);
    assert_eq!(query_ids(broker, "type=Building&attrs=height").await, [q2]);
    // q1's parking information names no attributes: it covers them all.
    assert_eq!(query_ids(broker, "attrs=name").await, [q1, q2, q3]);
    assert_eq!(query_ids(broker, "attrs=speed").await, [q1]);
    // Ids and id patterns.
    assert_eq!(query_ids(broker, "id=urn:ngsi-ld:Vehicle:A456&type=Vehicle").await, [q1, q3]);
    assert_eq!(query_ids(broker, "id=urn:ngsi-ld:Vehicle:B1&type=Vehicle").await, [q3]);
    assert_eq!(query_ids(broker, "type=OffStreetParking&idPattern=.*downtown$").await, [q1, q3]);
    // Without a type, a type-only EntityInfo may describe any id.
    assert_eq!(query_ids(broker, "id=urn:ngsi-ld:OffStreetParking:downtown").await, [q1, q2, q3]);
    // Filters over the registration's properties.
    assert_eq!(query_ids(broker, "type=Building&q=csourceProperty1==%22aValue%22").await, [q2]);
    assert_eq!(query_ids(broker, "type=Building&csf=endpoint==%22http://csf-b.example.com%22").await, [q3]);
    assert_eq!(query_ids(broker, "type=Building&scopeQ=/Madrid/%23").await, [q2]);
    assert_eq!(
        query_ids(broker, "type=Building&georel=near;maxDistance==2000&geometry=Point&coordinates=[8.68,49.41]").await,
        [q2]
    );
    assert_eq!(query_ids(broker, "type=Building&timerel=before&timeAt=2021-08-01T22:00:00Z").await, [q2]);
    assert!(query_ids(broker, "type=Building&timerel=before&timeAt=2019-01-01T00:00:00Z").await.is_empty());

    // Errors.
    for bad in
        ["", "id=notAUri", "type=Building&q=(invalid", "type=Building&georel=within", "type=Building&timerel=before"]
    {
        assert_problem(broker.get(&format!("{REGS}?{bad}")).await, 400, "BadRequestData").await;
    }

    // Pages, count, and prev/next links.
    let r = broker.get(&format!("{REGS}?type=Building&limit=1&offset=1&count=true")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["NGSILD-Results-Count"], "2");
    let links: Vec<String> =
        r.headers().get_all("link").iter().map(|l| l.to_str().expect("ASCII").to_string()).collect();
    assert!(links.iter().any(|l| l.contains("rel=\"prev\"") && l.contains("offset=0")), "{links:?}");
    assert!(!links.iter().any(|l| l.contains("rel=\"next\"")), "{links:?}");
    let body: Value = r.json().await.expect("JSON");
    assert_eq!(body.as_array().expect("array").len(), 1);
    assert_eq!(body[0]["id"], q3);
}

async fn tenants_and_expiry(broker: &TestBroker) {
    let id = "urn:ngsi-ld:ContextSourceRegistration:tenant";
    let r = broker
        .request(Method::POST, REGS)
        .header("Content-Type", "application/json")
        .header("NGSILD-Tenant", "csr-tenant")
        .body(buildings(id).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 201);
    let in_tenant = broker
        .request(Method::GET, &format!("{REGS}?type=Building"))
        .header("NGSILD-Tenant", "csr-tenant")
        .send()
        .await
        .expect("sent");
    let body: Value = in_tenant.json().await.expect("JSON");
    assert_eq!(body[0]["id"], id);
    assert_problem(broker.get(&format!("{REGS}/{id}")).await, 404, "ResourceNotFound").await;
    assert!(query_ids(broker, "type=Building").await.is_empty());
    let unknown = broker
        .request(Method::GET, &format!("{REGS}?type=Building"))
        .header("NGSILD-Tenant", "no-such-tenant")
        .send()
        .await
        .expect("sent");
    assert_problem(unknown, 404, "NonexistentTenant").await;

    // A registration whose expiresAt passed no longer exists.
    let mut short = buildings("urn:ngsi-ld:ContextSourceRegistration:short");
    let soon = instant_in(Duration::from_millis(1500));
    short["expiresAt"] = json!(soon);
    register(broker, &short).await;
    assert_eq!(query_ids(broker, "type=Building").await, ["urn:ngsi-ld:ContextSourceRegistration:short"]);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(query_ids(broker, "type=Building").await.is_empty());
    assert_problem(
        broker.get(&format!("{REGS}/urn:ngsi-ld:ContextSourceRegistration:short")).await,
        404,
        "ResourceNotFound",
    )
    .await;
}

/// An RFC 3339 UTC instant `after` from now.
fn instant_in(after: Duration) -> String {
    let now = hanbat_model::Timestamp::now();
    hanbat_model::Timestamp::from_micros(now.micros() + after.as_micros() as i64).to_text()
}

/// Exclusive and redirect registrations (§4.3.6.3, §5.9.2).
async fn modes_and_conflicts(broker: &TestBroker) {
    let exclusive = |id: &str, entity: &str, mode: &str| {
        let mut r =
            registration(id, json!([{"entities": [{"id": entity, "type": "Vehicle"}], "propertyNames": ["speed"]}]));
        r["mode"] = json!(mode);
        r
    };
    // Exclusive registrations name entities by id and their attributes.
    let mut type_only = buildings("urn:ngsi-ld:ContextSourceRegistration:m0");
    type_only["mode"] = json!("exclusive");
    assert_problem(broker.post(REGS, &type_only).await, 400, "BadRequestData").await;
    let mut aux = buildings("urn:ngsi-ld:ContextSourceRegistration:m0");
    aux["mode"] = json!("auxiliary");
    aux["operations"] = json!(["updateEntity"]);
    assert_problem(broker.post(REGS, &aux).await, 400, "BadRequestData").await;

    register(broker, &exclusive("urn:ngsi-ld:ContextSourceRegistration:m1", "urn:ngsi-ld:Vehicle:m", "exclusive"))
        .await;
    for mode in ["exclusive", "redirect"] {
        let clash = exclusive("urn:ngsi-ld:ContextSourceRegistration:m2", "urn:ngsi-ld:Vehicle:m", mode);
        assert_problem(broker.post(REGS, &clash).await, 409, "Conflict").await;
    }
    // Redirect registrations may overlap each other.
    for id in ["urn:ngsi-ld:ContextSourceRegistration:r1", "urn:ngsi-ld:ContextSourceRegistration:r2"] {
        register(broker, &exclusive(id, "urn:ngsi-ld:Vehicle:r", "redirect")).await;
    }
    // A local entity cannot be redirected away.
    let r = broker
        .post(
            "/entities",
            &json!({"id": "urn:ngsi-ld:Vehicle:local", "type": "Vehicle",
        "speed": {"type": "Property", "value": 3}}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let redirect = exclusive("urn:ngsi-ld:ContextSourceRegistration:r3", "urn:ngsi-ld:Vehicle:local", "redirect");
    assert_problem(broker.post(REGS, &redirect).await, 409, "Conflict").await;
    let exclusive_local =
        exclusive("urn:ngsi-ld:ContextSourceRegistration:r3", "urn:ngsi-ld:Vehicle:local", "exclusive");
    assert_problem(broker.post(REGS, &exclusive_local).await, 409, "Conflict").await;
    let got = broker.get_json(&format!("{REGS}/urn:ngsi-ld:ContextSourceRegistration:r1")).await;
    assert_eq!(got["mode"], "redirect");
}

fn csr_subscription(uri: &str, extra: Value) -> Value {
    let mut s = json!({"type": "Subscription", "entities": [{"type": "Building"}],
                       "notification": {"endpoint": {"uri": uri, "accept": "application/json"}}});
    if let (Some(s), Some(extra)) = (s.as_object_mut(), extra.as_object()) {
        s.extend(extra.clone());
    }
    s
}

async fn subscribe(broker: &TestBroker, body: &Value) -> String {
    let r = broker.post(SUBS, body).await;
    let status = r.status();
    let location = r.headers().get("location").and_then(|l| l.to_str().ok()).map(str::to_string);
    assert_eq!(status, 201, "{}", r.text().await.unwrap_or_default());
    location.expect("Location").rsplit('/').next().expect("id").to_string()
}

/// Asserts a registration notification: subscription, reason and the registrations in `data`.
fn check(body: &Value, sub: &str, reason: &str, ids: &[&str]) {
    assert_eq!(body["type"], "ContextSourceNotification", "{body}");
    assert_eq!(body["subscriptionId"], sub, "{body}");
    assert_eq!(body["triggerReason"], reason, "{body}");
    assert!(body["notifiedAt"].is_string(), "{body}");
    let data: Vec<&str> =
        body["data"].as_array().expect("data").iter().map(|r| r["id"].as_str().expect("id")).collect();
    assert_eq!(data, ids, "{body}");
}

/// The subscription once its status counts `n` notifications (recorded when the receiver has
/// answered, so shortly after the receiver saw the last one).
async fn sent(broker: &TestBroker, sub: &str, n: u64) -> Value {
    let mut got = broker.get_json(&format!("{SUBS}/{sub}")).await;
    for _ in 0..50 {
        if got["notification"]["timesSent"] == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        got = broker.get_json(&format!("{SUBS}/{sub}")).await;
    }
    got
}

async fn subscription_notifications(broker: &TestBroker) {
    let receiver = Receiver::start().await;
    let first = register(broker, &buildings("urn:ngsi-ld:ContextSourceRegistration:n1")).await;
    let other = registration("urn:ngsi-ld:ContextSourceRegistration:other", json!([{"entities": [{"type": "Bus"}]}]));
    register(broker, &other).await;

    // Creation sends what already matches.
    let sub = subscribe(broker, &csr_subscription(&receiver.url, json!({}))).await;
    let n = receiver.expect().await;
    check(&n.body, &sub, "newlyMatching", &[&first]);
    assert_eq!(n.body["data"][0]["information"][0]["entities"][0]["type"], "Building");
    assert!(n.headers.get("link").is_some_and(|l| l.to_str().unwrap_or_default().contains("rel=")));

    // A matching registration changes: updated, with its new content.
    assert_eq!(
        broker.patch(&format!("{REGS}/{first}"), &json!({"endpoint": "http://moved.example"})).await.status(),
        204
    );
    let n = receiver.expect().await;
    check(&n.body, &sub, "updated", &[&first]);
    assert_eq!(n.body["data"][0]["endpoint"], "http://moved.example");
    // It stops matching.
    let fragment = json!({"information": [{"entities": [{"type": "NewType"}]}]});
    assert_eq!(broker.patch(&format!("{REGS}/{first}"), &fragment).await.status(), 204);
    check(&receiver.expect().await.body, &sub, "noLongerMatching", &[&first]);
    // A registration of another type never notifies.
    assert_eq!(
        broker
            .patch(
                &format!("{REGS}/urn:ngsi-ld:ContextSourceRegistration:other"),
                &json!({"endpoint": "http://b.example"})
            )
            .await
            .status(),
        204
    );
    receiver.expect_none(Duration::from_millis(500)).await;
    // A new one, then its deletion. Of its RegistrationInfo, only those relevant to the
    // subscription are notified (§5.11.7).
    let both = json!([{"entities": [{"type": "Bus"}]}, {"entities": [{"type": "Building"}]}]);
    let second = register(broker, &registration("urn:ngsi-ld:ContextSourceRegistration:n2", both)).await;
    let n = receiver.expect().await;
    check(&n.body, &sub, "newlyMatching", &[&second]);
    assert_eq!(n.body["data"][0]["information"], json!([{"entities": [{"type": "Building"}]}]), "{}", n.body);
    assert_eq!(broker.delete(&format!("{REGS}/{second}")).await.status(), 204);
    check(&receiver.expect().await.body, &sub, "noLongerMatching", &[&second]);

    // The status counts what was sent.
    let got = sent(broker, &sub, 5).await;
    assert_eq!(got["type"], "Subscription");
    assert_eq!(got["status"], "active");
    // Entity triggers do not apply to registrations; no jsonldContext was set.
    assert!(got.get("notificationTrigger").is_none() && got.get("jsonldContext").is_none(), "{got}");
    assert_eq!(got["notification"]["timesSent"], 5, "{got}");
    assert_eq!(got["notification"]["status"], "ok");
    assert!(got["notification"]["lastSuccess"].is_string());
    // Zero counters are left out.
    assert!(got["notification"].get("timesFailed").is_none(), "{got}");

    // Updating the subscription sends the registrations that match only now.
    let r = broker.patch(&format!("{SUBS}/{sub}"), &json!({"entities": [{"type": "Bus"}]})).await;
    assert_eq!(r.status(), 204);
    check(&receiver.expect().await.body, &sub, "newlyMatching", &["urn:ngsi-ld:ContextSourceRegistration:other"]);

    // A paused subscription is silent.
    assert_eq!(broker.patch(&format!("{SUBS}/{sub}"), &json!({"isActive": false})).await.status(), 204);
    assert_eq!(broker.get_json(&format!("{SUBS}/{sub}")).await["status"], "paused");
    let bus = registration("urn:ngsi-ld:ContextSourceRegistration:bus2", json!([{"entities": [{"type": "Bus"}]}]));
    register(broker, &bus).await;
    receiver.expect_none(Duration::from_millis(500)).await;

    // Listing, and deletion.
    let list = broker.get_json(SUBS).await;
    assert_eq!(list.as_array().expect("array").len(), 1);
    assert_eq!(broker.delete(&format!("{SUBS}/{sub}")).await.status(), 204);
    assert_problem(broker.get(&format!("{SUBS}/{sub}")).await, 404, "ResourceNotFound").await;
    assert_problem(broker.delete(&format!("{SUBS}/{sub}")).await, 404, "ResourceNotFound").await;
}

/// Filters of registration subscriptions: watched attributes and geoQ.
async fn subscription_filters(broker: &TestBroker) {
    let receiver = Receiver::start().await;
    let watched = json!({"watchedAttributes": ["height"],
        "geoQ": {"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": [-8.52, 41.2], "geoproperty": "location"}});
    let sub = subscribe(broker, &csr_subscription(&receiver.url, watched)).await;
    // Right attributes, no location: no match.
    register(broker, &buildings("urn:ngsi-ld:ContextSourceRegistration:f1")).await;
    // Right place, wrong attribute.
    let mut far_attr = registration(
        "urn:ngsi-ld:ContextSourceRegistration:f2",
        json!([{"entities": [{"type": "Building"}], "propertyNames": ["name"]}]),
    );
    far_attr["location"] = json!({"type": "Point", "coordinates": [-8.521, 41.2]});
    register(broker, &far_attr).await;
    receiver.expect_none(Duration::from_millis(500)).await;
    let mut near = buildings("urn:ngsi-ld:ContextSourceRegistration:f3");
    near["location"] = json!({"type": "Point", "coordinates": [-8.521, 41.2]});
    register(broker, &near).await;
    check(&receiver.expect().await.body, &sub, "newlyMatching", &["urn:ngsi-ld:ContextSourceRegistration:f3"]);

    // Invalid registration subscriptions.
    for bad in [
        json!({"type": "Subscription", "entities": [{"type": "Building"}]}),
        csr_subscription(&receiver.url, json!({"q": "speed>"})),
        csr_subscription(&receiver.url, json!({"watchedAttributes": []})),
        csr_subscription(&receiver.url, json!({"expiresAt": "2000-01-01T00:00:00Z"})),
        csr_subscription(&receiver.url, json!({"temporalQ": {"timerel": "before"}})),
    ] {
        assert_problem(broker.post(SUBS, &bad).await, 400, "BadRequestData").await;
    }
    let mut dup = csr_subscription(&receiver.url, json!({}));
    dup["id"] = json!(sub);
    assert_problem(broker.post(SUBS, &dup).await, 409, "AlreadyExists").await;
}

/// A `timeInterval` subscription sends the matching registrations at once and then every
/// period, and nothing on changes.
async fn periodic_subscription(broker: &TestBroker) {
    let receiver = Receiver::start().await;
    let id = register(broker, &buildings("urn:ngsi-ld:ContextSourceRegistration:t1")).await;
    let sub = subscribe(broker, &csr_subscription(&receiver.url, json!({"timeInterval": 1}))).await;
    let first = receiver.expect().await;
    check(&first.body, &sub, "newlyMatching", &[&id]);
    let second = receiver.expect().await;
    check(&second.body, &sub, "newlyMatching", &[&id]);
    let gap = second.at.duration_since(first.at);
    assert!(gap >= Duration::from_millis(800), "{gap:?}");
    // Deleting the subscription stops the clock.
    assert_eq!(broker.delete(&format!("{SUBS}/{sub}")).await.status(), 204);
    while receiver.next(Duration::from_millis(100)).await.is_some() {}
    receiver.expect_none(Duration::from_millis(1500)).await;
}

/// Registrations and registration subscriptions survive a restart.
async fn persistence(broker: &TestBroker) {
    let receiver = Receiver::start().await;
    let id = register(broker, &buildings("urn:ngsi-ld:ContextSourceRegistration:p1")).await;
    let sub = subscribe(broker, &csr_subscription(&receiver.url, json!({}))).await;
    check(&receiver.expect().await.body, &sub, "newlyMatching", &[&id]);
    assert_eq!(sent(broker, &sub, 1).await["notification"]["timesSent"], 1);
    let restarted = broker.restart().await;
    let got = restarted.get_json(&format!("{REGS}/{id}")).await;
    assert_eq!(got["information"][0]["propertyNames"], json!(["name", "height"]));
    assert_eq!(restarted.get_json(&format!("{SUBS}/{sub}")).await["notification"]["timesSent"], 1);
    let r = restarted.patch(&format!("{REGS}/{id}"), &json!({"endpoint": "http://after.example"})).await;
    assert_eq!(r.status(), 204);
    check(&receiver.expect().await.body, &sub, "updated", &[&id]);
}

store_tests!(
    crud_and_errors,
    context_expansion,
    query_matching,
    tenants_and_expiry,
    modes_and_conflicts,
    subscription_notifications,
    subscription_filters,
    periodic_subscription,
    persistence,
);
