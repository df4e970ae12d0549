//! Throughput figures (not assertions): run with
//! `cargo test -p hanbat-sim --release --test throughput -- --ignored --nocapture`.
//! Generation alone, then generation plus HTTP into a stand-in broker that parses every batch.
#![allow(clippy::unwrap_used)]
mod common;

use common::*;
use hanbat_sim::{HttpSink, Scenario, SimArgs, SimConfig, Simulation, run_with};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[test]
#[ignore = "measurement; run in release"]
fn generation() {
    for scale in [1.0, 4.0] {
        let mut sim = Simulation::new(&SimConfig { scale, ..config(Scenario::All, 1) });
        let t = Instant::now();
        let (mut entities, mut attributes) = (0usize, 0usize);
        for _ in 0..hours(24) {
            for u in sim.step(Duration::from_secs(60)).updates {
                entities += 1;
                attributes += u.as_object().unwrap().len() - 2;
            }
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "scale {scale}: {} devices, 1 simulated day at 1-min resolution: {entities} entity updates, {attributes} attribute updates in {s:.2} s = {:.0} attribute updates/s",
            sim.device_count(),
            attributes as f64 / s
        );
    }
}

#[test]
#[ignore = "measurement; run in release"]
fn backfill_over_http() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        let app = axum::Router::new().route(
            "/ngsi-ld/v1/entityOperations/upsert",
            axum::routing::post(move |body: axum::Json<Vec<serde_json::Value>>| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(body.0.len() as u64, Ordering::Relaxed);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let args = SimArgs {
            broker: url,
            devices: 4.0,
            start: Some(start()),
            backfill: Some(Duration::from_secs(86_400)),
            duration: Some(Duration::ZERO),
            ..SimArgs::default()
        };
        let sink = Arc::new(HttpSink::new(&args.broker, None).unwrap());
        let report = run_with(&args, sink, std::future::pending()).await.unwrap();
        println!("{report}");
        println!("stand-in broker received {} entities", received.load(Ordering::Relaxed));
    });
}
