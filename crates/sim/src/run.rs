//! Running a simulation against a broker: history backfill as fast as the broker takes it, then
//! live data paced in real (or accelerated) time, in batches spread over parallel lanes.

use crate::anomaly::AnomalyLabel;
use crate::city::city_model;
use crate::signal::fnv;
use crate::simulation::{SimConfig, Simulation, TICK};
use crate::sink::{HttpSink, MqttSink, Sink, attribute_counts};
use crate::sites::Scenario;
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Most entities a batch request may carry.
pub const MAX_BATCH: usize = 1000;

/// Options of `hanbat sim` (and of the simulator inside `hanbat demo`).
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Base URL of the broker.
    #[arg(long, default_value = "http://127.0.0.1:1026")]
    pub broker: String,
    /// Which site to simulate.
    #[arg(long, value_enum, default_value_t = Scenario::All)]
    pub scenario: Scenario,
    /// Stop the live phase after this much wall-clock time (`90s`, `10m`); `0s` stops right
    /// after the backfill. Default: run until interrupted (Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Scale factor of the number of devices at each site (2 doubles them).
    #[arg(long, default_value_t = 1.0)]
    pub devices: f64,
    /// Attribute updates per second to aim for in the live phase. Without --speedup, simulated
    /// time runs as fast as this rate needs (ahead of the clock if the rate is high).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Simulated seconds per real second in the live phase (default 1, or unbounded with --rate).
    #[arg(long)]
    pub speedup: Option<f64>,
    /// Same seed, same start: same data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated instant where the live phase begins (RFC 3339). Default: now, to the tick.
    #[arg(long, value_parser = parse_instant)]
    pub start: Option<DateTime<Utc>>,
    /// Write this much history first (`30d`), with `observedAt` in the past, as fast as the
    /// broker accepts it.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub backfill: Option<Duration>,
    /// Shortest interval between two reports of a device during the backfill.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1m")]
    pub resolution: Duration,
    /// Corrupt some measurements and write where to FILE (NDJSON: entity, attribute, start,
    /// end, kind).
    #[arg(long, value_name = "FILE")]
    pub inject_anomalies: Option<PathBuf>,
    /// Tenant to write to (`NGSILD-Tenant`).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Entities per batch request (at most 1000).
    #[arg(long, default_value_t = MAX_BATCH)]
    pub batch_size: usize,
    /// Batch requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Do not write the city model first (it is already loaded).
    #[arg(long)]
    pub skip_city_model: bool,
    /// How entities reach the broker: its NGSI-LD API, or devices publishing over MQTT to its
    /// IoT agent (provisioned through its /iot API).
    #[arg(long, value_enum, default_value_t = Via::Api)]
    pub via: Via,
    /// MQTT broker the devices publish to (with --via mqtt).
    #[arg(long, value_name = "URL", default_value = "mqtt://127.0.0.1:1883")]
    pub mqtt: String,
    /// First level(s) of the measure topics (the broker's --mqtt-topic-prefix).
    #[arg(long, default_value = "hanbat")]
    pub mqtt_topic_prefix: String,
}

/// The transport of `hanbat sim --via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    Api,
    Mqtt,
}

fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("'{text}' is not an RFC 3339 instant such as 2025-03-01T09:00:00+09:00: {e}"))
}

#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    args: SimArgs,
}

impl Default for SimArgs {
    /// The command-line defaults.
    fn default() -> Self {
        Defaults::try_parse_from(["hanbat-sim"]).map(|d| d.args).expect("SimArgs has no required argument")
    }
}

