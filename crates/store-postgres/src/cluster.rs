//! Several broker nodes on one database: who is alive, which changes the others committed,
//! which documents they changed, and which node delivers each subscription.
//!
//! - **Membership.** Each node upserts its heartbeat in `nodes` every [`TICK`]; a node whose
//!   heartbeat is older than `PEER_TIMEOUT` (a little longer than [`LEASE`]) counts as gone.
//! - **Change feed.** While a node has live peers, each of its write transactions also inserts
//!   its changes (one row, serde JSON) into `change_log` and `NOTIFY hanbat_changes`, both
//!   taking effect at the commit. Every node LISTENs and reads the other nodes' rows of
//!   transactions below its snapshot's xmin: every transaction below it has ended, so a row
//!   whose transaction commits after a later one is still read, never skipped. A node alone
//!   logs nothing (the log costs a write per transaction); a node that joins waits
//!   [`WARM_UP`] before it takes subscriptions over, by which time the others log for it.
//! - **Documents.** Writing or deleting a document NOTIFYs `hanbat_docs` with its kind, tenant
//!   and id in the same statement; the other nodes reload it into their caches.
//! - **Subscription leases.** `subscription_leases` names the node that delivers each
//!   subscription and until when. The creating node takes the lease with the subscription;
//!   every tick a node renews its leases and takes over lapsed ones (a dead node's, within
//!   [`LEASE`] + [`TICK`]), up to its fair share at once, any after they lapsed for two ticks.
//!   A node delivers only while its lease is valid by its own clock, one second short of the
//!   database's expiry. Taking a lease over replays the logged changes since the previous
//!   holder's last renewal, so a failover loses no notification (some may come twice).
//!
//! The node id is the host name and HTTP port (`hanbat serve` sets it): a node restarted after
//! a crash is recognised and takes its leases back at once instead of waiting for them to lapse.

use crate::{OrStorage, storage};
use deadpool_postgres::Pool;
use futures::StreamExt;
use hanbat_model::Result;
use hanbat_store::{Change, DocKind};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

/// How long a subscription lease (and a heartbeat) lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(6);
/// How often a node renews its heartbeat and leases and looks for lapsed leases.
pub const TICK: Duration = Duration::from_secs(1);
/// How long after its last heartbeat a node still counts as a peer to log changes for. A
/// lease may be taken (with a new subscription) up to a tick after its holder's last
/// heartbeat, and is taken over up to a tick after it lapses: the holder must count as a peer
/// until then, so that every change its successor replays is in the log.
const PEER_TIMEOUT: Duration = Duration::from_secs(LEASE.as_secs() + 3 * TICK.as_secs());
/// How long a new node waits before taking leases of other nodes: the time the live nodes need
/// to see its heartbeat and start logging their changes for it.
pub const WARM_UP: Duration = Duration::from_millis(2500);
/// How long logged changes are kept (a node further behind than this misses changes).
const LOG_RETENTION_SECS: f64 = 60.0;
/// How often the change log is read besides on notifications (a transaction that commits
/// behind an older, slower one is read once the older one ends).
const POLL: Duration = Duration::from_millis(200);
/// How much earlier than the previous holder's last renewal a takeover's replay starts.
const REPLAY_MARGIN_MICROS: i64 = 2_000_000;
const CHANGES_CHANNEL: &str = "hanbat_changes";
const DOCS_CHANNEL: &str = "hanbat_docs";
/// NOTIFY payloads must stay under 8000 bytes.
const MAX_PAYLOAD: usize = 7900;

/// What this node knows of the cluster, shared by the store's write path and the cluster tasks.
pub struct Membership {
    node: String,
    /// Live peers exist: write transactions log their changes for them.
    logging: AtomicBool,
    /// Tenant → ids of the subscriptions this node holds leases of.
    leases: RwLock<HashMap<String, HashSet<String>>>,
    /// The leases are valid until this many milliseconds after `epoch`, unless renewed.
    valid_until_ms: AtomicU64,
    epoch: Instant,
}

