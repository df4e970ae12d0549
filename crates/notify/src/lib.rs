//! NGSI-LD subscriptions and notifications (ETSI GS CIM 009 V1.8.1 §5.8, §5.2.12, §5.3.1).
//!
//! ```text
//! Broker::write ──(committed Change)──▶ listener: try_send to a matcher shard (never blocks)
//!   matcher shard ──▶ Registry::candidates (index by id / type / watched attribute)
//!                 ──▶ matcher::matches (state, trigger, watchedAttributes, q/geoQ/scopeQ)
//!                 ──▶ the subscription's bounded queue
//!   sender task (one per subscription with pending work, a bounded pool of permits)
//!                 ──▶ payload (format, attributes, showChanges, @context) ──▶ HTTP / MQTT
//!                 ──▶ status counters ──(every flush interval)──▶ Store documents
//! ```
//!
//! [`Notifier`] is the service: the HTTP API creates, reads, updates and deletes subscriptions
//! through it, `hanbat serve` registers its [`Notifier::listener`] on the broker and stops it at
//! shutdown. Subscriptions are documents of the store ([`DocKind::Subscription`]) and are loaded
//! again at start.

mod delivery;
pub mod matcher;
pub mod payload;
pub mod registry;
pub mod subscription;
pub mod transport;

pub use subscription::{State, Subscription, Trigger};

use hanbat_broker::ChangeListener;
use hanbat_context::Contexts;
use hanbat_model::jsonld::CORE_CONTEXT_URL;
use hanbat_model::{Context, NgsiError, Result, Timestamp};
use hanbat_store::{Change, DocKind, Store};
use parking_lot::Mutex;
use registry::{Entry, Job, NotifyContext, Registry, Spec};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

/// Tuning of delivery; the defaults suit a broker with thousands of subscriptions.
#[derive(Debug, Clone)]
pub struct Config {
    /// Pending notifications per subscription; beyond it the oldest is dropped and counted.
    pub queue_capacity: usize,
    /// Notifications in flight at once, over all subscriptions.
    pub senders: usize,
    /// Entities of a backlog sent in one notification: while one notification of a
    /// subscription is in flight, the changes behind it go out together in the next.
    pub max_batch: usize,
    /// Retries of a failed notification before it is abandoned.
    pub retries: u32,
    /// Delay before the first retry; doubled for each further one.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// How long a receiver has to answer (unless the endpoint sets `timeout`).
    pub timeout: Duration,
    /// How often status counters are written back to the store.
    pub flush_interval: Duration,
    /// Committed changes waiting for matching, per shard; beyond it changes are dropped and
    /// counted (the write path never waits for notifications).
    pub change_queue: usize,
    /// Matcher tasks; changes of one entity always go to the same one, keeping their order.
    pub matchers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            senders: 512,
            max_batch: 100,
            retries: 5,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            flush_interval: Duration::from_secs(1),
            change_queue: 100_000,
            matchers: 2,
        }
    }
}

/// Which subscriptions this node delivers, when several broker nodes share one store (each
/// subscription is delivered by one node at a time). Without one, a node delivers them all.
pub trait Ownership: Send + Sync {
    fn delivers(&self, tenant: &str, subscription: &str) -> bool;
}

/// Counters over all subscriptions since start.
#[derive(Debug, Default)]
pub struct Stats {
    /// Changes that reached the matcher.
    pub changes: AtomicU64,
    /// Changes dropped because a matcher queue was full.
    pub changes_dropped: AtomicU64,
    /// Notifications queued (one per matching subscription and change or period).
    pub matched: AtomicU64,
    /// Successful deliveries.
    pub sent: AtomicU64,
    /// Failed attempts (each retry counts).
    pub failed: AtomicU64,
    /// Notifications dropped from a full subscription queue.
    pub dropped: AtomicU64,
    /// Notifications given up after the last retry.
    pub abandoned: AtomicU64,
}

pub(crate) struct Inner {
    config: Config,
    store: Arc<dyn Store>,
    contexts: Arc<Contexts>,
    registry: Registry,
    transports: transport::Transports,
    senders: Semaphore,
    shards: Vec<mpsc::Sender<Arc<Change>>>,
    stats: Stats,
    stopping: AtomicBool,
    runtime: tokio::runtime::Handle,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    ownership: std::sync::OnceLock<Arc<dyn Ownership>>,
}