impl SimArgs {
    fn validate(&self) -> anyhow::Result<()> {
        if !(self.devices > 0.0 && self.devices <= 1000.0) {
            bail!("--devices must be a scale factor above 0 and at most 1000, not {}", self.devices);
        }
        if self.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            bail!("--rate must be a positive number of attribute updates per second");
        }
        if self.speedup.is_some_and(|s| !(s > 0.0 && s.is_finite())) {
            bail!("--speedup must be a positive factor");
        }
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            bail!("--batch-size must be between 1 and {MAX_BATCH}");
        }
        if !(1..=256).contains(&self.concurrency) {
            bail!("--concurrency must be between 1 and 256");
        }
        Ok(())
    }
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    pub scenario: Scenario,
    pub devices: usize,
    /// Distinct entities written: city model, devices, rooms and residents, alerts.
    pub entities: usize,
    pub alerts: usize,
    pub requests: u64,
    /// Entity payloads the broker accepted.
    pub entity_updates: u64,
    /// Attributes in the accepted payloads.
    pub attribute_updates: u64,
    /// Entity payloads the broker rejected or that never reached it.
    pub errors: u64,
    /// Injected anomalies (lines of the ground-truth file).
    pub anomalies: usize,
    pub simulated_from: DateTime<Utc>,
    pub simulated_to: DateTime<Utc>,
    pub elapsed_seconds: f64,
}

impl SimReport {
    /// Attribute updates per second of wall-clock time.
    pub fn rate(&self) -> f64 {
        if self.elapsed_seconds > 0.0 { self.attribute_updates as f64 / self.elapsed_seconds } else { 0.0 }
    }
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "scenario {}: {} devices, {} entities ({} alerts)",
            self.scenario.key(),
            self.devices,
            self.entities,
            self.alerts
        )?;
        writeln!(f, "simulated {} → {}", self.simulated_from.to_rfc3339(), self.simulated_to.to_rfc3339())?;
        writeln!(
            f,
            "{} requests, {} entity updates, {} attribute updates, {} errors",
            self.requests, self.entity_updates, self.attribute_updates, self.errors
        )?;
        if self.anomalies > 0 {
            writeln!(f, "{} anomalies injected", self.anomalies)?;
        }
        write!(f, "{:.1} s, {:.0} attribute updates/s", self.elapsed_seconds, self.rate())
    }
}

