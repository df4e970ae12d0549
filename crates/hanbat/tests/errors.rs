//! Error paths shared by every endpoint (§6.3): bodies, media types, lengths, @contexts and
//! parameters, each answered with the NGSI-LD ProblemDetails of its kind.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed assertion

mod common;

use common::{TestBroker, assert_problem};
use reqwest::Method;
use serde_json::json;

async fn bad_bodies(b: &TestBroker) {
    let post = |body: &'static str, content_type: &'static str| {
        b.request(Method::POST, "/entities").header("Content-Type", content_type).body(body).send()
    };
    assert_problem(post("{\"id\": \"urn:a\", \"type\":", "application/json").await.unwrap(), 400, "InvalidRequest")
        .await;
    assert_problem(post("[]", "application/json").await.unwrap(), 400, "InvalidRequest").await;
    assert_problem(post("{}", "text/plain").await.unwrap(), 415, "UnsupportedMediaType").await;
    let r = b.request(Method::POST, "/entities").body("{}").send().await.unwrap();
    assert_problem(r, 415, "UnsupportedMediaType").await;
    // A JSON body may not carry @context; a JSON-LD one must, and then without a Link header.
    let r = b.post("/entities", &json!({"id": "urn:a:1", "type": "T", "@context": common::CORE})).await;
    assert_problem(r, 400, "BadRequestData").await;
    let r = b
        .request(Method::POST, "/entities")
        .header("Content-Type", "application/ld+json")
        .body(json!({"id": "urn:a:1", "type": "T"}).to_string())
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "BadRequestData").await;
}

async fn lengths(b: &TestBroker) {
    // Just over the harness's 1 MiB limit: small enough to be sent whole before the answer.
    let big = format!("{{\"id\": \"urn:a:1\", \"type\": \"T\", \"p\": \"{}\"}}", "x".repeat((1 << 20) + 1024));
    let r =
        b.request(Method::POST, "/entities").header("Content-Type", "application/json").body(big).send().await.unwrap();
    assert_problem(r, 413, "PayloadTooLarge").await;
    // A streamed body goes chunked, without Content-Length.
    let chunks =
        futures::stream::once(async { Ok::<_, std::io::Error>(&b"{\"id\": \"urn:a:1\", \"type\": \"T\"}"[..]) });
    let r = b
        .request(Method::POST, "/entities")
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 411);
}

async fn negotiation_and_parameters(b: &TestBroker) {
    let r = b.request(Method::GET, "/entities?type=T").header("Accept", "text/csv").send().await.unwrap();
    assert_problem(r, 406, "NotAcceptable").await;
    assert_problem(b.get("/entities?type=T&colour=red").await, 400, "InvalidRequest").await;
    assert_problem(b.get("/entities?type=T&options=fancy").await, 400, "InvalidRequest").await;
    // Queries too wide (§5.7.2.4) and attrs naming core members.
    for wide in ["", "?id=urn:a:1", "?idPattern=.*", "?attrs=createdAt"] {
        assert_problem(b.get(&format!("/entities{wide}")).await, 400, "BadRequestData").await;
    }
    assert_problem(b.get("/entities?attrs=id,type").await, 400, "BadRequestData").await;
    assert_problem(b.get("/entities?type=T&idPattern=a**").await, 400, "BadRequestData").await;
    assert_eq!(b.get("/entities?type=*").await.status(), 200);
    assert_problem(b.delete("/types").await, 405, "MethodNotAllowed").await;
}

async fn tenants(b: &TestBroker) {
    let r = b.request(Method::GET, "/entities?type=T").header("NGSILD-Tenant", "nowhere").send().await.unwrap();
    assert_problem(r, 404, "NonexistentTenant").await;
    let r = b.request(Method::GET, "/entities/urn:a:1").header("NGSILD-Tenant", "nowhere").send().await.unwrap();
    assert_problem(r, 404, "NonexistentTenant").await;
    let r = b.request(Method::GET, "/entities?type=T").header("NGSILD-Tenant", "").send().await.unwrap();
    assert_problem(r, 400, "BadRequestData").await;
}

/// §5.5.6: an unreachable @context is LdContextNotAvailable (504 since V1.8.1); one that is
/// retrieved but is not a JSON-LD context is BadRequestData; scoped contexts are refused.
async fn remote_contexts(b: &TestBroker) {
    let with_context = |context: serde_json::Value| {
        b.request(Method::POST, "/entities")
            .header("Content-Type", "application/ld+json")
            .body(json!({"id": "urn:ngsi-ld:Car:c1", "type": "Car", "@context": context}).to_string())
            .send()
    };
    let r = with_context(json!("http://127.0.0.1:9/unreachable.jsonld")).await.unwrap();
    assert_problem(r, 504, "LdContextNotAvailable").await;
    let server = serve_text("this is { not json").await;
    let r = with_context(json!(format!("{server}/ctx.jsonld"))).await.unwrap();
    assert_problem(r, 400, "BadRequestData").await;
    let r = with_context(
        json!([{"Car": {"@id": "https://example.org/Car", "@context": {"speed": "https://example.org/s"}}}]),
    )
    .await
    .unwrap();
    assert_problem(r, 400, "BadRequestData").await;
    assert_problem(b.get("/entities/urn:ngsi-ld:Car:c1").await, 404, "ResourceNotFound").await;
}

/// A server answering every GET with `text` (200); returns its origin.
async fn serve_text(text: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().fallback(move || async move { text });
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

store_tests! {
    bad_bodies,
    lengths,
    negotiation_and_parameters,
    tenants,
    remote_contexts,
}