impl Membership {
    pub(crate) fn new(node: String) -> Self {
        Self {
            node,
            logging: AtomicBool::new(false),
            leases: RwLock::new(HashMap::new()),
            valid_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether this node delivers the subscription now.
    pub fn delivers(&self, tenant: &str, subscription: &str) -> bool {
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        now_ms < self.valid_until_ms.load(Ordering::Acquire)
            && self.leases.read().get(tenant).is_some_and(|ids| ids.contains(subscription))
    }

    pub(crate) fn logging(&self) -> bool {
        self.logging.load(Ordering::Acquire)
    }

    pub(crate) fn hold(&self, tenant: &str, subscription: &str) {
        self.leases.write().entry(tenant.to_string()).or_default().insert(subscription.to_string());
    }

    pub(crate) fn release(&self, tenant: &str, subscription: &str) {
        if let Some(ids) = self.leases.write().get_mut(tenant) {
            ids.remove(subscription);
        }
    }

    fn holds(&self, tenant: &str, subscription: &str) -> bool {
        self.leases.read().get(tenant).is_some_and(|ids| ids.contains(subscription))
    }

    /// Replaces the leases held after a renewal that started at `renewed_at`.
    fn renewed(&self, leases: HashMap<String, HashSet<String>>, renewed_at: Instant) {
        *self.leases.write() = leases;
        let valid = (renewed_at + LEASE).saturating_duration_since(self.epoch).saturating_sub(Duration::from_secs(1));
        self.valid_until_ms.store(valid.as_millis() as u64, Ordering::Release);
    }
}

/// What the other nodes did, for this node to apply.
#[derive(Debug)]
pub enum Event {
    /// Changes another node committed, in its commit order per entity.
    Changes(Vec<Change>),
    /// A document was written or deleted by another node: reload it.
    Doc { kind: DocKind, tenant: String, id: String },
    /// This node now delivers these subscriptions (tenant, id): their holder died or left.
    /// `replay` holds the changes logged since the holder last renewed its lease, to match
    /// against them (the holder may have notified some already: at-least-once).
    Claimed { subscriptions: Vec<(String, String)>, replay: Vec<Change> },
}

/// This node's membership of the cluster, from [`crate::PgStore::join`].
pub struct Cluster {
    /// Names the database (server and database), the same for every node of the cluster
    /// whatever URL each was given.
    pub id: String,
    pub membership: Arc<Membership>,
    pub events: mpsc::Receiver<Event>,
}

#[derive(Serialize, Deserialize)]
struct DocNotice {
    node: String,
    kind: String,
    tenant: String,
    id: String,
}

/// The payload of the NOTIFY that announces a document's change, if it fits in one.
pub(crate) fn doc_notice(node: &str, kind: DocKind, tenant: &str, id: &str) -> Option<String> {
    let notice = DocNotice { node: node.into(), kind: kind.as_str().into(), tenant: tenant.into(), id: id.into() };
    serde_json::to_string(&notice).ok().filter(|p| p.len() <= MAX_PAYLOAD)
}

/// Records the changes of a write transaction for the other nodes (see the module docs):
/// `$1` this node's id, `$2` the changes (serde JSON).
pub(crate) const LOG_CHANGES: &str =
    "WITH logged AS (INSERT INTO change_log(node, changes) VALUES ($1, $2) RETURNING 1)
     SELECT pg_notify('hanbat_changes', $1) FROM logged";

/// Leases taken over in one tick and where their replay starts (µs since the epoch; `None`:
/// the whole log).
struct Claim {
    subscriptions: Vec<(String, String)>,
    since: Option<i64>,
}

/// Starts the heartbeat, lease and change-feed tasks; returns once this node's first
/// heartbeat is recorded, its own leases (of an earlier process with its id) renewed and the
/// feed listens.
pub(crate) async fn join(
    pool: Pool,
    config: tokio_postgres::Config,
    membership: Arc<Membership>,
) -> Result<(Cluster, Vec<tokio::task::JoinHandle<()>>)> {
    let (events_tx, events) = mpsc::channel(1024);
    let (claims_tx, claims_rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let mut ticker = Ticker { pool, membership: membership.clone(), started, ticks: 0 };
    if let Some(claim) = ticker.tick().await? {
        let _ = claims_tx.send(claim);
    }
    // The feed starts at the horizon of now: changes committed before joining are not news.
    let (cursor, id) = {
        let client = ticker.pool.get().await.or_storage()?;
        let cursor = client.query_one(HORIZON, &[]).await.or_storage()?.get::<_, i64>(0);
        let id = client
            .query_one(
                "SELECT (SELECT system_identifier FROM pg_control_system())::text || '/' || current_database()",
                &[],
            )
            .await
            .or_storage()?
            .get::<_, String>(0);
        (cursor, id)
    };
    let (listening, listens) = tokio::sync::oneshot::channel();
    let feed = Feed { config, membership: membership.clone(), cursor, events: events_tx, listening: Some(listening) };
    let tasks = vec![tokio::spawn(ticker.run(claims_tx)), tokio::spawn(feed.run(claims_rx))];
    if !matches!(tokio::time::timeout(LISTEN_TIMEOUT, listens).await, Ok(Ok(()))) {
        tasks.iter().for_each(tokio::task::JoinHandle::abort);
        return Err(storage("the cluster change feed could not LISTEN to the database"));
    }
    Ok((Cluster { id, membership, events }, tasks))
}

/// Marks this node's leases lapsed and removes its heartbeat, so that the other nodes take its
/// subscriptions over at their next tick (a graceful stop).
pub(crate) async fn leave(pool: &Pool, node: &str) -> Result<()> {
    let client = pool.get().await.or_storage()?;
    client
        .execute(
            "WITH gone AS (DELETE FROM nodes WHERE id = $1)
             UPDATE subscription_leases SET expires = now(), renewed = now() WHERE node = $1",
            &[&node],
        )
        .await
        .or_storage()?;
    Ok(())
}

/// The xmin of the current snapshot: every transaction with a lower id has ended.
const HORIZON: &str = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon";

struct Ticker {
    pool: Pool,
    membership: Arc<Membership>,
    started: Instant,
    ticks: u64,
}

impl Ticker {
    async fn run(mut self, claims: mpsc::UnboundedSender<Claim>) {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            interval.tick().await;
            match self.tick().await {
                Ok(Some(claim)) => {
                    if claims.send(claim).is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(detail = %e.detail, "cluster heartbeat failed"),
            }
        }
    }

    /// Heartbeat, peers, lease renewal and takeover; returns the leases taken over.
    async fn tick(&mut self) -> Result<Option<Claim>> {
        let at = Instant::now();
        self.ticks += 1;
        let m = &self.membership;
        let lease = LEASE.as_secs_f64();
        let client = self.pool.get().await.or_storage()?;
        let row = client
            .query_one(
                "WITH beat AS (
                     INSERT INTO nodes(id, heartbeat) VALUES ($1, now())
                     ON CONFLICT (id) DO UPDATE SET heartbeat = now()
                 )
                 SELECT count(*), (SELECT count(*) FROM subscription_leases) FROM nodes
                 WHERE id <> $1 AND heartbeat > now() - $2 * interval '1 second'",
                &[&m.node, &PEER_TIMEOUT.as_secs_f64()],
            )
            .await
            .or_storage()?;
        let (peers, total): (i64, i64) = (row.get(0), row.get(1));
        // Renewal also takes back what an earlier process with this id held.
        let renewed = client
            .query(
                "UPDATE subscription_leases l SET expires = now() + $2 * interval '1 second', renewed = now()
                 FROM subscription_leases o
                 WHERE l.node = $1 AND o.tenant = l.tenant AND o.id = l.id
                 RETURNING l.tenant, l.id, o.expires <= now(), (extract(epoch FROM o.renewed) * 1e6)::float8",
                &[&m.node, &lease],
            )
            .await
            .or_storage()?;
        let mut claim = Claim { subscriptions: Vec::new(), since: None };
        let mut earliest = f64::INFINITY;
        let mut held: HashMap<String, HashSet<String>> = HashMap::new();
        let mut take = |tenant: String, id: String, lapsed: bool, renewed: f64| {
            if lapsed || !m.holds(&tenant, &id) {
                earliest = earliest.min(renewed);
                claim.subscriptions.push((tenant.clone(), id.clone()));
            }
            held.entry(tenant).or_default().insert(id);
        };
        let mine = renewed.len() as i64;
        for r in renewed {
            take(r.get(0), r.get(1), r.get(2), r.get(3));
        }
        // Alone, no node's changes can be missed: lapsed leases are taken without warming up.
        if peers == 0 || at.duration_since(self.started) >= WARM_UP {
            let live = peers + 1;
            let fair = (total + live - 1) / live;
            // Up to the fair share at once; any lease nobody took for two ticks.
            for (limit, lapsed_for) in [((fair - mine).max(0), 0.0), (i64::MAX, 2.0 * TICK.as_secs_f64())] {
                if limit == 0 {
                    continue;
                }
                let rows = client
                    .query(
                        "WITH free AS (
                             SELECT tenant, id, renewed FROM subscription_leases
                             WHERE expires <= now() - $3 * interval '1 second' AND node <> $1
                             ORDER BY expires LIMIT $4 FOR UPDATE SKIP LOCKED
                         )
                         UPDATE subscription_leases l
                         SET node = $1, expires = now() + $2 * interval '1 second', renewed = now()
                         FROM free f WHERE l.tenant = f.tenant AND l.id = f.id
                         RETURNING l.tenant, l.id, (extract(epoch FROM f.renewed) * 1e6)::float8",
                        &[&m.node, &lease, &lapsed_for, &limit],
                    )
                    .await
                    .or_storage()?;
                for r in rows {
                    take(r.get(0), r.get(1), true, r.get(2));
                }
            }
        }
        m.renewed(held, at);
        tracing::debug!(peers, total, claimed = claim.subscriptions.len(), "cluster tick");
        // Only now: a write committed before the takeover took effect is in the log to replay.
        m.logging.store(peers > 0, Ordering::Release);
        if self.ticks % 10 == 1 {
            client
                .execute(
                    "WITH gone AS (DELETE FROM nodes WHERE heartbeat < now() - interval '1 hour')
                     DELETE FROM change_log WHERE written < now() - $1 * interval '1 second'",
                    &[&LOG_RETENTION_SECS],
                )
                .await
                .or_storage()?;
        }
        if claim.subscriptions.is_empty() {
            return Ok(None);
        }
        // A transaction is logged with the instant it began: one that began shortly before the
        // last renewal may have committed after it.
        claim.since = earliest.is_finite().then_some(earliest as i64 - REPLAY_MARGIN_MICROS);
        tracing::info!(subscriptions = claim.subscriptions.len(), "took subscription leases over");
        Ok(Some(claim))
    }
}

/// Follows the change log and the document notices on a connection of its own.
struct Feed {
    config: tokio_postgres::Config,
    membership: Arc<Membership>,
    /// Transactions below this id have been read.
    cursor: i64,
    events: mpsc::Sender<Event>,
    /// Told once the first LISTEN holds: [`join`] waits for it, so that nothing a node loads
    /// after joining can change unheard.
    listening: Option<tokio::sync::oneshot::Sender<()>>,
}

/// How long joining waits for the change feed to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

impl Feed {
    async fn run(mut self, mut claims: mpsc::UnboundedReceiver<Claim>) {
        loop {
            match self.follow(&mut claims).await {
                Ok(()) => return,
                Err(e) => {
                    // Document notices sent while reconnecting are missed: their caches are
                    // refreshed by the next change of the same document.
                    tracing::warn!(detail = %e.detail, "cluster change feed interrupted; reconnecting");
                    tokio::time::sleep(TICK).await;
                }
            }
        }
    }