impl Inner {
    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    fn delivers(&self, entry: &Entry) -> bool {
        self.ownership.get().is_none_or(|o| o.delivers(&entry.tenant, &entry.id))
    }
}

/// The subscription service.
pub struct Notifier {
    inner: Arc<Inner>,
}

/// The URL that stands for a @context value in `Link` headers and `jsonldContext`.
fn context_url(contexts: &Contexts, value: &Value) -> String {
    match value {
        Value::String(url) => url.clone(),
        Value::Array(items) if items.len() == 1 && items[0].is_string() => {
            items[0].as_str().unwrap_or(CORE_CONTEXT_URL).to_string()
        }
        Value::Null => CORE_CONTEXT_URL.to_string(),
        other => contexts.implicit_url(other),
    }
}

impl Notifier {
    /// Loads the stored subscriptions and starts matching and delivery on the current runtime.
    pub async fn start(store: Arc<dyn Store>, contexts: Arc<Contexts>, config: Config) -> Result<Arc<Self>> {
        let shards_n = config.matchers.max(1);
        let mut shards = Vec::with_capacity(shards_n);
        let mut receivers = Vec::with_capacity(shards_n);
        for _ in 0..shards_n {
            let (tx, rx) = mpsc::channel(config.change_queue.max(1));
            shards.push(tx);
            receivers.push(rx);
        }
        let inner = Arc::new(Inner {
            senders: Semaphore::new(config.senders.max(1)),
            config,
            store,
            contexts,
            registry: Registry::default(),
            transports: transport::Transports::new(),
            shards,
            stats: Stats::default(),
            stopping: AtomicBool::new(false),
            runtime: tokio::runtime::Handle::current(),
            tasks: Mutex::new(Vec::new()),
            ownership: std::sync::OnceLock::new(),
        });
        let notifier = Arc::new(Self { inner: inner.clone() });
        notifier.load().await?;
        let mut tasks = Vec::new();
        for rx in receivers {
            tasks.push(tokio::spawn(match_loop(inner.clone(), rx)));
        }
        tasks.push(tokio::spawn(flush_loop(Arc::downgrade(&inner))));
        inner.tasks.lock().extend(tasks);
        Ok(notifier)
    }

    async fn load(&self) -> Result<()> {
        let docs = self.inner.store.list_docs(None, DocKind::Subscription).await?;
        let mut statuses: std::collections::HashMap<(String, String), Value> = self
            .inner
            .store
            .list_docs(None, DocKind::SubscriptionStatus)
            .await?
            .into_iter()
            .map(|(tenant, id, doc)| ((tenant, id), doc))
            .collect();
        let count = docs.len();
        for (tenant, id, doc) in docs {
            let status = statuses.remove(&(tenant.clone(), id.clone()));
            self.activate(&tenant, &id, doc, status).await;
        }
        if count > 0 {
            tracing::info!(subscriptions = self.inner.registry.len(), "subscriptions loaded");
        }
        Ok(())
    }

