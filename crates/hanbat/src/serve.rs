//! `hanbat serve`: the broker on the embedded store (default) or PostgreSQL.

use anyhow::{Context as _, bail};
use clap::Args;
use hanbat_api::AppState;
use hanbat_broker::{Broker, Limits};
use hanbat_context::Contexts;
use hanbat_ingest::{Ingest, MqttConfig};
use hanbat_notify::{self as notify, Notifier};
use hanbat_store::Store;
use hanbat_store_postgres::PgStore;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Data folder of the embedded store.
    #[arg(long, default_value = "./hanbat-data", env = "HANBAT_DATA")]
    pub data: PathBuf,
    /// Store the broker on PostgreSQL (`postgres://user@host/db`) instead of the embedded store
    /// in `--data`; several nodes may share one database.
    #[arg(long, env = "HANBAT_STORE")]
    pub store: Option<String>,
    /// Address to listen on (1026 is the port NGSI brokers use).
    #[arg(long, default_value = "127.0.0.1:1026", env = "HANBAT_LISTEN")]
    pub listen: SocketAddr,
    /// Serve a @context URL from a local file, never fetching it: `URL=FILE` (repeatable).
    #[arg(long = "context", value_name = "URL=FILE")]
    pub contexts: Vec<String>,
    /// Origin under which this broker is reached, for URLs of hosted @contexts
    /// (default: http://<listen>).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Largest accepted request body in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_body: usize,
    /// Default page size of queries.
    #[arg(long, default_value_t = 20)]
    pub page_size: usize,
    /// Largest page size a query may ask for.
    #[arg(long, default_value_t = 1000)]
    pub max_page_size: usize,
    /// Attribute instances per entity in one temporal response; more are paginated (206).
    #[arg(long, default_value_t = 20)]
    pub temporal_page_size: usize,
    /// Prune history recorded longer ago than this (e.g. `90d`); default: keep all.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub history_retention: Option<std::time::Duration>,
    /// MQTT broker that devices publish their measures to (`{prefix}/{apikey}/{device}/attrs`).
    #[arg(long, value_name = "URL", default_value = "mqtt://127.0.0.1:1883", env = "HANBAT_MQTT")]
    pub mqtt: String,
    /// Do not ingest measures over MQTT (the /iot provisioning API stays).
    #[arg(long)]
    pub no_mqtt: bool,
    /// First level(s) of the measure and command topics.
    #[arg(long, default_value = "hanbat")]
    pub mqtt_topic_prefix: String,
    /// This node's id among the nodes on one PostgreSQL database (default: host name and HTTP
    /// port). Unique among live nodes; keep it across restarts so that a restarted node takes
    /// its subscriptions back at once.
    #[arg(long, env = "HANBAT_NODE_ID")]
    pub node_id: Option<String>,
}

#[derive(clap::Parser)]
struct Defaults {
    #[command(flatten)]
    args: ServeArgs,
}

impl ServeArgs {
    /// The command-line defaults with another data folder and listen address.
    pub fn new(data: PathBuf, listen: SocketAddr) -> Self {
        let mut args = <Defaults as clap::Parser>::try_parse_from(["hanbat"])
            .map(|d| d.args)
            .unwrap_or_else(|e| unreachable!("ServeArgs has defaults for every option: {e}"));
        args.data = data;
        args.listen = listen;
        args
    }
}

/// A running broker: its address, the task serving it, the subscription service and the IoT
/// agent, and its PostgreSQL store when it is one node of several.
pub struct Running {
    pub addr: SocketAddr,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    pub notifier: Arc<Notifier>,
    pub ingest: Arc<Ingest>,
    pub postgres: Option<Arc<PgStore>>,
}

