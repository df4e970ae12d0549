//! Notification scenarios: subscriptions on a broker in its own process, writes over HTTP, and
//! a receiver in this process that timestamps every notification.
//!
//! Latency is measured from the write's acknowledgement (the broker answered the PATCH) to the
//! receipt of the notification carrying that write's sequence number.

use crate::load::{MakeRequest, drive, once};
use crate::{BenchArgs, Server, spawn_broker, wait_ready, with_body};
use anyhow::{Context as _, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const SCENARIOS: &[&str] =
    &["notify_entities", "notify_type", "notify_write_overhead", "notify_throughput", "notify_dead_receiver"];

const NEVER: u64 = u64::MAX;

/// Acknowledgement and receipt instants per write sequence number (µs since `start`).
struct Timeline {
    start: Instant,
    acked: Vec<AtomicU64>,
    received: Vec<AtomicU64>,
    /// Notification requests and entities received.
    requests: AtomicU64,
    entities: AtomicU64,
}

impl Timeline {
    fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            acked: (0..capacity).map(|_| AtomicU64::new(NEVER)).collect(),
            received: (0..capacity).map(|_| AtomicU64::new(NEVER)).collect(),
            requests: AtomicU64::new(0),
            entities: AtomicU64::new(0),
        })
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn receipts(&self) -> u64 {
        self.received.iter().filter(|r| r.load(Ordering::Relaxed) != NEVER).count() as u64
    }

    /// Latency (ack → receipt) of every acknowledged write that was notified. A notification
    /// can arrive before the writer has seen its acknowledgement: that counts as 0.
    fn latency(&self) -> anyhow::Result<Histogram<u64>> {
        self.latency_of(0..self.acked.len())
    }

    /// [`Self::latency`] of the writes with these sequence numbers.
    fn latency_of(&self, seqs: std::ops::Range<usize>) -> anyhow::Result<Histogram<u64>> {
        let mut h = Histogram::new_with_bounds(1, 600_000_000, 3)?;
        for (a, r) in self.acked[seqs.clone()].iter().zip(&self.received[seqs]) {
            let (a, r) = (a.load(Ordering::Relaxed), r.load(Ordering::Relaxed));
            if a != NEVER && r != NEVER {
                h.record(r.saturating_sub(a).max(1))?;
            }
        }
        Ok(h)
    }

    fn acked(&self) -> u64 {
        self.acked.iter().filter(|a| a.load(Ordering::Relaxed) != NEVER).count() as u64
    }
}

/// The receiver: counts notifications and records, per `seq` value in `data`, when it arrived.
async fn start_receiver(timeline: Arc<Timeline>) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(move |body: Bytes| {
            let timeline = timeline.clone();
            async move {
                let at = timeline.now();
                timeline.requests.fetch_add(1, Ordering::Relaxed);
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                    for e in v["data"].as_array().into_iter().flatten() {
                        timeline.entities.fetch_add(1, Ordering::Relaxed);
                        let seq = e["seq"].as_u64().or_else(|| e["seq"]["value"].as_u64());
                        if let Some(slot) = seq.and_then(|s| timeline.received.get(s as usize)) {
                            let _ = slot.compare_exchange(NEVER, at, Ordering::Relaxed, Ordering::Relaxed);
                        }
                    }
                }
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, task))
}

/// A receiver that accepts connections and never answers.
async fn start_black_hole() -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    Ok((addr, task))
}

fn vehicle(i: u64, zones: u64) -> String {
    format!(
        r#"{{"id":"urn:ngsi-ld:Vehicle:{i}","type":"Vehicle","zone":{{"type":"Property","value":{}}},"seq":{{"type":"Property","value":0}},"speed":{{"type":"Property","value":50}}}}"#,
        i % zones
    )
}

async fn load_vehicles(addr: SocketAddr, count: u64, zones: u64) -> anyhow::Result<()> {
    for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
        let body = format!("[{}]", chunk.iter().map(|i| vehicle(*i, zones)).collect::<Vec<_>>().join(","));
        let (status, text) =
            once(addr, with_body(Method::POST, addr, "/ngsi-ld/v1/entityOperations/upsert", body)).await?;
        if !status.is_success() {
            bail!("loading vehicles: {status} {}", String::from_utf8_lossy(&text));
        }
    }
    Ok(())
}

