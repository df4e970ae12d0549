//! Durability: every write the broker acknowledged survives `kill -9`, and nothing is corrupted.
//!
//! A real `hanbat serve` process takes concurrent creates and attribute updates; the test
//! remembers each acknowledged one, kills the process with SIGKILL mid-load, restarts it on the
//! same data folder (or PostgreSQL database) and checks every acknowledged write (and its
//! history) is there.

#![allow(clippy::unwrap_used)] // a test: failing loudly is the point

mod common;

use common::{ProcessBroker, free_port};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// What the clients saw acknowledged: entity id → highest acknowledged counter value.
type Acked = Arc<Mutex<HashMap<String, i64>>>;

async fn client(base: String, worker: usize, acked: Acked, stop: Arc<std::sync::atomic::AtomicBool>) {
    let http = reqwest::Client::new();
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let id = format!("urn:ngsi-ld:Crash:w{worker}-{}", n / 5);
        // Every fifth write creates an entity; the four after it raise its counter.
        let response = if n % 5 == 0 {
            let body = json!({"id": id, "type": "Crash", "counter": {"type": "Property", "value": 0}});
            http.post(format!("{base}/entities"))
                .header("Content-Type", "application/json")
                .body(body.to_string())
                .send()
                .await
        } else {
            let body = json!({"type": "Property", "value": n % 5});
            http.patch(format!("{base}/entities/{id}/attrs/counter"))
                .header("Content-Type", "application/json")
                .body(body.to_string())
                .send()
                .await
        };
        match response {
            Ok(r) if r.status().is_success() => {
                acked.lock().await.insert(id, (n % 5) as i64);
            }
            // The broker died under us: this write was never acknowledged.
            _ => return,
        }
        n += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9() {
    let data = tempfile::tempdir().unwrap();
    crash_and_check(&["--data".to_string(), data.path().display().to_string()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9_on_postgres() {
    let Some(db) = hanbat_store_postgres::testing::TestDatabase::create().await else { return };
    crash_and_check(&["--store".to_string(), db.url.clone()]).await;
}

async fn crash_and_check(store: &[String]) {
    let port = free_port();
    let broker = ProcessBroker::start(store, port).await;
    let acked: Acked = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> =
        (0..8).map(|w| tokio::spawn(client(broker.base.clone(), w, acked.clone(), stop.clone()))).collect();
    // Let load build up, then kill the broker without warning while requests are in flight.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut broker = broker;
    broker.child.kill().expect("SIGKILL");
    broker.child.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().await.clone();
    assert!(acked.len() > 20, "too little load before the kill: {} entities", acked.len());

    let broker = ProcessBroker::start(store, port).await;
    let http = reqwest::Client::new();
    for (id, counter) in &acked {
        let r = http.get(format!("{}/entities/{id}", broker.base)).send().await.unwrap();
        assert_eq!(r.status(), 200, "acknowledged entity {id} lost");
        let e: Value = r.json().await.unwrap();
        let stored = e["counter"]["value"].as_i64().unwrap();
        // A later write may have committed without its answer arriving; never an older one.
        assert!(stored >= *counter, "{id}: counter {stored} older than acknowledged {counter}");
    }
    // History holds an instance for every acknowledged write of a sample of entities.
    for (id, counter) in acked.iter().take(20) {
        let r = http.get(format!("{}/temporal/entities/{id}?lastN=20", broker.base)).send().await.unwrap();
        assert!(r.status().is_success(), "history of {id} unreadable");
        let e: Value = r.json().await.unwrap();
        let instances = e["counter"].as_array().map(Vec::len).unwrap_or(0);
        assert!(instances as i64 > *counter, "{id}: {instances} history instances for counter {counter}");
    }
    // The store still takes writes after the crash.
    let r = http
        .post(format!("{}/entities", broker.base))
        .header("Content-Type", "application/json")
        .body(json!({"id": "urn:ngsi-ld:Crash:after", "type": "Crash"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}