/// Builds the broker and starts serving; returns once it listens.
pub async fn start(args: ServeArgs) -> anyhow::Result<Running> {
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let (store, postgres) = open_store(&args, addr).await?;
    // Joined (the change feed listening) before anything is loaded: a document another node
    // changes meanwhile is reloaded.
    let cluster = match &postgres {
        Some(pg) => Some(pg.join().await.map_err(|e| anyhow::anyhow!(e.detail)).context("joining the other nodes")?),
        None => None,
    };
    let origin = args.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    let contexts = Arc::new(Contexts::new(&origin, Some(store.clone())));
    contexts.load_hosted().await.map_err(|e| anyhow::anyhow!(e.detail))?;
    // Hanbat's own city data model context ships with the binary, so the simulator, the
    // dashboard and any client naming its URL work offline.
    let city = serde_json::from_str(hanbat_sim::CITY_CONTEXT).context("the built-in city @context is not JSON")?;
    contexts.preload(hanbat_sim::CITY_CONTEXT_URL, city).map_err(|e| anyhow::anyhow!(e.detail))?;
    for spec in &args.contexts {
        let Some((url, file)) = spec.split_once('=') else { bail!("--context takes URL=FILE, not '{spec}'") };
        let text = std::fs::read_to_string(file).with_context(|| format!("reading @context file {file}"))?;
        let document = serde_json::from_str(&text).with_context(|| format!("{file} is not JSON"))?;
        contexts.preload(url, document).map_err(|e| anyhow::anyhow!(e.detail))?;
    }
    let limits = Limits {
        default_page: args.page_size,
        max_page: args.max_page_size,
        temporal_page: args.temporal_page_size.max(1),
    };
    let broker = Arc::new(Broker::new(store.clone(), contexts.clone(), limits));
    spawn_expiry_sweep(broker.clone());
    // Subscriptions are loaded before the first request can write, so no change is missed.
    let csources = hanbat_csource::CSources::start(store.clone(), contexts.clone(), notify::Config::default().timeout)
        .await
        .map_err(|e| anyhow::anyhow!(e.detail))
        .context("loading the context source registrations")?;
    let notifier = Notifier::start(store, contexts.clone(), notify::Config::default())
        .await
        .map_err(|e| anyhow::anyhow!(e.detail))
        .context("loading the subscriptions")?;
    if let Some(cluster) = &cluster {
        notifier.set_ownership(Arc::new(crate::cluster::Leases(cluster.membership.clone())));
    }
    broker.on_change(notifier.listener());
    let ingest =
        Ingest::load(broker.clone()).await.map_err(|e| anyhow::anyhow!(e.detail)).context("loading the devices")?;
    if !args.no_mqtt {
        let config = MqttConfig {
            url: args.mqtt.clone(),
            topic_prefix: args.mqtt_topic_prefix.clone(),
            // The nodes of one database share the measures instead of each writing every one.
            shared_group: cluster.as_ref().map(|c| format!("hanbat-{:016x}", fnv1a(c.id.as_bytes()))),
        };
        hanbat_ingest::mqtt::start(&ingest, &broker, &config).map_err(|e| anyhow::anyhow!(e))?;
    }
    if let Some(cluster) = cluster {
        let services = crate::cluster::Services {
            broker: broker.clone(),
            contexts,
            notifier: notifier.clone(),
            csources: csources.clone(),
            ingest: ingest.clone(),
        };
        crate::cluster::follow(cluster.events, services);
    }
    // The dashboard and its live feed share the API's port (one origin: no CORS, one thing to run).
    let state = AppState::new(broker.clone(), args.max_body)
        .with_notifier(notifier.clone())
        .with_ingest(ingest.clone())
        .with_csources(csources);
    hanbat_api::snapshots::spawn_sweeper(state.clone());
    let app = hanbat_api::app_with(state, hanbat_web::router(broker));
    // The URL is not logged: it may hold a password.
    let on = if args.store.is_some() { "PostgreSQL".to_string() } else { args.data.display().to_string() };
    tracing::info!(%addr, store = %on, "Hanbat NGSI-LD broker listening");
    let server = tokio::spawn(serve_http(listener, app));
    Ok(Running { addr, server, notifier, ingest, postgres })
}

/// Serves HTTP/1.1 on `listener`, as `axum::serve` does, but
/// with header names sent in title case (`Location`, `Content-Type`). HTTP makes them
/// case-insensitive (RFC 9110 §5.1), yet clients written against Orion-LD, which sends them so,
/// look some up case-sensitively (the ETSI suite reads `'Location' in headers`).
async fn serve_http(listener: tokio::net::TcpListener, app: hanbat_api::App) -> std::io::Result<()> {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    let service = TowerToHyperService::new(app);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of file descriptors and the like: wait instead of spinning, as axum::serve does.
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .title_case_headers(true)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

/// A stable digest (FNV-1a) for names derived from other names.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// This node's default id: host name and HTTP port, unique among the live processes of the
/// hosts (two processes cannot listen on one port) and the same after a restart.
fn default_node_id(addr: SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", addr.port())
}

/// The store `--store` names, else the embedded store in `--data`; the PostgreSQL store also
/// as itself, to join the other nodes.
async fn open_store(args: &ServeArgs, addr: SocketAddr) -> anyhow::Result<(Arc<dyn Store>, Option<Arc<PgStore>>)> {
    match &args.store {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let options = hanbat_store_postgres::Options {
                history_retention: args.history_retention,
                node: Some(args.node_id.clone().unwrap_or_else(|| default_node_id(addr))),
            };
            let store = PgStore::connect(url, options)
                .await
                .map_err(|e| anyhow::anyhow!(e.detail))
                .context("opening the PostgreSQL store")?;
            let store = Arc::new(store);
            Ok((store.clone(), Some(store)))
        }
        Some(other) => bail!("--store takes a postgres:// URL, not '{other}'"),
        None => {
            let options = hanbat_store_sqlite::Options { history_retention: args.history_retention };
            let store = hanbat_store_sqlite::SqliteStore::open_with(&args.data, options)
                .map_err(|e| anyhow::anyhow!(e.detail))
                .with_context(|| format!("opening the store in {}", args.data.display()))?;
            Ok((Arc::new(store), None))
        }
    }
}

/// How often transient data past its `expiresAt` is removed from the store (reads hide it from
/// the instant it expires; the sweep reclaims the space and notifies the deletion).
const EXPIRY_SWEEP: std::time::Duration = std::time::Duration::from_millis(500);

fn spawn_expiry_sweep(broker: Arc<Broker>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EXPIRY_SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = broker.expire_due().await {
                tracing::warn!(detail = %e.detail, "expiry sweep failed");
            }
        }
    });
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let running = start(args).await?;
    let notifier = running.notifier.clone();
    let result = tokio::select! {
        r = running.server => r.map_err(anyhow::Error::from).and_then(|r| r.map_err(anyhow::Error::from)),
        _ = shutdown_signal() => {
            tracing::info!("stopping");
            Ok(())
        }
    };
    // Delivery stops and the subscriptions' status counters are written back; then the other
    // nodes may take the subscriptions over at once.
    notifier.shutdown().await;
    if let Some(pg) = running.postgres
        && let Err(e) = pg.leave().await
    {
        tracing::warn!(detail = %e.detail, "leaving the other nodes failed; they take over when the leases lapse");
    }
    result
}

/// Ctrl-C or SIGTERM (how service managers and the conformance harness stop the broker).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
