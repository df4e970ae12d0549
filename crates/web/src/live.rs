//! The live feed: one listener on the broker's change bus, fanned out to server-sent-event clients.
//!
//! ```text
//! Broker::write ──on_change──▶ hub queue (bounded) ──fan-out task──▶ client queue (bounded) ──▶ SSE
//!                try_send: never blocks the writer      renders once      try_send per client
//! ```
//!
//! Nothing on this path can slow a write down: the listener only `try_send`s an `Arc`, and a full
//! queue drops the event and counts it. A client that missed events (its own queue was full, or
//! the hub's) gets a `resync` event with the count before its next event, and reloads its
//! snapshot from the NGSI-LD API.
//!
//! Events (default tenant only), names compacted with the city @context:
//! - `ready`: `{}` once connected (start loading the snapshot after it, so nothing falls between);
//! - message: `{"op":"create"|"update"|"delete","id","type","at","attrs":{name: keyValue},
//!   "observedAt":{name: time},"deleted":[name]}` — `attrs` holds the whole entity on create and
//!   the written attributes on update, in the simplified (keyValues) form;
//! - `resync`: `{"dropped": n}`.

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use hanbat_broker::Broker;
use hanbat_model::Context;
use hanbat_model::render::{self, Format, Options};
use hanbat_store::{AttrChangeKind, Change, ChangeKind};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{OnceCell, mpsc};

/// Queue sizes of the feed.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Changes waiting for the fan-out task (a burst of a batch upsert lands here).
    pub hub_buffer: usize,
    /// Rendered events waiting for one client's connection.
    pub client_buffer: usize,
}

impl Default for LiveConfig {
    fn default() -> Self {
        // The simulator's backfill writes batches of thousands of entities; a browser on a
        // wall screen reads a few thousand events a second without trouble.
        Self { hub_buffer: 65_536, client_buffer: 8_192 }
    }
}

/// A rendered event, shared by every client that receives it.
struct Message {
    types: Vec<String>,
    data: String,
}

struct Client {
    tx: mpsc::Sender<Arc<Message>>,
    /// Expanded types this client asked for; `None`: every type.
    types: Option<Vec<String>>,
    /// Events dropped for this client since it was last told.
    lagged: Arc<AtomicU64>,
}

#[derive(Default)]
struct Stats {
    received: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

pub struct LiveHub {
    broker_contexts: Arc<hanbat_context::Contexts>,
    context: OnceCell<Arc<Context>>,
    clients: Mutex<HashMap<u64, Client>>,
    next_client: AtomicU64,
    client_buffer: usize,
    stats: Stats,
}

impl LiveHub {
    /// Registers the feed's listener on `broker` and starts its fan-out task. Call within a Tokio
    /// runtime.
    pub fn start(broker: &Broker, config: LiveConfig) -> Arc<Self> {
        let hub = Arc::new(Self {
            broker_contexts: broker.contexts.clone(),
            context: OnceCell::new(),
            clients: Mutex::new(HashMap::new()),
            next_client: AtomicU64::new(0),
            client_buffer: config.client_buffer.max(1),
            stats: Stats::default(),
        });
        let (tx, rx) = mpsc::channel::<Arc<Change>>(config.hub_buffer.max(1));
        let listener_hub = hub.clone();
        broker.on_change(Box::new(move |change| {
            listener_hub.stats.received.fetch_add(1, Ordering::Relaxed);
            if tx.try_send(change.clone()).is_err() {
                // Full (or shutting down): every client misses this change.
                listener_hub.lag_all();
            }
        }));
        tokio::spawn(fan_out(hub.clone(), rx));
        hub
    }

    /// The city @context (preloaded by `hanbat serve`), or the core context if it cannot be had.
    async fn context(&self) -> Arc<Context> {
        self.context
            .get_or_init(|| async {
                let url = Value::String(hanbat_sim::CITY_CONTEXT_URL.to_string());
                match self.broker_contexts.resolve(&url).await {
                    Ok(ctx) => ctx,
                    Err(e) => {
                        tracing::warn!(error = %e.detail, "live feed: city @context unavailable; using the core context");
                        hanbat_model::jsonld::core_context()
                    }
                }
            })
            .await
            .clone()
    }

