//! Running the simulator into a sink: batching, ordering, counting, stopping, and the HTTP sink
//! against a stand-in broker.
// Helpers of the tests panic on unexpected data like the tests themselves (clippy.toml allows
// unwrap in #[test] functions only).
#![allow(clippy::unwrap_used)]
mod common;

use async_trait::async_trait;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::*;
use hanbat_sim::{AnomalyLabel, Failure, HttpSink, Scenario, SimArgs, Sink, WriteOutcome, city_model, run_with};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Keeps every batch; rejects entities whose id contains `reject`, or fails every batch.
#[derive(Default)]
struct Recorder {
    batches: Mutex<Vec<Vec<Value>>>,
    reject: Option<&'static str>,
    down: bool,
}

#[async_trait]
impl Sink for Recorder {
    async fn write(&self, batch: &[Value]) -> anyhow::Result<WriteOutcome> {
        if self.down {
            anyhow::bail!("connection refused");
        }
        self.batches.lock().unwrap().push(batch.to_vec());
        let failed = batch
            .iter()
            .filter_map(|e| e["id"].as_str())
            .filter(|id| self.reject.is_some_and(|r| id.contains(r)))
            .map(|id| Failure { id: id.to_string(), reason: "rejected".into() })
            .collect();
        Ok(WriteOutcome { failed })
    }
}

impl Recorder {
    fn entities(&self) -> Vec<Value> {
        self.batches.lock().unwrap().iter().flatten().cloned().collect()
    }
}

/// Six simulated hours of history for one site, no live phase.
fn backfill_only(scenario: Scenario) -> SimArgs {
    SimArgs {
        scenario,
        start: Some(start()),
        backfill: Some(Duration::from_secs(6 * 3600)),
        duration: Some(Duration::ZERO),
        batch_size: 100,
        concurrency: 3,
        seed: 9,
        ..SimArgs::default()
    }
}

#[tokio::test]
async fn a_backfill_writes_everything_in_order_and_reports_it() {
    let sink = Arc::new(Recorder::default());
    let report = run_with(&backfill_only(Scenario::Factory), sink.clone(), std::future::pending()).await.unwrap();
    let batches = sink.batches.lock().unwrap().clone();
    assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 100));
    let entities = sink.entities();
    // The city model goes first, so that the devices' relationships point at existing sites.
    let model = city_model();
    assert_eq!(entities[..model.len()], model[..]);
    assert_eq!(report.entity_updates as usize, entities.len());
    assert_eq!(report.errors, 0);
    let attributes: usize =
        entities.iter().map(|e| e.as_object().unwrap().keys().filter(|k| *k != "id" && *k != "type").count()).sum();
    assert_eq!(report.attribute_updates as usize, attributes);
    assert_eq!(report.simulated_from, start() - chrono::Duration::hours(6));
    assert_eq!(report.simulated_to, start());
    assert_eq!(report.devices, 18);
    // Per entity, observations arrive in time order although lanes run in parallel.
    let mut last: HashMap<&str, &str> = HashMap::new();
    for e in &entities[model.len()..] {
        let Some(at) = e.as_object().unwrap().values().find_map(|a| a["observedAt"].as_str()) else { continue };
        let id = e["id"].as_str().unwrap();
        if let Some(before) = last.insert(id, at) {
            assert!(before < at, "{id}: {at} after {before}");
        }
    }
    let ids: std::collections::HashSet<&str> = entities.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(report.entities, ids.len());
}

#[tokio::test]
async fn the_same_run_twice_writes_the_same_entities() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let sink = Arc::new(Recorder::default());
        run_with(&backfill_only(Scenario::Silvertown), sink.clone(), std::future::pending()).await.unwrap();
        let mut lines: Vec<String> = sink.entities().iter().map(Value::to_string).collect();
        // Lanes interleave differently from run to run; the set of writes is what must match.
        lines.sort();
        runs.push(lines);
    }
    assert_eq!(runs[0], runs[1]);
}

#[tokio::test]
async fn rejected_entities_and_failed_batches_are_counted() {
    let sink = Arc::new(Recorder { reject: Some("machine-001"), ..Recorder::default() });
    let report = run_with(&backfill_only(Scenario::Factory), sink.clone(), std::future::pending()).await.unwrap();
    let rejected = sink.entities().iter().filter(|e| e["id"].as_str().unwrap().contains("machine-001")).count();
    assert!(rejected > 0);
    assert_eq!(report.errors as usize, rejected);
    assert_eq!((report.entity_updates + report.errors) as usize, sink.entities().len());

    // A broker that cannot be reached fails the run at once when the city model is written …
    let down = Arc::new(Recorder { down: true, ..Recorder::default() });
    let error = run_with(&backfill_only(Scenario::Factory), down.clone(), std::future::pending()).await.unwrap_err();
    assert!(format!("{error:#}").contains("city model"), "{error:#}");
    // … and otherwise counts every lost entity.
    let args = SimArgs { skip_city_model: true, ..backfill_only(Scenario::Factory) };
    let report = run_with(&args, down, std::future::pending()).await.unwrap();
    assert_eq!(report.entity_updates, 0);
    assert!(report.errors > 1000, "{report}");
}

#[tokio::test]
async fn a_live_run_stops_when_asked() {
    let args =
        SimArgs { scenario: Scenario::Street, start: Some(start()), skip_city_model: true, ..SimArgs::default() };
    let sink = Arc::new(Recorder::default());
    // No --duration: only the shutdown signal ends this run.
    let report = run_with(&args, sink.clone(), async {}).await.unwrap();
    assert_eq!(report.simulated_from, start());
    assert!(report.simulated_to >= start());
    assert_eq!(report.errors, 0);
}