/// Creates subscriptions from `bodies`, 16 requests in flight.
async fn subscribe_all(addr: SocketAddr, bodies: Vec<String>) -> anyhow::Result<()> {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (bodies, next) = (bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut sender, _conn) = connect(addr).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(body) = bodies.get(i) else { return anyhow::Ok(()) };
                let request = with_body(Method::POST, addr, "/ngsi-ld/v1/subscriptions", body.clone());
                sender.ready().await?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                let text = response.into_body().collect().await?.to_bytes();
                if status != StatusCode::CREATED {
                    bail!("creating a subscription: {status} {}", String::from_utf8_lossy(&text));
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<(Sender, tokio::task::JoinHandle<()>)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((sender, task))
}

fn subscription(receiver: SocketAddr, entities: &str, q: Option<String>) -> String {
    let q = q.map(|q| format!(r#","q":"{q}""#)).unwrap_or_default();
    format!(
        r#"{{"type":"Subscription","entities":[{entities}]{q},"notification":{{"format":"keyValues","attributes":["seq"],"endpoint":{{"uri":"http://{receiver}/notify"}}}}}}"#
    )
}

/// How writes are spread: vehicle number of a sequence number.
type Spread = Arc<dyn Fn(u64) -> u64 + Send + Sync>;

/// Writes `seq` of vehicle `entity(seq)` at `rate` writes/s for `duration` (open loop: every
/// write has its slot in the schedule), sequence numbers from `first`, recording
/// acknowledgements in `timeline`. Returns the number of failed writes.
async fn paced_writes(
    addr: SocketAddr,
    rate: u64,
    duration: Duration,
    timeline: Arc<Timeline>,
    entity: Spread,
    first: u64,
) -> anyhow::Result<u64> {
    let clients = 64;
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let start = tokio::time::Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (next, timeline, entity) = (next.clone(), timeline.clone(), entity.clone());
        tasks.push(tokio::spawn(async move {
            let (mut sender, _conn) = connect(addr).await?;
            let mut errors = 0u64;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let seq = first + n;
                if n >= total || seq as usize >= timeline.acked.len() {
                    return anyhow::Ok(errors);
                }
                tokio::time::sleep_until(start + interval * n as u32).await;
                let path = format!("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:{}/attrs/seq", entity(seq));
                let request = with_body(Method::PATCH, addr, &path, format!(r#"{{"type":"Property","value":{seq}}}"#));
                sender.ready().await?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                let _ = response.into_body().collect().await?;
                if status == StatusCode::NO_CONTENT {
                    timeline.acked[seq as usize].store(timeline.now(), Ordering::Relaxed);
                } else {
                    errors += 1;
                }
            }
        }));
    }
    let mut errors = 0;
    for t in tasks {
        errors += t.await??;
    }
    Ok(errors)
}

/// Waits until every acknowledged write was received, or `patience` passes without progress.
async fn drain(timeline: &Timeline, patience: Duration) -> Duration {
    let start = Instant::now();
    let mut last = (timeline.receipts(), Instant::now());
    loop {
        let got = timeline.receipts();
        if got >= timeline.acked() {
            return start.elapsed();
        }
        if got != last.0 {
            last = (got, Instant::now());
        } else if last.1.elapsed() > patience {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sum of `timesSent` over the tenant's subscriptions, as the broker reports it.
async fn times_sent(addr: SocketAddr) -> anyhow::Result<u64> {
    let mut sum = 0;
    let mut offset = 0;
    loop {
        let path = format!("/ngsi-ld/v1/subscriptions?limit=1000&offset={offset}");
        let (status, body) = once(addr, crate::get(addr, &path)).await?;
        if !status.is_success() {
            bail!("listing subscriptions: {status}");
        }
        let page: serde_json::Value = serde_json::from_slice(&body)?;
        let items = page.as_array().cloned().unwrap_or_default();
        sum += items.iter().filter_map(|s| s["notification"]["timesSent"].as_u64()).sum::<u64>();
        if items.len() < 1000 {
            return Ok(sum);
        }
        offset += 1000;
    }
}

fn report_latency(name: &str, timeline: &Timeline) -> anyhow::Result<f64> {
    let h = timeline.latency()?;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!("{name}.latency_p50: {:.2} ms", ms(0.50));
    println!("{name}.latency_p99: {:.2} ms", ms(0.99));
    println!("{name}.latency_max: {:.2} ms", h.max() as f64 / 1000.0);
    Ok(ms(0.99))
}

struct Setup {
    broker: Server,
    timeline: Arc<Timeline>,
    receiver: SocketAddr,
    _receiver_task: tokio::task::JoinHandle<()>,
    _data: tempfile::TempDir,
}

async fn setup(exe: &Path, args: &BenchArgs, capacity: usize, vehicles: u64, zones: u64) -> anyhow::Result<Setup> {
    let data = tempfile::tempdir()?;
    let broker = spawn_broker(exe, data.path(), args.store.as_deref(), &[])?;
    wait_ready(broker.addr, "/ngsi-ld/v1/types").await?;
    load_vehicles(broker.addr, vehicles, zones).await.context("loading vehicles")?;
    let timeline = Timeline::new(capacity);
    let (receiver, task) = start_receiver(timeline.clone()).await?;
    Ok(Setup { broker, timeline, receiver, _receiver_task: task, _data: data })
}

/// Runs one notification scenario.
pub async fn run(scenario: &str, exe: &Path, args: &BenchArgs) -> anyhow::Result<()> {
    let duration = args.duration;
    match scenario {
        // 10,000 subscriptions, each on its own entity; 5,000 writes/s spread over them.
        "notify_entities" => {
            let (subs, rate) = (10_000u64, 5_000u64);
            let capacity = (rate as f64 * duration.as_secs_f64()) as usize + 1;
            let s = setup(exe, args, capacity, subs, subs).await?;
            let bodies = (0..subs)
                .map(|i| {
                    subscription(s.receiver, &format!(r#"{{"id":"urn:ngsi-ld:Vehicle:{i}","type":"Vehicle"}}"#), None)
                })
                .collect();
            let t = Instant::now();
            subscribe_all(s.broker.addr, bodies).await?;
            println!("notify_entities.subscribe: {:.0} subscriptions/s", subs as f64 / t.elapsed().as_secs_f64());
            let errors =
                paced_writes(s.broker.addr, rate, duration, s.timeline.clone(), Arc::new(move |seq| seq % subs), 0)
                    .await?;
            let waited = drain(&s.timeline, Duration::from_secs(15)).await;
            report_counts("notify_entities", &s, errors, waited).await?;
            report_latency("notify_entities", &s.timeline)?;
        }
        // 1,000 subscriptions on one type, each with its own zone filter; 5,000 updates/s over
        // 10,000 vehicles in 1,000 zones: every update matches exactly one subscription, and all
        // 1,000 are candidates of every update.
        "notify_type" => {
            let (subs, rate, vehicles) = (1_000u64, 5_000u64, 10_000u64);
            let capacity = (rate as f64 * duration.as_secs_f64()) as usize + 1;
            let s = setup(exe, args, capacity, vehicles, subs).await?;
            let bodies = (0..subs)
                .map(|z| subscription(s.receiver, r#"{"type":"Vehicle"}"#, Some(format!("zone=={z}"))))
                .collect();
            subscribe_all(s.broker.addr, bodies).await?;
            let errors =
                paced_writes(s.broker.addr, rate, duration, s.timeline.clone(), Arc::new(move |seq| seq % vehicles), 0)
                    .await?;
            let waited = drain(&s.timeline, Duration::from_secs(15)).await;
            report_counts("notify_type", &s, errors, waited).await?;
            report_latency("notify_type", &s.timeline)?;
        }
        // Closed-loop write throughput without subscriptions, then with the 1,000 of notify_type.
        "notify_write_overhead" => {
            let (subs, vehicles) = (1_000u64, 10_000u64);
            let s = setup(exe, args, 1, vehicles, subs).await?;
            let addr = s.broker.addr;
            let make: MakeRequest = Arc::new(move |c, i| {
                let v = (c as u64 * 7919 + i * 13) % vehicles;
                with_body(
                    Method::PATCH,
                    addr,
                    &format!("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:{v}/attrs/seq"),
                    format!(r#"{{"type":"Property","value":{i}}}"#),
                )
            });
            let none = drive(addr, args.clients, duration, &[StatusCode::NO_CONTENT], make.clone()).await?;
            let bodies = (0..subs)
                .map(|z| subscription(s.receiver, r#"{"type":"Vehicle"}"#, Some(format!("zone=={z}"))))
                .collect();
            subscribe_all(addr, bodies).await?;
            let with = drive(addr, args.clients, duration, &[StatusCode::NO_CONTENT], make).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            println!("notify_write_overhead.writes_without: {:.0} writes/s", none.rps());
            println!("notify_write_overhead.writes_with_1000_subscriptions: {:.0} writes/s", with.rps());
            println!("notify_write_overhead.ratio: {:.2} ratio", with.rps() / none.rps());
            println!(
                "notify_write_overhead.notifications_received: {} notifications",
                s.timeline.entities.load(Ordering::Relaxed)
            );
        }
        // Sustained delivery to one receiver: 100 subscriptions on the type, writes as fast as
        // the clients go; every write notifies all 100.
        "notify_throughput" => {
            let (subs, vehicles) = (100u64, 1_000u64);
            let s = setup(exe, args, 1, vehicles, 10).await?;
            let bodies = (0..subs).map(|_| subscription(s.receiver, r#"{"type":"Vehicle"}"#, None)).collect();
            subscribe_all(s.broker.addr, bodies).await?;
            let addr = s.broker.addr;
            let make: MakeRequest = Arc::new(move |c, i| {
                let v = (c as u64 * 7919 + i * 13) % vehicles;
                with_body(
                    Method::PATCH,
                    addr,
                    &format!("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:{v}/attrs/seq"),
                    format!(r#"{{"type":"Property","value":{i}}}"#),
                )
            });
            let (r0, e0) = (s.timeline.requests.load(Ordering::Relaxed), s.timeline.entities.load(Ordering::Relaxed));
            let t = Instant::now();
            let writes = drive(addr, 4, duration, &[StatusCode::NO_CONTENT], make).await?;
            let elapsed = t.elapsed().as_secs_f64();
            let (r1, e1) = (s.timeline.requests.load(Ordering::Relaxed), s.timeline.entities.load(Ordering::Relaxed));
            println!("notify_throughput.writes: {:.0} writes/s", writes.rps());
            println!("notify_throughput.requests: {:.0} notifications/s", (r1 - r0) as f64 / elapsed);
            println!("notify_throughput.entities: {:.0} entities/s", (e1 - e0) as f64 / elapsed);
            let expected = writes.requests.saturating_sub(writes.errors) * subs;
            let waited = Instant::now();
            while s.timeline.entities.load(Ordering::Relaxed) - e0 < expected
                && waited.elapsed() < Duration::from_secs(30)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            println!(
                "notify_throughput.delivered: {} of {} entities",
                s.timeline.entities.load(Ordering::Relaxed) - e0,
                expected
            );
        }
        // notify_entities at 2,000 writes/s over 1,000 subscriptions, once as is and once with one
        // more subscription (on every vehicle) whose receiver never answers.
        "notify_dead_receiver" => {
            let (subs, rate) = (1_000u64, 2_000u64);
            let per_phase = (rate as f64 * duration.as_secs_f64()) as usize;
            let s = setup(exe, args, per_phase * 2 + 1, subs, subs).await?;
            let bodies = (0..subs)
                .map(|i| {
                    subscription(s.receiver, &format!(r#"{{"id":"urn:ngsi-ld:Vehicle:{i}","type":"Vehicle"}}"#), None)
                })
                .collect();
            subscribe_all(s.broker.addr, bodies).await?;
            let entity: Spread = Arc::new(move |seq: u64| seq % subs);
            paced_writes(s.broker.addr, rate, duration, s.timeline.clone(), entity.clone(), 0).await?;
            drain(&s.timeline, Duration::from_secs(10)).await;
            let before = s.timeline.latency_of(0..per_phase)?.value_at_quantile(0.99) as f64 / 1000.0;
            let (hole, _hole_task) = start_black_hole().await?;
            subscribe_all(s.broker.addr, vec![subscription(hole, r#"{"type":"Vehicle"}"#, None)]).await?;
            paced_writes(s.broker.addr, rate, duration, s.timeline.clone(), entity, per_phase as u64).await?;
            drain(&s.timeline, Duration::from_secs(10)).await;
            let after = s.timeline.latency_of(per_phase..per_phase * 2)?.value_at_quantile(0.99) as f64 / 1000.0;
            println!("notify_dead_receiver.p99_without: {before:.2} ms");
            println!("notify_dead_receiver.p99_with_dead_receiver: {after:.2} ms");
            println!("notify_dead_receiver.ratio: {:.2} ratio", after / before.max(0.001));
        }
        other => bail!("unknown scenario '{other}'"),
    }
    Ok(())
}

async fn report_counts(name: &str, s: &Setup, errors: u64, waited: Duration) -> anyhow::Result<()> {
    // Status counters reach the subscriptions' documents within the flush interval.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let acked = s.timeline.acked();
    println!("{name}.writes_acked: {acked} writes");
    if errors > 0 {
        println!("{name}.write_errors: {errors} writes");
    }
    println!("{name}.sent: {} notifications", times_sent(s.broker.addr).await?);
    println!("{name}.received: {} notifications", s.timeline.receipts());
    println!("{name}.requests: {} requests", s.timeline.requests.load(Ordering::Relaxed));
    println!("{name}.drain: {:.2} s", waited.as_secs_f64());
    Ok(())
}