    /// Compiles a stored subscription (and its stored status) into the registry; one that
    /// cannot be read is logged and left out.
    async fn activate(&self, tenant: &str, id: &str, doc: Value, status: Option<Value>) {
        let mut sub: Subscription = match serde_json::from_value(doc) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(%tenant, %id, error = %e, "a stored subscription cannot be read; skipped");
                return;
            }
        };
        // Before statuses were documents of their own they were written into the subscription.
        if let Some(status) = status.and_then(|s| serde_json::from_value(s).ok()) {
            sub.delivery = status;
        }
        match self.compile(sub, None).await {
            Ok(spec) => {
                let entry = Arc::new(Entry::new(tenant, spec));
                if self.inner.registry.insert(entry.clone()) {
                    self.start_periodic(&entry);
                }
            }
            Err(e) => {
                tracing::error!(%tenant, %id, error = %e.detail, "a stored subscription cannot be compiled; skipped")
            }
        }
    }

    /// Makes this node deliver only the subscriptions `ownership` gives it (several nodes on
    /// one store). Set once, before serving.
    pub fn set_ownership(&self, ownership: Arc<dyn Ownership>) {
        if self.inner.ownership.set(ownership).is_err() {
            tracing::warn!("subscription ownership was already set; the first one stays");
        }
    }

    /// Another node wrote or deleted a subscription's document (`kind` is
    /// [`DocKind::Subscription`] or [`DocKind::SubscriptionStatus`]): brings this node's copy
    /// up to date. The status of a subscription this node delivers is its own, never replaced.
    pub async fn refresh(&self, kind: DocKind, tenant: &str, id: &str) -> Result<()> {
        let doc = self.inner.store.get_doc(tenant, kind, id).await?;
        let existing = self.inner.registry.get(tenant, id);
        if kind == DocKind::SubscriptionStatus {
            if let (Some(entry), Some(doc)) = (existing, doc)
                && !self.inner.delivers(&entry)
                && let Ok(status) = serde_json::from_value(doc)
            {
                *entry.status.lock() = status;
            }
            return Ok(());
        }
        match (existing, doc) {
            (None, None) => {}
            (None, Some(doc)) => {
                let status = self.inner.store.get_doc(tenant, DocKind::SubscriptionStatus, id).await?;
                self.activate(tenant, id, doc, status).await;
            }
            (Some(entry), None) => {
                let _guard = entry.persist.lock().await;
                entry.deleted.store(true, Ordering::Release);
                self.inner.registry.remove(tenant, id);
            }
            (Some(entry), Some(doc)) => {
                let _guard = entry.persist.lock().await;
                if entry.is_deleted() {
                    return Ok(());
                }
                let sub: Subscription = serde_json::from_value(doc).map_err(|e| NgsiError::internal(e.to_string()))?;
                let spec = self.compile(sub, None).await?;
                self.inner.registry.update(&entry, spec);
                self.start_periodic(&entry);
            }
        }
        Ok(())
    }

    /// This node now delivers these subscriptions, (tenant, id), in place of a node that died
    /// or left: their status is read back, and the changes `replay` holds (committed since the
    /// previous node last confirmed it delivered them) are matched against them.
    pub async fn take_over(&self, subscriptions: &[(String, String)], replay: Vec<Change>) {
        let entries: Vec<Arc<Entry>> =
            subscriptions.iter().filter_map(|(tenant, id)| self.inner.registry.get(tenant, id)).collect();
        for entry in &entries {
            match self.inner.store.get_doc(&entry.tenant, DocKind::SubscriptionStatus, &entry.id).await {
                Ok(Some(doc)) => {
                    if let Ok(status) = serde_json::from_value(doc) {
                        *entry.status.lock() = status;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(subscription = %entry.id, error = %e.detail, "reading a status taken over failed")
                }
            }
        }
        let now = Timestamp::now();
        for change in replay {
            let change = Arc::new(change);
            for entry in entries.iter().filter(|e| e.tenant == change.tenant) {
                if let Some(trigger) = matcher::matches(&entry.spec(), &change, &now) {
                    self.inner.stats.matched.fetch_add(1, Ordering::Relaxed);
                    delivery::enqueue(&self.inner, entry, Job::Change { change: change.clone(), trigger });
                }
            }
        }
    }

    /// The change listener to register with [`hanbat_broker::Broker::on_change`]. It only hands
    /// the change to a matcher shard (by entity id, so one entity's changes stay in order).
    pub fn listener(self: &Arc<Self>) -> ChangeListener {
        let inner = self.inner.clone();
        Box::new(move |change: &Arc<Change>| {
            if inner.registry.is_empty() || inner.is_stopping() {
                return;
            }
            let shard = if inner.shards.len() == 1 {
                0
            } else {
                use std::hash::{Hash, Hasher};
                let mut fx = FxHasher::default();
                change.id.hash(&mut fx);
                (fx.finish() as usize) % inner.shards.len()
            };
            if inner.shards[shard].try_send(change.clone()).is_err() {
                let n = inner.stats.changes_dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(dropped = n, "matcher queue full: changes dropped for notifications");
                }
            }
        })
    }

    /// Counters since start.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Number of live subscriptions (every tenant).
    pub fn len(&self) -> u64 {
        self.inner.registry.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Compiles a subscription: filters parsed, notification @context resolved. `request_ctx`
    /// spares resolving the subscription's own @context when the request just did.
    async fn compile(&self, sub: Subscription, request_ctx: Option<Arc<Context>>) -> Result<Spec> {
        let query = sub.entity_query()?;
        let linked_q = query.q.as_ref().is_some_and(|q| q.link_depth() > 0);
        let notify = NotifyContext::resolve(&self.inner.contexts, &sub, request_ctx).await?;
        let triggers = sub.triggers().iter().fold(0u8, |acc, t| acc | t.bit());
        Ok(Spec { sub, query, triggers, linked_q, notify })
    }

    /// `POST /subscriptions`: validates, stores and activates a subscription; returns its id.
    /// `ctx` is the request's resolved @context, `context` its value.
    pub async fn create(
        &self,
        tenant: &str,
        body: &Map<String, Value>,
        ctx: Arc<Context>,
        context: Value,
    ) -> Result<String> {
        let sub = Subscription::create(body, &ctx, context)?;
        let id = sub.id.clone();
        let spec = self.compile(sub, Some(ctx)).await?;
        let doc = serde_json::to_value(&spec.sub).map_err(|e| NgsiError::internal(e.to_string()))?;
        let entry = Arc::new(Entry::new(tenant, spec));
        if !self.inner.registry.insert(entry.clone()) {
            return Err(NgsiError::already_exists(format!("subscription '{id}' already exists")));
        }
        let _guard = entry.persist.lock().await;
        if let Err(e) = self.inner.store.put_doc(tenant, DocKind::Subscription, &id, &doc).await {
            self.inner.registry.remove(tenant, &id);
            return Err(e);
        }
        self.start_periodic(&entry);
        Ok(id)
    }

    /// The subscription with its live status.
    pub fn get(&self, tenant: &str, id: &str) -> Option<Subscription> {
        self.inner.registry.get(tenant, id).map(|e| e.snapshot())
    }

    /// A page of a tenant's subscriptions in creation order, and their total number.
    pub fn list(&self, tenant: &str, offset: usize, limit: usize) -> (Vec<Subscription>, usize) {
        let all = self.inner.registry.list(tenant);
        let total = all.len();
        (all.into_iter().skip(offset).take(limit).map(|e| e.snapshot()).collect(), total)
    }

    /// `PATCH /subscriptions/{id}` (§5.8.2).
    pub async fn update(&self, tenant: &str, id: &str, fragment: &Map<String, Value>, ctx: Arc<Context>) -> Result<()> {
        let entry = self.entry(tenant, id)?;
        let _guard = entry.persist.lock().await;
        if entry.is_deleted() {
            return Err(not_found(id));
        }
        let next = entry.spec().sub.update(fragment, &ctx)?;
        let mut spec = self.compile(next, None).await?;
        spec.sub.delivery = entry.status.lock().clone();
        let doc = serde_json::to_value(&spec.sub).map_err(|e| NgsiError::internal(e.to_string()))?;
        self.inner.store.put_doc(tenant, DocKind::Subscription, id, &doc).await?;
        entry.dirty.store(false, Ordering::Release);
        self.inner.registry.update(&entry, spec);
        self.start_periodic(&entry);
        Ok(())
    }

    /// `DELETE /subscriptions/{id}`: pending notifications of it are dropped.
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<()> {
        let entry = self.entry(tenant, id)?;
        let _guard = entry.persist.lock().await;
        entry.deleted.store(true, Ordering::Release);
        self.inner.registry.remove(tenant, id);
        self.inner.store.delete_doc(tenant, DocKind::Subscription, id).await?;
        self.inner.store.delete_doc(tenant, DocKind::SubscriptionStatus, id).await?;
        Ok(())
    }

    fn entry(&self, tenant: &str, id: &str) -> Result<Arc<Entry>> {
        self.inner.registry.get(tenant, id).ok_or_else(|| not_found(id))
    }

    /// The subscription as a response body, names compacted with `ctx`.
    pub fn render(&self, sub: &Subscription, ctx: &Context) -> Map<String, Value> {
        let default_url = context_url(&self.inner.contexts, &sub.context);
        sub.render(ctx, &default_url, &Timestamp::now())
    }

    /// Starts the periodic notifications of a `timeInterval` subscription (a task per
    /// version of the subscription: an update starts a new one and the old one ends).
    fn start_periodic(&self, entry: &Arc<Entry>) {
        let spec = entry.spec();
        let Some(secs) = spec.sub.time_interval else { return };
        let generation = entry.generation.load(Ordering::SeqCst);
        let (inner, entry) = (Arc::downgrade(&self.inner), entry.clone());
        let period = Duration::from_secs_f64(secs);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(inner) = inner.upgrade() else { return };
                if entry.is_deleted() || inner.is_stopping() || entry.generation.load(Ordering::SeqCst) != generation {
                    return;
                }
                let spec = entry.spec();
                if spec.sub.state(&Timestamp::now()) != State::Active || !inner.delivers(&entry) {
                    continue;
                }
                match matching_entities(&inner, &entry.tenant, &spec).await {
                    Ok(entities) if !entities.is_empty() => {
                        inner.stats.matched.fetch_add(1, Ordering::Relaxed);
                        delivery::enqueue(&inner, &entry, Job::Snapshot { entities });
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(subscription = %entry.id, error = %e.detail, "periodic notification: query failed")
                    }
                }
            }
        });
    }

    /// Stops matching and delivery and writes the status counters back. Notifications still
    /// queued are not sent (see ARCHITECTURE.md, "Notifications": the delivery guarantee).
    pub async fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::Release);
        for task in self.inner.tasks.lock().drain(..) {
            task.abort();
        }
        flush(&self.inner).await;
        self.inner.transports.shutdown();
    }
}

