//! The dashboard routes beside the NGSI-LD API on one real socket: the embedded page, the live
//! feed over HTTP (server-sent events), and the API's own behaviour left as it was.

use futures::StreamExt;
use hanbat_api::AppState;
use hanbat_broker::Broker;
use hanbat_context::Contexts;
use hanbat_store::Store;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const LINK: &str = r#"<https://raw.githubusercontent.com/hanbat-city/hanbat/main/assets/context/daejeon.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json""#;

struct Server {
    origin: String,
    _dir: tempfile::TempDir,
}

async fn server() -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(hanbat_store_sqlite::SqliteStore::open(dir.path()).expect("store"));
    let contexts = Arc::new(Contexts::new("http://127.0.0.1", Some(store.clone())));
    let city = serde_json::from_str(hanbat_sim::CITY_CONTEXT).expect("city context");
    contexts.preload(hanbat_sim::CITY_CONTEXT_URL, city).expect("preload");
    let broker = Arc::new(Broker::new(store, contexts, hanbat_broker::Limits::default()));
    let app = hanbat_api::app_with(AppState::new(broker.clone(), 1 << 20), hanbat_web::router(broker));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        axum::serve(listener, axum::ServiceExt::<axum::extract::Request>::into_make_service(app)).await
    });
    Server { origin, _dir: dir }
}

/// Reads server-sent events until `want` data events (named or not) have arrived.
async fn events(response: reqwest::Response, want: usize) -> Vec<(String, Value)> {
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while out.len() < want {
        let chunk = tokio::time::timeout_at(deadline, stream.next()).await.expect("events in time");
        let chunk = chunk.expect("stream open").expect("chunk");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut name = "message".to_string();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !data.is_empty() {
                out.push((name, serde_json::from_str(&data).expect("event data is JSON")));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_dashboard_is_served_at_the_root_and_the_api_is_unchanged() {
    let s = server().await;
    let http = reqwest::Client::new();
    let page = http.get(format!("{}/", s.origin)).send().await.expect("GET /");
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/html"));
    let html = page.text().await.expect("body");
    assert!(html.contains("<div id=\"app\">") || html.contains("HANBAT_SKIP_WEB"), "{html}");

    // Unknown paths keep the API's ProblemDetails 404; trailing slashes are still normalised.
    let missing = http.get(format!("{}/ngsi-ld/v1/nothing-here", s.origin)).send().await.expect("GET");
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap_or_default().contains("ResourceNotFound"));
    let types = http.get(format!("{}/ngsi-ld/v1/types/", s.origin)).send().await.expect("GET");
    assert_eq!(types.status(), 200);
}

#[tokio::test]
async fn the_live_feed_streams_writes_with_short_names() {
    let s = server().await;
    let http = reqwest::Client::new();
    let feed = http.get(format!("{}/hanbat/v1/live?type=Streetlight", s.origin)).send().await.expect("GET live");
    assert_eq!(feed.status(), 200);
    assert!(feed.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/event-stream"));

    let id = "urn:ngsi-ld:Streetlight:live-001";
    let writes = async {
        // Wait until the subscription is registered (the `ready` event was sent before the writes).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let entity = json!({"id": id, "type": "Streetlight",
            "status": {"type": "Property", "value": "ok"},
            "powerState": {"type": "Property", "value": "on", "observedAt": "2026-01-01T00:00:00Z"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [127.4, 36.43]}}});
        let r = http
            .post(format!("{}/ngsi-ld/v1/entities", s.origin))
            .header("Content-Type", "application/json")
            .header("Link", LINK)
            .body(entity.to_string())
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 201);
        // Another type: filtered out of this feed.
        let other = json!({"id": "urn:ngsi-ld:ParkingSpot:x", "type": "ParkingSpot", "status": {"type": "Property", "value": "free"}});
        let r = http
            .post(format!("{}/ngsi-ld/v1/entities", s.origin))
            .header("Content-Type", "application/json")
            .header("Link", LINK)
            .body(other.to_string())
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 201);
        let patch = json!({"status": {"type": "Property", "value": "defectiveLamp"}});
        let r = http
            .patch(format!("{}/ngsi-ld/v1/entities/{id}/attrs", s.origin))
            .header("Content-Type", "application/json")
            .header("Link", LINK)
            .body(patch.to_string())
            .send()
            .await
            .expect("PATCH");
        assert_eq!(r.status(), 204);
    };
    let (got, ()) = tokio::join!(events(feed, 3), writes);
    assert_eq!(got[0].0, "ready");
    let (_, create) = &got[1];
    assert_eq!(create["op"], "create");
    assert_eq!(create["id"], id);
    assert_eq!(create["type"], "Streetlight");
    assert_eq!(create["attrs"]["powerState"], "on");
    assert_eq!(create["observedAt"]["powerState"], "2026-01-01T00:00:00Z");
    assert_eq!(create["attrs"]["location"]["type"], "Point");
    let (_, update) = &got[2];
    assert_eq!(update["op"], "update");
    assert_eq!(update["attrs"], json!({"status": "defectiveLamp"}), "only what was written");

    let stats: Value =
        http.get(format!("{}/hanbat/v1/live/stats", s.origin)).send().await.expect("stats").json().await.expect("JSON");
    assert_eq!(stats["dropped"], 0);
    assert!(stats["delivered"].as_u64().unwrap_or(0) >= 2, "{stats}");
}
