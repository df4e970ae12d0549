//! History scenarios, each on a broker and data folder of its own: ingestion rate of attribute
//! samples, storage per sample, aggregation over a year and over a type, and `lastN`.
//!
//! Samples are loaded through the temporal API (`POST /temporal/entities`, many instances per
//! request) with distinct `observedAt`; values follow a slow signal with one decimal, as city
//! sensors report.

use crate::load::{MakeRequest, drive, once};
use crate::{BenchArgs, dir_mib, get, print_cpu, print_latency, send_all, spawn_broker, wait_ready, with_body};
use anyhow::bail;
use http::{Method, StatusCode};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const SCENARIOS: &[&str] =
    &["temporal_ingest", "temporal_storage", "temporal_aggr_year", "temporal_aggr_type", "temporal_lastn"];

/// 2025-01-01T00:00:00Z in µs: where every loaded history starts.
const START: i64 = 1_735_689_600_000_000;
const MINUTE: i64 = 60_000_000;
const YEAR_MINUTES: usize = 525_600;
const DAY_MINUTES: usize = 1440;
/// Instances per `POST /temporal/entities` when loading.
const INSTANCES_PER_REQUEST: usize = 10_000;
/// The maintenance pass (compaction of the history log into chunks) runs every 5 s; queries
/// are measured on compacted history, as a live system mostly holds.
const SETTLE: Duration = Duration::from_secs(12);

fn at(micros: i64) -> String {
    hanbat_model::time::format_micros(micros)
}

/// A sensor-like value for sample `i` of series `seed`: a slow wave, one decimal.
fn value(seed: u64, i: u64) -> f64 {
    let x = (i as f64 / 90.0 + seed as f64).sin() * 8.0 + 20.0 + (i % 7) as f64 / 10.0;
    (x * 10.0).round() / 10.0
}

/// One `POST /temporal/entities` body: `count` instances of `attr` from sample `first`, one a
/// minute.
fn temporal_body(id: &str, kind: &str, attr: &str, seed: u64, first: usize, count: usize) -> String {
    let mut out = format!(r#"{{"id":"{id}","type":"{kind}","{attr}":["#);
    for i in first..first + count {
        if i > first {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"type":"Property","value":{},"observedAt":"{}"}}"#,
            value(seed, i as u64),
            at(START + i as i64 * MINUTE)
        ));
    }
    out.push_str("]}");
    out
}

/// Loads `minutes` samples of `attr` for each id, `INSTANCES_PER_REQUEST` per request.
async fn load_history(addr: SocketAddr, ids: &[String], kind: &str, attr: &str, minutes: usize) -> anyhow::Result<()> {
    let bodies = ids.iter().enumerate().flat_map(|(seed, id)| {
        (0..minutes).step_by(INSTANCES_PER_REQUEST).map(move |first| {
            let count = INSTANCES_PER_REQUEST.min(minutes - first);
            with_body(
                Method::POST,
                addr,
                "/ngsi-ld/v1/temporal/entities",
                temporal_body(id, kind, attr, seed as u64, first, count),
            )
        })
    });
    send_all(addr, bodies, 4).await
}

/// Numeric attributes of the ingest scenario's entities.
const INGEST_ATTRS: [&str; 10] =
    ["temperature", "humidity", "pm25", "pm10", "no2", "o3", "co", "so2", "noise", "pressure"];
/// Entities per ingest batch, and how many distinct entities batches cycle over.
const INGEST_BATCH: u64 = 1000;
const INGEST_ENTITIES: u64 = 100_000;