/// Entities a periodic notification reports: every match of the selection and filters, up to
/// this many.
const MAX_PERIODIC_ENTITIES: usize = 10_000;

async fn matching_entities(inner: &Inner, tenant: &str, spec: &Spec) -> Result<Vec<hanbat_model::Entity>> {
    let mut query = spec.query.clone();
    query.limit = 1000;
    let mut out = Vec::new();
    loop {
        query.offset = out.len();
        let page = inner.store.query(tenant, &query).await?;
        let n = page.entities.len();
        out.extend(page.entities);
        if n < query.limit || out.len() >= MAX_PERIODIC_ENTITIES {
            return Ok(out);
        }
    }
}

fn not_found(id: &str) -> NgsiError {
    NgsiError::not_found(format!("subscription '{id}' does not exist"))
}

/// A small deterministic hasher for shard selection (FNV-1a).
#[derive(Default)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// A matcher shard: takes changes in batches, finds the subscriptions they notify, queues.
async fn match_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<Arc<Change>>) {
    let mut batch = Vec::with_capacity(256);
    let mut candidates = Vec::new();
    while rx.recv_many(&mut batch, 256).await > 0 {
        let now = Timestamp::now();
        for change in batch.drain(..) {
            inner.stats.changes.fetch_add(1, Ordering::Relaxed);
            inner.registry.candidates(&change, &mut candidates);
            for entry in candidates.drain(..).filter(|e| inner.delivers(e)) {
                let spec = entry.spec();
                if let Some(trigger) = matcher::matches(&spec, &change, &now) {
                    inner.stats.matched.fetch_add(1, Ordering::Relaxed);
                    delivery::enqueue(&inner, &entry, Job::Change { change: change.clone(), trigger });
                }
            }
        }
        // Long bursts must not starve the runtime's other tasks (senders, HTTP).
        tokio::task::yield_now().await;
    }
}

/// Writes the status of every subscription that changed since the last time, in one burst so
/// that the store's group commit takes them together. Statuses are documents apart from the
/// definitions: a definition updated meanwhile (by another node) is never overwritten.
async fn flush(inner: &Inner) {
    let dirty: Vec<Arc<Entry>> =
        inner.registry.all().into_iter().filter(|e| e.dirty.swap(false, Ordering::AcqRel)).collect();
    let writes = dirty.iter().map(|entry| async move {
        let _guard = entry.persist.lock().await;
        if entry.is_deleted() {
            return;
        }
        let Ok(doc) = serde_json::to_value(&*entry.status.lock()) else { return };
        if let Err(e) = inner.store.put_doc(&entry.tenant, DocKind::SubscriptionStatus, &entry.id, &doc).await {
            entry.dirty.store(true, Ordering::Release);
            tracing::warn!(subscription = %entry.id, error = %e.detail, "writing the subscription status failed");
        }
    });
    futures::future::join_all(writes).await;
}

async fn flush_loop(inner: std::sync::Weak<Inner>) {
    let period = match inner.upgrade() {
        Some(i) => i.config.flush_interval,
        None => return,
    };
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        flush(&inner).await;
    }
}