/// Runs the simulator against the broker at `args.broker` until `--duration` is over or Ctrl-C.
pub async fn run(args: SimArgs) -> anyhow::Result<SimReport> {
    let sink: Arc<dyn Sink> = match args.via {
        Via::Api => Arc::new(HttpSink::new(&args.broker, args.tenant.clone())?),
        Via::Mqtt => Arc::new(MqttSink::new(&args.broker, &args.mqtt, &args.mqtt_topic_prefix, args.tenant.clone())?),
    };
    run_with(&args, sink, async {
        // If no handler can be installed, the run ends by --duration only.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    })
    .await
}

/// Runs the simulator into any sink, stopping when `shutdown` completes (or at `--duration`).
/// `args.broker` and `args.tenant` are the sink's business and are not used here.
pub async fn run_with<F>(args: &SimArgs, sink: Arc<dyn Sink>, shutdown: F) -> anyhow::Result<SimReport>
where
    F: Future<Output = ()> + Send + 'static,
{
    args.validate()?;
    let started = std::time::Instant::now();
    let live_start = args.start.unwrap_or_else(now_to_the_tick);
    let backfill = chrono::Duration::from_std(args.backfill.unwrap_or_default()).context("--backfill is too long")?;
    let config = SimConfig {
        scenario: args.scenario,
        scale: args.devices,
        seed: args.seed,
        start: live_start - backfill,
        anomalies: args.inject_anomalies.is_some(),
    };
    let mut labels = LabelFile::create(args.inject_anomalies.as_ref())?;
    let stats = Arc::new(Stats::default());
    let mut entities = 0;
    if !args.skip_city_model {
        let model = city_model();
        entities += model.len();
        for chunk in model.chunks(args.batch_size) {
            let outcome = sink.write(chunk).await.context("cannot write the city model")?;
            stats.record(chunk, Ok(outcome));
        }
    }

    let (stop_tx, mut stop) = watch::channel(false);
    let watcher = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut sim = Simulation::new(&config);
    let mut lanes = Lanes::start(sink, args.concurrency, args.batch_size, stats.clone());

    let backfill_ticks = (backfill.num_seconds().max(0) as u64).div_ceil(TICK.as_secs());
    let bar = progress_bar(backfill_ticks);
    let mut tick = 0u64;
    while sim.now() < live_start && !*stop.borrow() {
        let step = sim.step(args.resolution);
        labels.write(&step.labels)?;
        lanes.push(step.updates).await;
        tick += 1;
        if tick.is_multiple_of(720) {
            bar.set_position(tick);
            bar.set_message(format!("{} · {} updates", step.at.format("%Y-%m-%d %H:%M"), stats.attributes()));
        }
    }
    lanes.flush().await;
    bar.finish_and_clear();

    let speedup = match (args.speedup, args.rate) {
        (Some(s), _) => Some(s),
        (None, Some(_)) => None,
        (None, None) => Some(1.0),
    };
    let live_wall = Instant::now();
    let mut live_ticks = 0u64;
    let mut generated = 0u64;
    let mut last_log = live_wall;
    loop {
        let over = args.duration.is_some_and(|d| live_wall.elapsed() >= d);
        if over || *stop.borrow() {
            break;
        }
        let mut deadline = live_wall;
        if let Some(speedup) = speedup {
            deadline = deadline.max(live_wall + TICK.mul_f64(live_ticks as f64 / speedup));
        }
        if let Some(rate) = args.rate {
            deadline = deadline.max(live_wall + Duration::from_secs_f64(generated as f64 / rate));
        }
        if let Some(d) = args.duration {
            deadline = deadline.min(live_wall + d);
        }
        if deadline > Instant::now() {
            // Idle until the next tick: send what is buffered now rather than let it wait.
            lanes.flush().await;
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                _ = stop.changed() => break,
            }
            if args.duration.is_some_and(|d| live_wall.elapsed() >= d) {
                break;
            }
        }
        let step = sim.step(Duration::ZERO);
        generated += step.updates.iter().map(crate::ngsi::attribute_count).sum::<usize>() as u64;
        labels.write(&step.labels)?;
        lanes.push(step.updates).await;
        live_ticks += 1;
        if last_log.elapsed() >= Duration::from_secs(10) {
            last_log = Instant::now();
            tracing::info!(
                simulated = %step.at.to_rfc3339(),
                attribute_updates = stats.attributes(),
                errors = stats.errors.load(Ordering::Relaxed),
                "simulator running"
            );
        }
    }
    lanes.close().await;
    watcher.abort();
    labels.write(&sim.finish())?;
    let anomalies = labels.finish()?;
    let alerts = sim.alerts_raised();
    Ok(SimReport {
        scenario: args.scenario,
        devices: sim.device_count(),
        entities: entities + sim.entity_count() + alerts,
        alerts,
        requests: stats.requests.load(Ordering::Relaxed),
        entity_updates: stats.entities.load(Ordering::Relaxed),
        attribute_updates: stats.attributes(),
        errors: stats.errors.load(Ordering::Relaxed),
        anomalies,
        simulated_from: config.start,
        simulated_to: sim.now(),
        elapsed_seconds: started.elapsed().as_secs_f64(),
    })
}

fn now_to_the_tick() -> DateTime<Utc> {
    let secs = Utc::now().timestamp();
    let tick = TICK.as_secs() as i64;
    DateTime::from_timestamp(secs - secs.rem_euclid(tick), 0).unwrap_or_else(Utc::now)
}

fn progress_bar(ticks: u64) -> ProgressBar {
    if ticks == 0 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(ticks);
    if let Ok(style) = ProgressStyle::with_template("backfill {wide_bar} {percent:>3}% eta {eta} {msg}") {
        bar.set_style(style);
    }
    bar
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    entities: AtomicU64,
    attributes: AtomicU64,
    errors: AtomicU64,
}

impl Stats {
    fn attributes(&self) -> u64 {
        self.attributes.load(Ordering::Relaxed)
    }

    fn record(&self, batch: &[Value], result: anyhow::Result<crate::sink::WriteOutcome>) {
        let requests = self.requests.fetch_add(1, Ordering::Relaxed);
        // Say why the first writes fail, then only now and then: a down broker fails them all.
        let tell = requests < 5 || requests.is_multiple_of(1000);
        match result {
            Ok(outcome) => {
                let failed: HashSet<&str> = outcome.failed.iter().map(|f| f.id.as_str()).collect();
                for (id, attributes) in attribute_counts(batch) {
                    if failed.contains(id.as_str()) {
                        self.errors.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.entities.fetch_add(1, Ordering::Relaxed);
                        self.attributes.fetch_add(attributes as u64, Ordering::Relaxed);
                    }
                }
                if tell && let Some(f) = outcome.failed.first() {
                    tracing::warn!(entity = %f.id, reason = %f.reason, failed = outcome.failed.len(), "broker rejected entities");
                }
            }
            Err(e) => {
                self.errors.fetch_add(batch.len() as u64, Ordering::Relaxed);
                if tell {
                    tracing::warn!(error = %format!("{e:#}"), entities = batch.len(), "batch failed");
                }
            }
        }
    }
}

/// Parallel request lanes. An entity always goes through the same lane, so its updates reach
/// the broker in order even with several requests in flight.
struct Lanes {
    senders: Vec<mpsc::Sender<Vec<Value>>>,
    buffers: Vec<Vec<Value>>,
    batch: usize,
    workers: Vec<JoinHandle<()>>,
}

impl Lanes {
    fn start(sink: Arc<dyn Sink>, lanes: usize, batch: usize, stats: Arc<Stats>) -> Self {
        let mut senders = Vec::with_capacity(lanes);
        let mut workers = Vec::with_capacity(lanes);
        for _ in 0..lanes {
            // One batch queued behind the one in flight: enough to keep the lane busy, little
            // enough that a slow broker slows the simulator down instead of filling memory.
            let (tx, mut rx) = mpsc::channel::<Vec<Value>>(1);
            let (sink, stats) = (sink.clone(), stats.clone());
            workers.push(tokio::spawn(async move {
                while let Some(batch) = rx.recv().await {
                    let result = sink.write(&batch).await;
                    stats.record(&batch, result);
                }
            }));
            senders.push(tx);
        }
        Self { senders, buffers: vec![Vec::new(); lanes], batch, workers }
    }

    async fn push(&mut self, updates: Vec<Value>) {
        let lanes = self.senders.len() as u64;
        for update in updates {
            let lane = (fnv(update.get("id").and_then(Value::as_str).unwrap_or_default()) % lanes) as usize;
            self.buffers[lane].push(update);
            if self.buffers[lane].len() >= self.batch {
                self.send(lane).await;
            }
        }
    }

    async fn send(&mut self, lane: usize) {
        let batch = std::mem::take(&mut self.buffers[lane]);
        // A closed lane means its worker panicked; the batch is lost and the report shows it.
        let _ = self.senders[lane].send(batch).await;
    }

    async fn flush(&mut self) {
        for lane in 0..self.buffers.len() {
            if !self.buffers[lane].is_empty() {
                self.send(lane).await;
            }
        }
    }

    async fn close(mut self) {
        self.flush().await;
        self.senders.clear();
        for worker in self.workers {
            let _ = worker.await;
        }
    }
}

/// The ground-truth file of `--inject-anomalies`.
struct LabelFile {
    out: Option<std::io::BufWriter<std::fs::File>>,
    count: usize,
}

impl LabelFile {
    fn create(path: Option<&PathBuf>) -> anyhow::Result<Self> {
        let out = match path {
            Some(p) => Some(std::io::BufWriter::new(
                std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
            )),
            None => None,
        };
        Ok(Self { out, count: 0 })
    }

    fn write(&mut self, labels: &[AnomalyLabel]) -> anyhow::Result<()> {
        let Some(out) = &mut self.out else { return Ok(()) };
        for label in labels {
            serde_json::to_writer(&mut *out, label)?;
            out.write_all(b"\n")?;
            self.count += 1;
        }
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<usize> {
        if let Some(out) = &mut self.out {
            out.flush()?;
        }
        Ok(self.count)
    }
}