/// A batch upsert of `INGEST_BATCH` entities, every attribute observed at `observed`.
fn ingest_batch(first: u64, observed: i64) -> String {
    let when = at(observed);
    let mut out = String::with_capacity(INGEST_BATCH as usize * 900);
    out.push('[');
    for n in first..first + INGEST_BATCH {
        if n > first {
            out.push(',');
        }
        out.push_str(&format!(r#"{{"id":"urn:ngsi-ld:AirQualityObserved:{n}","type":"AirQualityObserved""#));
        for (k, attr) in INGEST_ATTRS.iter().enumerate() {
            let v = value(n + k as u64, (observed / MINUTE) as u64);
            out.push_str(&format!(r#","{attr}":{{"type":"Property","value":{v},"observedAt":"{when}"}}"#));
        }
        out.push('}');
    }
    out.push(']');
    out
}

/// Runs one history scenario on a broker of its own.
pub async fn run(scenario: &str, exe: &Path, args: &BenchArgs) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let broker = spawn_broker(exe, data.path(), args.store.as_deref(), &[])?;
    let addr = broker.addr;
    let pid = broker.child.id();
    wait_ready(addr, "/ngsi-ld/v1/types").await?;
    match scenario {
        "temporal_ingest" => {
            let clients = args.clients.min(8);
            // Each request writes its own instant, so every sample is a new instance.
            let make: MakeRequest = Arc::new(move |c, i| {
                let first = ((c as u64 * 7919 + i) * INGEST_BATCH) % INGEST_ENTITIES;
                let observed = START + (i as i64 * clients as i64 + c as i64) * 1_000_000;
                with_body(Method::POST, addr, "/ngsi-ld/v1/entityOperations/upsert", ingest_batch(first, observed))
            });
            let cpu = crate::cpu_seconds(pid);
            let stats =
                drive(addr, clients, args.duration, &[StatusCode::CREATED, StatusCode::NO_CONTENT], make).await?;
            let per_request = (INGEST_BATCH as usize * INGEST_ATTRS.len()) as f64;
            println!("temporal_ingest.samples_per_s: {:.0} samples/s", stats.rps() * per_request);
            print_latency("temporal_ingest", &stats);
            print_cpu("temporal_ingest", pid, cpu, stats.requests as f64 * per_request);
        }
        "temporal_storage" => {
            // Series of a year of minute samples (the last one shorter), as many as needed.
            let samples = args.samples.max(1);
            let series = samples.div_ceil(YEAR_MINUTES);
            let empty = dir_mib(data.path());
            let start = Instant::now();
            for s in 0..series {
                let minutes = YEAR_MINUTES.min(samples - s * YEAR_MINUTES);
                let id = format!("urn:ngsi-ld:Meter:s{s}");
                load_history(addr, std::slice::from_ref(&id), "Meter", "energy", minutes).await?;
            }
            println!("temporal_storage.load: {:.0} samples/s", samples as f64 / start.elapsed().as_secs_f64());
            tokio::time::sleep(SETTLE).await;
            let mib = dir_mib(data.path()) - empty;
            println!("temporal_storage.samples: {samples} samples");
            println!("temporal_storage.disk: {mib:.1} MiB");
            println!("temporal_storage.bytes_per_sample: {:.2} B", mib * 1024.0 * 1024.0 / samples as f64);
            println!("temporal_storage.disk_per_10m: {:.0} MiB", mib * 10_000_000.0 / samples as f64);
        }
        "temporal_aggr_year" | "temporal_lastn" => {
            let id = "urn:ngsi-ld:Meter:year".to_string();
            let start = Instant::now();
            load_history(addr, std::slice::from_ref(&id), "Meter", "energy", YEAR_MINUTES).await?;
            println!("{scenario}.load: {:.0} samples/s", YEAR_MINUTES as f64 / start.elapsed().as_secs_f64());
            tokio::time::sleep(SETTLE).await;
            let path = if scenario == "temporal_lastn" {
                format!("/ngsi-ld/v1/temporal/entities/{id}?lastN=10")
            } else {
                format!(
                    "/ngsi-ld/v1/temporal/entities/{id}?options=aggregatedValues&aggrMethods=avg,max\
                     &aggrPeriodDuration=PT1H&timerel=between&timeAt={}&endTimeAt={}",
                    at(START),
                    at(START + YEAR_MINUTES as i64 * MINUTE)
                )
            };
            check(addr, &path, |body| {
                if scenario == "temporal_lastn" {
                    body.matches("\"observedAt\"").count() == 10
                } else {
                    // 8760 hours of avg and max, each row with its start and end (the last
                    // end is in 2026).
                    body.matches("\"2025-").count() >= 4 * 8760 - 2
                }
            })
            .await?;
            measure(scenario, addr, pid, &path, args).await?;
        }
        "temporal_aggr_type" => {
            let n = 1000usize;
            let ids: Vec<String> = (0..n).map(|i| format!("urn:ngsi-ld:Meter:d{i}")).collect();
            let start = Instant::now();
            load_history(addr, &ids, "Meter", "energy", DAY_MINUTES).await?;
            println!(
                "temporal_aggr_type.load: {:.0} samples/s",
                (n * DAY_MINUTES) as f64 / start.elapsed().as_secs_f64()
            );
            tokio::time::sleep(SETTLE).await;
            let path = format!(
                "/ngsi-ld/v1/temporal/entities?type=Meter&limit={n}&options=aggregatedValues&aggrMethods=avg,max\
                 &aggrPeriodDuration=PT1H&timerel=between&timeAt={}&endTimeAt={}",
                at(START),
                at(START + DAY_MINUTES as i64 * MINUTE)
            );
            check(addr, &path, |body| body.matches("\"urn:ngsi-ld:Meter:d").count() == n).await?;
            measure(scenario, addr, pid, &path, args).await?;
        }
        other => bail!("unknown history scenario '{other}'"),
    }
    Ok(())
}

/// One request, checked before timing it: a fast wrong answer must not pass for a result.
async fn check(addr: SocketAddr, path: &str, ok: impl Fn(&str) -> bool) -> anyhow::Result<()> {
    let (status, body) = once(addr, get(addr, path)).await?;
    let text = String::from_utf8_lossy(&body);
    if !status.is_success() || !ok(&text) {
        bail!("{path}: unexpected answer {status}: {}", text.chars().take(300).collect::<String>());
    }
    Ok(())
}

/// Latency of one query, one client at a time (the figure a dashboard waits for).
async fn measure(scenario: &str, addr: SocketAddr, pid: u32, path: &str, args: &BenchArgs) -> anyhow::Result<()> {
    let path = path.to_string();
    let make: MakeRequest = Arc::new(move |_, _| get(addr, &path));
    let cpu = crate::cpu_seconds(pid);
    let stats = drive(addr, 1, args.duration, &[StatusCode::OK], make).await?;
    println!("{scenario}.rps: {:.1} req/s", stats.rps());
    print_latency(scenario, &stats);
    print_cpu(scenario, pid, cpu, stats.requests as f64);
    Ok(())
}