    /// Returns `Ok` when this node stops listening (its event receiver is gone). A change may
    /// reach the notifier twice around a takeover (replayed and read by the feed): notifications
    /// are at-least-once there.
    async fn follow(&mut self, claims: &mut mpsc::UnboundedReceiver<Claim>) -> Result<()> {
        let (client, mut connection) = self.config.connect(NoTls).await.or_storage()?;
        let (notices_tx, mut notices) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let AsyncMessage::Notification(n) = message
                    && notices_tx.send(n).is_err()
                {
                    return;
                }
            }
        });
        let result = async {
            client.batch_execute(&format!("LISTEN {CHANGES_CHANNEL}; LISTEN {DOCS_CHANNEL}")).await.or_storage()?;
            if let Some(listening) = self.listening.take() {
                let _ = listening.send(());
            }
            let read = client
                .prepare(&format!(
                    "WITH h AS ({HORIZON}) SELECT h.horizon, l.changes FROM h
                     LEFT JOIN change_log l ON l.xid >= $1 AND l.xid < h.horizon AND l.node <> $2
                     ORDER BY l.xid, l.seq"
                ))
                .await
                .or_storage()?;
            let replay = client
                .prepare(
                    "SELECT changes FROM change_log
                     WHERE xid < $1 AND ($2::float8 IS NULL OR written >= to_timestamp($2 / 1e6))
                     ORDER BY xid, seq",
                )
                .await
                .or_storage()?;
            let mut poll = tokio::time::interval(POLL);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    notice = notices.recv() => {
                        let Some(first) = notice else { return Err(storage("the listening connection closed")) };
                        let mut pending = vec![first];
                        while let Ok(n) = notices.try_recv() {
                            pending.push(n);
                        }
                        for n in pending.iter().filter(|n| n.channel() == DOCS_CHANNEL) {
                            if let Some(event) = self.doc_event(n.payload()) && self.events.send(event).await.is_err() {
                                return Ok(());
                            }
                        }
                    }
                    _ = poll.tick() => {}
                    claim = claims.recv() => {
                        let Some(claim) = claim else { return Ok(()) };
                        let since = claim.since.map(|s| s as f64);
                        // Every transaction that ended before the takeover, this node's too
                        // (published here while another node held the lease).
                        let horizon: i64 = client.query_one(HORIZON, &[]).await.or_storage()?.get(0);
                        let rows = client.query(&replay, &[&horizon, &since]).await.or_storage()?;
                        let replay: Vec<Change> = rows.iter().flat_map(|r| decode_changes(r.get(0))).collect();
                        tracing::debug!(rows = rows.len(), changes = replay.len(), ?since, horizon, "replay");
                        let event = Event::Claimed { subscriptions: claim.subscriptions, replay };
                        if self.events.send(event).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                let rows = client.query(&read, &[&self.cursor, &self.membership.node]).await.or_storage()?;
                let mut changes = Vec::new();
                for row in &rows {
                    self.cursor = self.cursor.max(row.get(0));
                    if let Some(bytes) = row.get::<_, Option<&[u8]>>(1) {
                        changes.extend(decode_changes(bytes));
                    }
                }
                if !changes.is_empty() && self.events.send(Event::Changes(changes)).await.is_err() {
                    return Ok(());
                }
            }
        }
        .await;
        driver.abort();
        result
    }

    fn doc_event(&self, payload: &str) -> Option<Event> {
        let notice: DocNotice = serde_json::from_str(payload).ok()?;
        if notice.node == self.membership.node {
            return None;
        }
        let kind = DocKind::parse(&notice.kind)?;
        Some(Event::Doc { kind, tenant: notice.tenant, id: notice.id })
    }
}

fn decode_changes(bytes: &[u8]) -> Vec<Change> {
    serde_json::from_slice(bytes).unwrap_or_else(|e| {
        tracing::error!(error = %e, "a logged change cannot be read (a node of another version?); skipped");
        Vec::new()
    })
}