    fn lag_all(&self) {
        let clients = self.clients.lock();
        self.stats.dropped.fetch_add(clients.len() as u64, Ordering::Relaxed);
        for client in clients.values() {
            client.lagged.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn deliver(&self, message: &Arc<Message>) {
        let mut clients = self.clients.lock();
        clients.retain(|_, client| {
            if let Some(types) = &client.types
                && !message.types.iter().any(|t| types.contains(t))
            {
                return true;
            }
            match client.tx.try_send(message.clone()) {
                Ok(()) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    client.lagged.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    fn subscribe(self: &Arc<Self>, types: Option<Vec<String>>) -> Subscription {
        let (tx, rx) = mpsc::channel(self.client_buffer);
        let lagged = Arc::new(AtomicU64::new(0));
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        self.clients.lock().insert(id, Client { tx, types, lagged: lagged.clone() });
        Subscription { hub: self.clone(), id, rx, lagged, greeted: false }
    }

    /// Connected clients, changes seen, events delivered and dropped.
    pub fn stats(&self) -> Value {
        json!({
            "clients": self.clients.lock().len(),
            "received": self.stats.received.load(Ordering::Relaxed),
            "delivered": self.stats.delivered.load(Ordering::Relaxed),
            "dropped": self.stats.dropped.load(Ordering::Relaxed),
        })
    }
}

async fn fan_out(hub: Arc<LiveHub>, mut rx: mpsc::Receiver<Arc<Change>>) {
    let ctx = hub.context().await;
    while let Some(change) = rx.recv().await {
        // The dashboard shows the city, which lives in the default tenant.
        // Rendering is the feed's cost: with no dashboard open, a change is not rendered.
        if !change.tenant.is_empty() || hub.clients.lock().is_empty() {
            continue;
        }
        let message = Arc::new(Message { types: change.entity.types.clone(), data: render_change(&change, &ctx) });
        hub.deliver(&message);
    }
}

/// One change as the dashboard applies it: keyValues of what was written, compact names.
fn render_change(change: &Change, ctx: &Context) -> String {
    let opts = Options { format: Format::KeyValues, sys_attrs: false, lang: None };
    let entity = &change.entity;
    let op = match change.kind {
        ChangeKind::Created => "create",
        ChangeKind::Updated => "update",
        ChangeKind::Deleted => "delete",
    };
    let mut out = Map::new();
    out.insert("op".into(), op.into());
    out.insert("id".into(), entity.id.clone().into());
    out.insert("type".into(), render::types(&entity.types, ctx));
    out.insert("at".into(), change.at.to_text().into());
    let mut attrs = Map::new();
    let mut observed = Map::new();
    let mut deleted = Vec::new();
    let mut put = |name: &str| {
        // The same instance the keyValues snapshot shows: the default one, else the first.
        let Some(instance) =
            entity.attrs.get(name).and_then(|i| i.iter().find(|a| a.dataset_id.is_none()).or(i.first()))
        else {
            return;
        };
        let short = ctx.compact(name);
        if let Some(at) = &instance.observed_at {
            observed.insert(short.clone(), at.to_text().into());
        }
        attrs.insert(short, render::key_value(instance, ctx, &opts));
    };
    match change.kind {
        ChangeKind::Created => {
            for name in entity.attrs.keys() {
                put(name);
            }
        }
        ChangeKind::Updated => {
            for a in &change.attrs {
                match a.kind {
                    AttrChangeKind::Created | AttrChangeKind::Updated => put(&a.name),
                    AttrChangeKind::Deleted if !entity.attrs.contains_key(&a.name) => {
                        deleted.push(Value::String(ctx.compact(&a.name)))
                    }
                    AttrChangeKind::Deleted => put(&a.name),
                }
            }
        }
        ChangeKind::Deleted => {}
    }
    if change.kind != ChangeKind::Deleted {
        out.insert("attrs".into(), attrs.into());
        out.insert("observedAt".into(), observed.into());
    }
    if !deleted.is_empty() {
        out.insert("deleted".into(), deleted.into());
    }
    Value::Object(out).to_string()
}

/// One SSE connection's queue; leaving the hub when the connection goes.
struct Subscription {
    hub: Arc<LiveHub>,
    id: u64,
    rx: mpsc::Receiver<Arc<Message>>,
    lagged: Arc<AtomicU64>,
    greeted: bool,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.clients.lock().remove(&self.id);
    }
}

impl Subscription {
    async fn next(&mut self) -> Option<Event> {
        if !self.greeted {
            self.greeted = true;
            return Some(Event::default().event("ready").data("{}"));
        }
        let dropped = self.lagged.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            return Some(Event::default().event("resync").data(json!({ "dropped": dropped }).to_string()));
        }
        let message = self.rx.recv().await?;
        Some(Event::default().data(message.data.as_str()))
    }
}

#[derive(serde::Deserialize)]
struct LiveParams {
    /// Comma-separated entity types (short names of the city @context, or IRIs).
    #[serde(rename = "type")]
    types: Option<String>,
}

pub fn router(hub: Arc<LiveHub>) -> Router {
    Router::new().route("/hanbat/v1/live", get(live)).route("/hanbat/v1/live/stats", get(stats)).with_state(hub)
}

async fn live(State(hub): State<Arc<LiveHub>>, Query(params): Query<LiveParams>) -> impl IntoResponse {
    let types = match params.types.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        Some(list) => {
            let ctx = hub.context().await;
            Some(list.split(',').map(str::trim).filter(|t| !t.is_empty()).map(|t| ctx.expand(t)).collect())
        }
        None => None,
    };
    let subscription = hub.subscribe(types);
    let stream = futures::stream::unfold(subscription, |mut s| async move {
        let event = s.next().await?;
        Some((Ok::<_, Infallible>(event), s))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn stats(State(hub): State<Arc<LiveHub>>) -> impl IntoResponse {
    Json(hub.stats())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hanbat_context::Contexts;
    use hanbat_model::{Attribute, Entity, Timestamp};
    use hanbat_store::Store;

    const LIGHT: &str = "https://smartdatamodels.org/dataModel.Streetlighting/Streetlight";
    const POWER: &str = "https://smartdatamodels.org/dataModel.Streetlighting/powerState";

    async fn broker() -> (Broker, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> = Arc::new(hanbat_store_sqlite::SqliteStore::open(dir.path()).expect("store"));
        let contexts = Arc::new(Contexts::new("http://127.0.0.1", None));
        let city = serde_json::from_str(hanbat_sim::CITY_CONTEXT).expect("city context");
        contexts.preload(hanbat_sim::CITY_CONTEXT_URL, city).expect("preload");
        (Broker::new(store, contexts, hanbat_broker::Limits::default()), dir)
    }

    fn created(n: usize) -> Change {
        let mut entity = Entity::new(format!("urn:ngsi-ld:Streetlight:test-{n:03}"), vec![LIGHT.into()]);
        entity.attrs.insert(POWER.into(), vec![Attribute::property(json!("on"))]);
        Change {
            tenant: String::new(),
            id: entity.id.clone(),
            kind: ChangeKind::Created,
            entity: Arc::new(entity),
            previous: None,
            at: Timestamp::now(),
            attrs: Vec::new(),
            history: None,
        }
    }

    async fn settle(hub: &LiveHub, expected: u64) {
        for _ in 0..200 {
            let s = hub.stats();
            let handled = s["delivered"].as_u64().unwrap_or(0) + s["dropped"].as_u64().unwrap_or(0);
            if handled >= expected {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("the fan-out did not handle {expected} events: {}", hub.stats());
    }

    #[tokio::test]
    async fn events_use_the_city_context_and_keyvalues() {
        let (broker, _dir) = broker().await;
        let hub = LiveHub::start(&broker, LiveConfig::default());
        let mut sub = hub.subscribe(None);
        broker.publish([created(1)].iter());
        assert_eq!(sub.next().await.map(|_| ()), Some(()), "ready comes first");
        let message = sub.rx.recv().await.expect("an event");
        let v: Value = serde_json::from_str(&message.data).expect("JSON");
        assert_eq!(v["op"], "create");
        assert_eq!(v["type"], "Streetlight");
        assert_eq!(v["attrs"]["powerState"], "on");
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_loses_events_counted_and_is_told_to_resync() {
        let (broker, _dir) = broker().await;
        let hub = LiveHub::start(&broker, LiveConfig { hub_buffer: 1024, client_buffer: 2 });
        let mut slow = hub.subscribe(None);
        let changes: Vec<Change> = (0..50).map(created).collect();
        // Publishing is synchronous and must not wait for any reader.
        let started = std::time::Instant::now();
        broker.publish(changes.iter());
        assert!(started.elapsed() < std::time::Duration::from_millis(200), "publish blocked");
        settle(&hub, 50).await;
        assert_eq!(hub.stats()["dropped"], 48);
        assert_eq!(hub.stats()["delivered"], 2);
        assert!(slow.next().await.is_some(), "ready");
        // The next event says how many were missed, before the two that were kept.
        let mut resync = false;
        let mut kept = 0;
        while let Ok(Some(_)) = tokio::time::timeout(std::time::Duration::from_millis(100), slow.next()).await {
            if kept == 0 && !resync {
                resync = true;
            } else {
                kept += 1;
            }
        }
        assert!(resync && kept == 2, "resync {resync}, kept {kept}");
        assert_eq!(slow.lagged.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_full_hub_queue_drops_for_every_client_without_blocking() {
        let (broker, _dir) = broker().await;
        let hub = LiveHub::start(&broker, LiveConfig { hub_buffer: 1, client_buffer: 100 });
        let a = hub.subscribe(None);
        let b = hub.subscribe(None);
        let changes: Vec<Change> = (0..10).map(created).collect();
        // On this current-thread runtime the fan-out cannot run during publish: 9 of 10 overflow.
        broker.publish(changes.iter());
        assert_eq!(a.lagged.load(Ordering::Relaxed), 9);
        assert_eq!(b.lagged.load(Ordering::Relaxed), 9);
        assert_eq!(hub.stats()["dropped"], 18);
    }

    #[tokio::test]
    async fn type_filter_and_departure() {
        let (broker, _dir) = broker().await;
        let hub = LiveHub::start(&broker, LiveConfig::default());
        let alerts_only = hub.subscribe(Some(vec!["https://smartdatamodels.org/dataModel.Alert/Alert".into()]));
        let everything = hub.subscribe(None);
        broker.publish([created(1)].iter());
        settle(&hub, 1).await;
        assert_eq!(hub.stats()["delivered"], 1, "only the unfiltered client gets a Streetlight");
        assert_eq!(hub.stats()["clients"], 2);
        drop(alerts_only);
        drop(everything);
        assert_eq!(hub.stats()["clients"], 0);
    }
}