#[tokio::test]
async fn anomalies_are_written_as_ndjson() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("truth.ndjson");
    let args = SimArgs {
        inject_anomalies: Some(file.clone()),
        backfill: Some(Duration::from_secs(5 * 86_400)),
        resolution: Duration::from_secs(300),
        ..backfill_only(Scenario::Silvertown)
    };
    let report = run_with(&args, Arc::new(Recorder::default()), std::future::pending()).await.unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let labels: Vec<AnomalyLabel> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!labels.is_empty());
    assert_eq!(labels.len(), report.anomalies);
    assert!(labels.iter().all(|l| l.start >= report.simulated_from && l.end <= report.simulated_to));
}

#[tokio::test]
async fn bad_options_are_refused() {
    for args in [
        SimArgs { devices: 0.0, ..SimArgs::default() },
        SimArgs { batch_size: 1001, ..SimArgs::default() },
        SimArgs { rate: Some(-5.0), ..SimArgs::default() },
        SimArgs { speedup: Some(0.0), ..SimArgs::default() },
        SimArgs { concurrency: 0, ..SimArgs::default() },
    ] {
        assert!(run_with(&args, Arc::new(Recorder::default()), async {}).await.is_err(), "{args:?}");
    }
    assert!(HttpSink::new("not a url", None).is_err());
    assert!(HttpSink::new("ftp://broker", None).is_err());
}

/// What the stand-in broker saw.
#[derive(Default)]
struct Seen {
    requests: Vec<(HeaderMap, HashMap<String, String>, Vec<Value>)>,
}

/// A stand-in for the broker's batch upsert: rejects ids containing "bad" (207), answers 400 to
/// a batch whose first entity is "urn:x:malformed".
async fn upsert(
    State(seen): State<Arc<Mutex<Seen>>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::Json<Vec<Value>>,
) -> (StatusCode, axum::Json<Value>) {
    let batch = body.0;
    seen.lock().unwrap().requests.push((headers, query, batch.clone()));
    if batch.first().is_some_and(|e| e["id"] == "urn:x:malformed") {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData", "title": "Bad request", "detail": "nope"}),
            ),
        );
    }
    let (bad, good): (Vec<&Value>, Vec<&Value>) = batch.iter().partition(|e| e["id"].as_str().unwrap().contains("bad"));
    if bad.is_empty() {
        return (StatusCode::NO_CONTENT, axum::Json(Value::Null));
    }
    let errors: Vec<Value> = bad
        .iter()
        .map(|e| json!({"entityId": e["id"], "error": {"type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData", "title": "Invalid entity", "detail": "bad id"}}))
        .collect();
    let success: Vec<&Value> = good.iter().map(|e| &e["id"]).collect();
    (StatusCode::MULTI_STATUS, axum::Json(json!({"success": success, "errors": errors})))
}

async fn broker() -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new().route("/ngsi-ld/v1/entityOperations/upsert", post(upsert)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), seen)
}

#[tokio::test]
async fn the_http_sink_speaks_ngsi_ld_batch_upsert() {
    let (url, seen) = broker().await;
    let sink = HttpSink::new(&format!("{url}/"), Some("daejeon".into())).unwrap();
    let batch = vec![json!({"id": "urn:x:good", "type": "T"}), json!({"id": "urn:x:bad", "type": "T"})];
    let outcome = sink.write(&batch).await.unwrap();
    assert_eq!(outcome.failed.len(), 1);
    assert_eq!(outcome.failed[0].id, "urn:x:bad");
    assert_eq!(outcome.failed[0].reason, "Invalid entity: bad id");
    {
        let seen = seen.lock().unwrap();
        let (headers, query, body) = &seen.requests[0];
        assert_eq!(query.get("options").map(String::as_str), Some("update"));
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["link"].to_str().unwrap(), hanbat_sim::context_link());
        assert!(headers["link"].to_str().unwrap().contains(hanbat_sim::CITY_CONTEXT_URL));
        assert_eq!(headers["ngsild-tenant"], "daejeon");
        assert_eq!(body, &batch);
    }
    assert!(sink.write(&[json!({"id": "urn:x:good", "type": "T"})]).await.unwrap().failed.is_empty());
    let error = sink.write(&[json!({"id": "urn:x:malformed", "type": "T"})]).await.unwrap_err();
    assert!(error.to_string().contains("400") && error.to_string().contains("nope"), "{error}");
}

#[tokio::test]
async fn a_run_reaches_a_broker_over_http() {
    let (url, seen) = broker().await;
    let args = SimArgs { broker: url.clone(), ..backfill_only(Scenario::Street) };
    let sink = Arc::new(HttpSink::new(&args.broker, None).unwrap());
    let report = run_with(&args, sink, std::future::pending()).await.unwrap();
    let received: usize = seen.lock().unwrap().requests.iter().map(|(_, _, b)| b.len()).sum();
    assert_eq!(received as u64, report.entity_updates);
    assert_eq!(report.requests as usize, seen.lock().unwrap().requests.len());
    assert_eq!(report.errors, 0);

    // Nobody listens on a port just released: the run fails on the city model.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let sink = Arc::new(HttpSink::new(&format!("http://127.0.0.1:{port}"), None).unwrap());
    assert!(run_with(&backfill_only(Scenario::Street), sink, std::future::pending()).await.is_err());
}
