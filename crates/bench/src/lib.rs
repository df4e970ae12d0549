//! `hanbat bench`: starts a broker (and a bare HTTP server for reference) as child processes on
//! a temporary data folder, drives them over real HTTP, and prints one line per figure:
//! `scenario.metric: value unit`, so that runs can be compared across commits.
//!
//! Figures from one run are comparable with each other (same machine load); compare ratios
//! across runs rather than absolute numbers.

mod ingest;
mod load;
mod notify;
mod query;
mod temporal;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Args;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use load::{MakeRequest, Stats, drive, once};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ALL: &[&str] = &["bare", "create", "batch_upsert", "get_by_id", "patch_attr"];

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Scenarios to run (repeatable): bare, create, batch_upsert, get_by_id, patch_attr, scale,
    /// the notification scenarios notify_entities, notify_type, notify_write_overhead,
    /// notify_throughput, notify_dead_receiver and mqtt_ingest, the history scenarios
    /// temporal_ingest, temporal_storage, temporal_aggr_year, temporal_aggr_type, temporal_lastn
    /// (each on a broker of its own), and the query scenarios query_q, query_near, query_within,
    /// query_count (on one broker loaded with `--entities` city entities). Default: all but
    /// scale, the notification, MQTT, history and query scenarios.
    #[arg(long = "scenario")]
    pub scenarios: Vec<String>,
    /// How long each scenario drives load.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Entities loaded before get_by_id and patch_attr.
    #[arg(long, default_value_t = 10_000)]
    pub preload: usize,
    /// Entities loaded by the scale scenario and the query scenarios.
    #[arg(long, default_value_t = 1_000_000)]
    pub entities: usize,
    /// Measures published by the mqtt_ingest scenario.
    #[arg(long, default_value_t = 20_000)]
    pub measures: usize,
    /// Mosquitto for the mqtt_ingest scenario.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub mqtt: String,
    /// Attribute samples written by temporal_storage.
    #[arg(long, default_value_t = 10_000_000)]
    pub samples: usize,
    /// Store of the broker under test (passed to `hanbat serve --store`); default embedded.
    #[arg(long)]
    pub store: Option<String>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len()));
    let n: f64 = num.parse().map_err(|_| format!("bad duration '{s}'"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        other => return Err(format!("unknown duration unit '{other}' (use ms, s or m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// A server process started for the run; killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

async fn wait_ready(addr: SocketAddr, path: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        if let Ok((status, _)) = once(addr, get(addr, path)).await
            && status.is_success()
        {
            return Ok(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("server on {addr} did not become ready")
}

/// `hanbat serve` on `data`, with `extra` options.
fn spawn_broker(exe: &Path, data: &Path, store: Option<&str>, extra: &[&str]) -> anyhow::Result<Server> {
    let addr = free_port()?;
    let mut cmd = Command::new(exe);
    cmd.arg("serve").arg("--data").arg(data).arg("--listen").arg(addr.to_string()).args(extra);
    if let Some(store) = store {
        cmd.arg("--store").arg(store);
    }
    cmd.env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::inherit());
    Ok(Server { child: cmd.spawn().context("starting the broker")?, addr })
}

fn get(addr: SocketAddr, path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap_or_default()
}

fn with_body(method: Method, addr: SocketAddr, path: &str, body: String) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

/// A small city-sensor entity with 10 attributes, the unit of every scenario.
fn entity(id: &str, seed: u64) -> String {
    let v = (seed % 1000) as f64 / 10.0;
    let lon = 127.25 + (seed % 3100) as f64 / 10_000.0;
    let lat = 36.18 + (seed % 3200) as f64 / 10_000.0;
    format!(
        r#"{{"id":"{id}","type":"AirQualityObserved","temperature":{{"type":"Property","value":{v},"unitCode":"CEL","observedAt":"2026-11-25T00:00:00Z"}},"humidity":{{"type":"Property","value":{v}}},"pm25":{{"type":"Property","value":{v}}},"pm10":{{"type":"Property","value":{v}}},"no2":{{"type":"Property","value":{v}}},"o3":{{"type":"Property","value":{v}}},"status":{{"type":"Property","value":"ok"}},"name":{{"type":"Property","value":"station {seed}"}},"refSite":{{"type":"Relationship","object":"urn:ngsi-ld:Site:{site}"}},"location":{{"type":"GeoProperty","value":{{"type":"Point","coordinates":[{lon},{lat}]}}}}}}"#,
        site = seed % 16
    )
}

fn batch(ids: impl Iterator<Item = u64>, prefix: &str) -> String {
    let items: Vec<String> = ids.map(|i| entity(&format!("{prefix}{i}"), i)).collect();
    format!("[{}]", items.join(","))
}

fn print(name: &str, stats: &Stats, unit: &str, scale: f64) {
    println!("{name}.rps: {:.0} {unit}", stats.rps() * scale);
    print_latency(name, stats);
}

/// Latency percentiles, and errors if any.
fn print_latency(name: &str, stats: &Stats) {
    println!("{name}.p50: {:.2} ms", stats.ms(0.50));
    println!("{name}.p99: {:.2} ms", stats.ms(0.99));
    if stats.errors > 0 {
        println!("{name}.errors: {} of {} requests", stats.errors, stats.requests);
        if let Some(e) = &stats.first_error {
            eprintln!("{name}: first error: {e}");
        }
    }
}

/// Loads `count` entities with ids `{prefix}{i}`, 1000 per request, 4 requests in flight.
async fn preload(addr: SocketAddr, prefix: &str, count: usize) -> anyhow::Result<Duration> {
    load_batches(addr, count, |from, to| batch(from..to, prefix)).await
}

/// Loads `count` entities by batch upserts of 1000 (`body(from, to)` is the JSON array of
/// entities `from..to`), 4 requests in flight.
async fn load_batches(addr: SocketAddr, count: usize, body: impl Fn(u64, u64) -> String) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let requests = (0..count as u64).step_by(1000).map(|s| {
        let body = body(s, (s + 1000).min(count as u64));
        with_body(Method::POST, addr, "/ngsi-ld/v1/entityOperations/upsert", body)
    });
    send_all(addr, requests, 4).await?;
    Ok(start.elapsed())
}

/// Sends setup requests, `in_flight` at a time (each built when its turn comes, so large
/// loads are not held in memory); any failure stops the run.
async fn send_all(
    addr: SocketAddr,
    requests: impl Iterator<Item = Request<Full<Bytes>>>,
    in_flight: usize,
) -> anyhow::Result<()> {
    let mut requests = requests.peekable();
    while requests.peek().is_some() {
        let tasks: Vec<_> = requests.by_ref().take(in_flight).map(|r| tokio::spawn(once(addr, r))).collect();
        for t in tasks {
            let (status, body) = t.await??;
            if !status.is_success() {
                bail!("loading failed: {status} {}", String::from_utf8_lossy(&body));
            }
        }
    }
    Ok(())
}

/// CPU time (user + system) a process has used, in seconds, from /proc (Linux).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Broker CPU per operation: unlike rates, it does not move with the load other processes put
/// on the machine, so it compares across runs on a busy 2-core box.
fn print_cpu(name: &str, pid: u32, before: Option<f64>, operations: f64) {
    if let (Some(b), Some(a)) = (before, cpu_seconds(pid))
        && operations > 0.0
    {
        println!("{name}.cpu: {:.1} µs/op", (a - b) * 1e6 / operations);
    }
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024.0)
}

fn dir_mib(dir: &Path) -> f64 {
    fn walk(p: &Path) -> u64 {
        std::fs::read_dir(p)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| match e.metadata() {
                        Ok(m) if m.is_dir() => walk(&e.path()),
                        Ok(m) => m.len(),
                        Err(_) => 0,
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(dir) as f64 / (1024.0 * 1024.0)
}

/// Runs the selected scenarios; `exe` is the `hanbat` binary (the current executable).
pub async fn run(args: BenchArgs, exe: PathBuf) -> anyhow::Result<()> {
    let scenarios: Vec<String> =
        if args.scenarios.is_empty() { ALL.iter().map(|s| s.to_string()).collect() } else { args.scenarios.clone() };
    for s in &scenarios {
        let known = ALL.contains(&s.as_str())
            || s == "scale"
            || s == ingest::SCENARIO
            || notify::SCENARIOS.contains(&s.as_str())
            || query::SCENARIOS.contains(&s.as_str())
            || temporal::SCENARIOS.contains(&s.as_str());
        if !known {
            bail!("unknown scenario '{s}'");
        }
    }
    let data = tempfile::tempdir()?;
    let broker = spawn_broker(&exe, data.path(), args.store.as_deref(), &[])?;
    let addr = broker.addr;
    let broker_pid = broker.child.id();
    wait_ready(addr, "/ngsi-ld/v1/types").await?;
    let (clients, duration) = (args.clients, args.duration);
    let mut bare_rps = None;
    let mut get_rps = None;
    // The query scenarios share one loaded broker, started at the first of them.
    let mut city: Option<query::City> = None;
    for scenario in &scenarios {
        match scenario.as_str() {
            "bare" => {
                let bare_addr = free_port()?;
                let mut cmd = Command::new(&exe);
                cmd.arg("bare-server").arg("--listen").arg(bare_addr.to_string()).stdout(Stdio::null());
                let _bare = Server { child: cmd.spawn()?, addr: bare_addr };
                wait_ready(bare_addr, "/").await?;
                let make: MakeRequest = Arc::new(move |_, _| get(bare_addr, "/"));
                let stats = drive(bare_addr, clients, duration, &[StatusCode::OK], make).await?;
                print("bare", &stats, "req/s", 1.0);
                bare_rps = Some(stats.rps());
            }
            "create" => {
                let make: MakeRequest = Arc::new(move |c, i| {
                    with_body(
                        Method::POST,
                        addr,
                        "/ngsi-ld/v1/entities",
                        entity(&format!("urn:ngsi-ld:Bench:c{c}-{i}"), i),
                    )
                });
                let cpu = cpu_seconds(broker_pid);
                let stats = drive(addr, clients, duration, &[StatusCode::CREATED], make).await?;
                print("create", &stats, "req/s", 1.0);
                print_cpu("create", broker_pid, cpu, stats.requests as f64);
            }
            "batch_upsert" => {
                // Ids cycle over 100k so later batches update what earlier ones created.
                let make: MakeRequest = Arc::new(move |c, i| {
                    let base = ((c as u64 * 7919 + i) * 1000) % 100_000;
                    with_body(
                        Method::POST,
                        addr,
                        "/ngsi-ld/v1/entityOperations/upsert",
                        batch(base..base + 1000, "urn:ngsi-ld:Bench:u"),
                    )
                });
                // The first batches create (201), the rest update (204): both are success.
                let cpu = cpu_seconds(broker_pid);
                let stats =
                    drive(addr, clients.min(8), duration, &[StatusCode::CREATED, StatusCode::NO_CONTENT], make).await?;
                print("batch_upsert", &stats, "entities/s", 1000.0);
                print_cpu("batch_upsert", broker_pid, cpu, stats.requests as f64 * 1000.0);
            }
            "get_by_id" | "patch_attr" => {
                let n = args.preload.max(1) as u64;
                preload(addr, "urn:ngsi-ld:Bench:p", n as usize).await?;
                let make: MakeRequest = if scenario == "get_by_id" {
                    Arc::new(move |_, _| {
                        get(addr, &format!("/ngsi-ld/v1/entities/urn:ngsi-ld:Bench:p{}", fastrand::u64(0..n)))
                    })
                } else {
                    Arc::new(move |_, i| {
                        let path = format!(
                            "/ngsi-ld/v1/entities/urn:ngsi-ld:Bench:p{}/attrs/temperature",
                            fastrand::u64(0..n)
                        );
                        with_body(Method::PATCH, addr, &path, format!(r#"{{"type":"Property","value":{}}}"#, i % 400))
                    })
                };
                let expect: &'static [StatusCode] =
                    if scenario == "get_by_id" { &[StatusCode::OK] } else { &[StatusCode::NO_CONTENT] };
                let cpu = cpu_seconds(broker_pid);
                let stats = drive(addr, clients, duration, expect, make).await?;
                print(scenario, &stats, "req/s", 1.0);
                print_cpu(scenario, broker_pid, cpu, stats.requests as f64);
                if scenario == "get_by_id" {
                    get_rps = Some(stats.rps());
                }
            }
            "scale" => scale(&exe, &args).await?,
            s if notify::SCENARIOS.contains(&s) => notify::run(s, &exe, &args).await?,
            s if query::SCENARIOS.contains(&s) => {
                let loaded = match city.take() {
                    Some(c) => c,
                    None => query::City::load(&exe, &args).await?,
                };
                loaded.run(s, &args).await?;
                city = Some(loaded);
            }
            ingest::SCENARIO => ingest::run(&exe, &args).await?,
            s if temporal::SCENARIOS.contains(&s) => temporal::run(s, &exe, &args).await?,
            _ => {}
        }
    }
    if let (Some(g), Some(b)) = (get_rps, bare_rps) {
        println!("get_by_id.vs_bare: {:.2} ratio", g / b);
    }
    drop(broker);
    Ok(())
}

/// Loads `--entities` entities, then reports load rate, resident memory, data folder size, and
/// the time from a restart to serving.
async fn scale(exe: &Path, args: &BenchArgs) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let broker = spawn_broker(exe, data.path(), args.store.as_deref(), &[])?;
    wait_ready(broker.addr, "/ngsi-ld/v1/types").await?;
    let took = preload(broker.addr, "urn:ngsi-ld:Scale:", args.entities).await?;
    println!("scale.load: {:.0} entities/s", args.entities as f64 / took.as_secs_f64());
    // Touch entities across the range so the broker's caches hold what a live system holds.
    for i in (0..args.entities).step_by((args.entities / 1000).max(1)) {
        once(broker.addr, get(broker.addr, &format!("/ngsi-ld/v1/entities/urn:ngsi-ld:Scale:{i}"))).await?;
    }
    if let Some(rss) = rss_mib(broker.child.id()) {
        println!("scale.rss: {rss:.0} MiB");
    }
    println!("scale.disk: {:.0} MiB", dir_mib(data.path()));
    drop(broker);
    let start = Instant::now();
    let broker = spawn_broker(exe, data.path(), args.store.as_deref(), &[])?;
    wait_ready(broker.addr, &format!("/ngsi-ld/v1/entities/urn:ngsi-ld:Scale:{}", args.entities - 1)).await?;
    println!("scale.restart: {:.2} s", start.elapsed().as_secs_f64());
    if let Some(rss) = rss_mib(broker.child.id()) {
        println!("scale.rss_after_restart: {rss:.0} MiB");
    }
    Ok(())
}

/// The reference server of the `bare` scenario: a fixed small JSON body, nothing else.
pub async fn bare_server(listen: SocketAddr) -> anyhow::Result<()> {
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async {
            ([("content-type", "application/json")], r#"{"id":"urn:ngsi-ld:Bench:bare","type":"Bare"}"#)
        }),
    );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
