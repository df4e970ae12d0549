//! NGSI-LD context source registrations (ETSI GS CIM 009 V1.8.1 §5.9, §5.10, §5.11) and
//! registration subscriptions.
//!
//! ```text
//! POST/PATCH/DELETE /csourceRegistrations ──▶ CSources::{create,update,delete}
//!     validate (registration.rs) ──▶ Store document (DocKind::Registration) ──▶ memory
//!     ──▶ each registration subscription of the tenant: matched before/after (matching.rs)
//!         ──▶ newlyMatching / updated / noLongerMatching ──▶ its delivery queue
//! delivery task (one per subscription) ──▶ hanbat_notify::transport (HTTP / MQTT) ──▶ status
//! ```
//!
//! Registration subscriptions are `hanbat_notify::Subscription`s (the same data type and
//! validation as entity subscriptions, §5.2.12) stored as [`DocKind::RegistrationSubscription`];
//! what differs is what they match (registrations, [`matching::RegQuery`]) and what they send
//! (registrations, with a `triggerReason`). Everything is loaded into memory at start: the
//! registrations of a broker are few, and discovery scans them.

pub mod matching;
pub mod registration;

pub use registration::{EntityInfo, Mode, Registration};

use hanbat_context::Contexts;
use hanbat_model::{Context, ErrorKind, NgsiError, Result, Timestamp};
use hanbat_notify::registry::NotifyContext;
use hanbat_notify::subscription::{DeliveryStatus, State, Subscription};
use hanbat_notify::transport::{Outgoing, Transports};
use hanbat_query::{Query, ScopeQuery};
use hanbat_store::{DocKind, Store};
use hanbat_temporal::{TimeProperty, TimeRel};
use matching::{RegQuery, TimeQuery};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Why a registration is in a notification (§5.3.2 CSourceNotification `triggerReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NewlyMatching,
    Updated,
    NoLongerMatching,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewlyMatching => "newlyMatching",
            Self::Updated => "updated",
            Self::NoLongerMatching => "noLongerMatching",
        }
    }

    /// The reason for a registration that matched `before` a change and matches `after` it.
    fn of(before: bool, after: bool) -> Option<Self> {
        match (before, after) {
            (false, true) => Some(Self::NewlyMatching),
            (true, true) => Some(Self::Updated),
            (true, false) => Some(Self::NoLongerMatching),
            (false, false) => None,
        }
    }
}

/// A registration subscription as stored: the subscription and its `temporalQ`, which entity
/// subscriptions do not support but registration subscriptions do (§5.2.12, on the intervals).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSub {
    #[serde(flatten)]
    sub: Subscription,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    temporal_q: Option<Map<String, Value>>,
}

/// Parses a `temporalQ` member (§5.2.21): `timerel`, `timeAt`, `endTimeAt`, `timeproperty`.
fn temporal_q(v: &Value) -> Result<(Map<String, Value>, TimeQuery)> {
    let Some(o) = v.as_object() else {
        return Err(NgsiError::bad_data(format!("temporalQ must be an object, not {v}")));
    };
    let text = |name: &str| -> Result<Option<&str>> {
        match o.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(NgsiError::bad_data(format!("temporalQ.{name} must be a string, not {other}"))),
        }
    };
    let rel = TimeRel::from_params(text("timerel")?, text("timeAt")?, text("endTimeAt")?)
        .map_err(|e| NgsiError::bad_data(format!("temporalQ: {}", e.detail)))?
        .ok_or_else(|| NgsiError::bad_data("temporalQ needs timerel and timeAt"))?;
    let property = text("timeproperty")?.map(TimeProperty::parse).transpose()?.unwrap_or_default();
    Ok((o.clone(), TimeQuery { property, rel }))
}

/// A registration subscription compiled for matching and notifying; replaced on update.
struct Live {
    stored: StoredSub,
    query: RegQuery,
    notify: NotifyContext,
}

struct SubEntry {
    tenant: String,
    live: RwLock<Arc<Live>>,
    status: Mutex<DeliveryStatus>,
    queue: mpsc::Sender<Value>,
    deleted: AtomicBool,
}

impl SubEntry {
    fn live(&self) -> Arc<Live> {
        self.live.read().clone()
    }

    /// The stored form with the live delivery status.
    fn snapshot(&self) -> StoredSub {
        let mut stored = self.live().stored.clone();
        stored.sub.delivery = self.status.lock().clone();
        stored
    }
}

/// Notifications waiting per registration subscription; beyond it new ones are dropped (the
/// registration API never waits for receivers).
const QUEUE: usize = 1000;

type Key = (String, String);

struct Inner {
    store: Arc<dyn Store>,
    contexts: Arc<Contexts>,
    transports: Transports,
    timeout: Duration,
    registrations: RwLock<HashMap<Key, Registration>>,
    subscriptions: RwLock<HashMap<Key, Arc<SubEntry>>>,
    /// Serialises writes (registrations and subscriptions): each reads the current state,
    /// checks it and writes the new one, and notifications must follow the write order.
    writes: tokio::sync::Mutex<()>,
}

/// The context source registration service.
pub struct CSources {
    inner: Arc<Inner>,
}

fn key(tenant: &str, id: &str) -> Key {
    (tenant.to_string(), id.to_string())
}

fn to_doc<T: Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| NgsiError::internal(e.to_string()))
}

/// Whether two registrations claim a common (entity id, attribute): both name the same entity
/// id, and their attributes overlap (no attribute names means every attribute).
fn overlaps(a: &Registration, b: &Registration) -> bool {
    a.information.iter().any(|ia| {
        b.information.iter().any(|ib| {
            let same_entity = ia.entities.iter().any(|ea| {
                ea.id.is_some() && ib.entities.iter().any(|eb| eb.id == ea.id && eb.entity_type == ea.entity_type)
            });
            let attrs = ia.all_attributes() || ib.all_attributes() || ia.names().any(|n| ib.names().any(|m| m == n));
            same_entity && attrs
        })
    })
}

impl CSources {
    /// Loads the stored registrations and registration subscriptions.
    pub async fn start(store: Arc<dyn Store>, contexts: Arc<Contexts>, timeout: Duration) -> Result<Arc<Self>> {
        let inner = Arc::new(Inner {
            store,
            contexts,
            transports: Transports::new(),
            timeout,
            registrations: RwLock::default(),
            subscriptions: RwLock::default(),
            writes: tokio::sync::Mutex::new(()),
        });
        let service = Arc::new(Self { inner });
        service.load().await?;
        Ok(service)
    }

    async fn load(&self) -> Result<()> {
        let inner = &self.inner;
        for (tenant, id, doc) in inner.store.list_docs(None, DocKind::Registration).await? {
            match serde_json::from_value::<Registration>(doc) {
                Ok(reg) => {
                    inner.registrations.write().insert(key(&tenant, &id), reg);
                }
                Err(e) => tracing::error!(%tenant, %id, error = %e, "a stored registration cannot be read; skipped"),
            }
        }
        for (tenant, id, doc) in inner.store.list_docs(None, DocKind::RegistrationSubscription).await? {
            let stored = match serde_json::from_value::<StoredSub>(doc) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(%tenant, %id, error = %e, "a stored registration subscription cannot be read; skipped");
                    continue;
                }
            };
            match self.compile(stored, None).await {
                Ok(live) => {
                    let entry = self.spawn_entry(&tenant, live);
                    inner.subscriptions.write().insert(key(&tenant, &id), entry.clone());
                    self.start_clock(&entry);
                }
                Err(e) => {
                    tracing::error!(%tenant, %id, error = %e.detail, "a stored registration subscription cannot be compiled; skipped")
                }
            }
        }
        Ok(())
    }

    /// Another node wrote or deleted a registration or a registration subscription: this
    /// node's copy is brought up to date. Nothing is notified: the node that made the change
    /// notified the registration subscriptions (every node holds them all).
    pub async fn refresh(&self, kind: DocKind, tenant: &str, id: &str) -> Result<()> {
        let doc = self.inner.store.get_doc(tenant, kind, id).await?;
        let _write = self.inner.writes.lock().await;
        let k = key(tenant, id);
        let unreadable = |e: serde_json::Error| NgsiError::internal(format!("stored {} '{id}': {e}", kind.as_str()));
        match (kind, doc) {
            (DocKind::Registration, Some(doc)) => {
                let reg = serde_json::from_value::<Registration>(doc).map_err(unreadable)?;
                self.inner.registrations.write().insert(k, reg);
            }
            (DocKind::Registration, None) => {
                self.inner.registrations.write().remove(&k);
            }
            (DocKind::RegistrationSubscription, Some(doc)) => {
                let stored = serde_json::from_value::<StoredSub>(doc).map_err(unreadable)?;
                let status = stored.sub.delivery.clone();
                let live = self.compile(stored, None).await?;
                let existing = self.inner.subscriptions.read().get(&k).cloned();
                match existing {
                    Some(entry) => {
                        *entry.live.write() = Arc::new(live);
                        *entry.status.lock() = status;
                        self.start_clock(&entry);
                    }
                    None => {
                        let entry = self.spawn_entry(tenant, live);
                        self.inner.subscriptions.write().insert(k, entry.clone());
                        self.start_clock(&entry);
                    }
                }
            }
            (DocKind::RegistrationSubscription, None) => {
                if let Some(entry) = self.inner.subscriptions.write().remove(&k) {
                    entry.deleted.store(true, Ordering::Release);
                }
            }
            _ => {}
        }
        Ok(())
    }

    // ---- registrations ----------------------------------------------------------------------

    /// `POST /csourceRegistrations`: validates, checks conflicts, stores; returns the id.
    pub async fn create(&self, tenant: &str, body: &Map<String, Value>, ctx: &Context) -> Result<String> {
        let reg = Registration::create(body, ctx)?;
        let _write = self.inner.writes.lock().await;
        self.drop_expired(tenant).await;
        if self.inner.registrations.read().contains_key(&key(tenant, &reg.id)) {
            return Err(NgsiError::already_exists(format!("registration '{}' already exists", reg.id)));
        }
        self.check_conflicts(tenant, &reg).await?;
        self.inner.store.put_doc(tenant, DocKind::Registration, &reg.id, &to_doc(&reg)?).await?;
        self.inner.registrations.write().insert(key(tenant, &reg.id), reg.clone());
        self.notify_change(tenant, None, Some(&reg));
        Ok(reg.id)
    }

    /// §4.3.6.3 and §5.9.2: an exclusive or redirect registration may not overlap an exclusive
    /// one; a redirect registration may not name a local entity; an exclusive one may not name
    /// an attribute that a local entity holds (those would be shadowed).
    async fn check_conflicts(&self, tenant: &str, reg: &Registration) -> Result<()> {
        use registration::Mode;
        if !reg.mode.claims() {
            return Ok(());
        }
        let existing = self.inner.registrations.read().iter().find_map(|((t, _), other)| {
            let claims_against = other.mode == Mode::Exclusive || reg.mode == Mode::Exclusive;
            (t == tenant && other.id != reg.id && other.mode.claims() && claims_against && overlaps(reg, other))
                .then(|| other.id.clone())
        });
        if let Some(other) = existing {
            return Err(NgsiError::new(
                ErrorKind::Conflict,
                format!("registration '{other}' already claims these entities and attributes exclusively"),
            ));
        }
        for info in &reg.information {
            for id in info.entities.iter().filter_map(|e| e.id.as_deref()) {
                let Some(local) = self.inner.store.get(tenant, id).await? else { continue };
                let shadowed = match reg.mode {
                    Mode::Redirect => true,
                    _ => info.names().any(|n| local.attrs.contains_key(n)),
                };
                if shadowed {
                    return Err(NgsiError::new(
                        ErrorKind::Conflict,
                        format!("entity '{id}' exists locally: a {} registration cannot cover it", reg.mode.as_str()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Forgets the tenant's registrations whose `expiresAt` has passed (§5.2.9: they cease to
    /// exist), in memory and in the store.
    async fn drop_expired(&self, tenant: &str) {
        let now = Timestamp::now();
        let expired: Vec<Registration> = {
            let mut regs = self.inner.registrations.write();
            let ids: Vec<Key> =
                regs.iter().filter(|((t, _), r)| t == tenant && r.is_expired(&now)).map(|(k, _)| k.clone()).collect();
            ids.iter().filter_map(|k| regs.remove(k)).collect()
        };
        for reg in expired {
            if let Err(e) = self.inner.store.delete_doc(tenant, DocKind::Registration, &reg.id).await {
                tracing::warn!(registration = %reg.id, error = %e.detail, "deleting an expired registration failed");
            }
            self.notify_change(tenant, Some(&reg), None);
        }
    }

    /// Whether the tenant has any registration (expired ones included): the one question every
    /// entity request asks, so it builds nothing.
    pub fn any(&self, tenant: &str) -> bool {
        self.inner.registrations.read().keys().any(|(t, _)| t == tenant)
    }

    /// The registration, unless unknown or expired.
    pub async fn get(&self, tenant: &str, id: &str) -> Option<Registration> {
        let found = self.inner.registrations.read().get(&key(tenant, id)).cloned()?;
        if found.is_expired(&Timestamp::now()) {
            let _write = self.inner.writes.lock().await;
            self.drop_expired(tenant).await;
            return None;
        }
        Some(found)
    }

    /// The tenant's live registrations that match, in creation order.
    pub async fn query(&self, tenant: &str, query: &RegQuery) -> Vec<Registration> {
        {
            let now = Timestamp::now();
            let any_expired =
                self.inner.registrations.read().iter().any(|((t, _), r)| t == tenant && r.is_expired(&now));
            if any_expired {
                let _write = self.inner.writes.lock().await;
                self.drop_expired(tenant).await;
            }
        }
        let mut out: Vec<Registration> = self
            .inner
            .registrations
            .read()
            .iter()
            .filter(|((t, _), r)| t == tenant && query.matches(r))
            .map(|(_, r)| r.clone())
            .collect();
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        out
    }

    /// `PATCH /csourceRegistrations/{id}` (§5.9.3).
    pub async fn update(&self, tenant: &str, id: &str, fragment: &Map<String, Value>, ctx: &Context) -> Result<()> {
        let _write = self.inner.writes.lock().await;
        self.drop_expired(tenant).await;
        let current = self.inner.registrations.read().get(&key(tenant, id)).cloned().ok_or_else(|| not_found(id))?;
        let next = current.update(fragment, ctx)?;
        self.check_conflicts(tenant, &next).await?;
        self.inner.store.put_doc(tenant, DocKind::Registration, id, &to_doc(&next)?).await?;
        self.inner.registrations.write().insert(key(tenant, id), next.clone());
        self.notify_change(tenant, Some(&current), Some(&next));
        Ok(())
    }

    /// `DELETE /csourceRegistrations/{id}`.
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<()> {
        let _write = self.inner.writes.lock().await;
        self.drop_expired(tenant).await;
        let removed = self.inner.registrations.write().remove(&key(tenant, id)).ok_or_else(|| not_found(id))?;
        self.inner.store.delete_doc(tenant, DocKind::Registration, id).await?;
        self.notify_change(tenant, Some(&removed), None);
        Ok(())
    }

    // ---- registration subscriptions --------------------------------------------------------

    /// Compiles a registration subscription: its selection as a [`RegQuery`], its notification
    /// @context resolved. `request_ctx` is the creating request's context, when there is one.
    async fn compile(&self, stored: StoredSub, request_ctx: Option<Arc<Context>>) -> Result<Live> {
        let sub = &stored.sub;
        let entity_query = sub.entity_query()?;
        let own_ctx = match &request_ctx {
            Some(ctx) => ctx.clone(),
            None => {
                self.inner.contexts.resolve(&sub.context).await.unwrap_or_else(|_| hanbat_model::jsonld::core_context())
            }
        };
        let mut filters: Vec<Query> = entity_query.q.into_iter().collect();
        if let Some(csf) = &sub.csf {
            filters.push(Query::parse(csf, &own_ctx)?);
        }
        let query = RegQuery {
            entities: entity_query.entities,
            attrs: sub.watched_attributes.clone().unwrap_or_default(),
            filters,
            scope: sub.scope_q.as_deref().map(ScopeQuery::parse).transpose()?,
            geo: entity_query.geo,
            time: stored
                .temporal_q
                .as_ref()
                .map(|t| temporal_q(&Value::Object(t.clone())))
                .transpose()?
                .map(|(_, t)| t),
        };
        let notify = NotifyContext::resolve(&self.inner.contexts, sub, request_ctx).await?;
        Ok(Live { stored, query, notify })
    }

    /// An entry for a compiled subscription, with its delivery task.
    fn spawn_entry(&self, tenant: &str, live: Live) -> Arc<SubEntry> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let entry = Arc::new(SubEntry {
            tenant: tenant.to_string(),
            status: Mutex::new(live.stored.sub.delivery.clone()),
            live: RwLock::new(Arc::new(live)),
            queue: tx,
            deleted: AtomicBool::new(false),
        });
        // The task holds the entry weakly: once the subscription is deleted and dropped, its
        // queue's sender goes with it and the task ends.
        tokio::spawn(deliver(Arc::downgrade(&self.inner), Arc::downgrade(&entry), rx));
        entry
    }

    /// `POST /csourceSubscriptions`: validates, stores, activates; sends the registrations that
    /// already match as `newlyMatching` (§5.11.7). Returns the id.
    pub async fn subscribe(
        &self,
        tenant: &str,
        body: &Map<String, Value>,
        ctx: Arc<Context>,
        context: Value,
    ) -> Result<String> {
        let mut body = body.clone();
        let temporal = body.remove("temporalQ").map(|t| temporal_q(&t)).transpose()?.map(|(raw, _)| raw);
        let sub = Subscription::create(&body, &ctx, context)?;
        let id = sub.id.clone();
        let live = self.compile(StoredSub { sub, temporal_q: temporal }, Some(ctx)).await?;
        let _write = self.inner.writes.lock().await;
        if self.inner.subscriptions.read().contains_key(&key(tenant, &id)) {
            return Err(NgsiError::already_exists(format!("subscription '{id}' already exists")));
        }
        self.inner.store.put_doc(tenant, DocKind::RegistrationSubscription, &id, &to_doc(&live.stored)?).await?;
        let entry = self.spawn_entry(tenant, live);
        self.inner.subscriptions.write().insert(key(tenant, &id), entry.clone());
        self.drop_expired(tenant).await;
        self.notify_matching(&entry, None);
        Ok(id)
    }

    /// The subscription as a response body, names compacted with `ctx`.
    pub fn subscription(&self, tenant: &str, id: &str, ctx: &Context) -> Option<Map<String, Value>> {
        let entry = self.inner.subscriptions.read().get(&key(tenant, id)).cloned()?;
        Some(self.render_subscription(&entry, ctx))
    }

    /// A page of the tenant's registration subscriptions in creation order, and their number.
    pub fn subscriptions(
        &self,
        tenant: &str,
        offset: usize,
        limit: usize,
        ctx: &Context,
    ) -> (Vec<Map<String, Value>>, usize) {
        let mut entries: Vec<Arc<SubEntry>> =
            self.inner.subscriptions.read().iter().filter(|((t, _), _)| t == tenant).map(|(_, e)| e.clone()).collect();
        entries.sort_by_cached_key(|e| {
            let live = e.live();
            (live.stored.sub.created_at.as_ref().map(Timestamp::micros), live.stored.sub.id.clone())
        });
        let total = entries.len();
        (entries.iter().skip(offset).take(limit).map(|e| self.render_subscription(e, ctx)).collect(), total)
    }

    fn render_subscription(&self, entry: &SubEntry, ctx: &Context) -> Map<String, Value> {
        let stored = entry.snapshot();
        let mut out = stored.sub.render(ctx, "", &Timestamp::now());
        // Registrations are notified by triggerReason; the entity triggers that the
        // Subscription type renders by default do not apply to them. The default
        // `jsonldContext` is left out as well: the registration subscription of V1.8.1
        // (§5.2.12 as used by §5.11) reports only what the client set.
        if stored.sub.triggers.is_none() {
            out.remove("notificationTrigger");
        }
        if stored.sub.jsonld_context.is_none() {
            out.remove("jsonldContext");
        }
        // The counters are optional members (§5.2.14); a count of zero says nothing.
        if let Some(Value::Object(n)) = out.get_mut("notification") {
            n.retain(|k, v| !(matches!(k.as_str(), "timesSent" | "timesFailed") && *v == json!(0)));
        }
        if let Some(t) = stored.temporal_q {
            out.insert("temporalQ".into(), Value::Object(t));
        }
        out
    }

    /// `PATCH /csourceSubscriptions/{id}`: registrations that match only now are sent as
    /// `newlyMatching`.
    pub async fn update_subscription(
        &self,
        tenant: &str,
        id: &str,
        fragment: &Map<String, Value>,
        ctx: Arc<Context>,
    ) -> Result<()> {
        let _write = self.inner.writes.lock().await;
        let entry = self.inner.subscriptions.read().get(&key(tenant, id)).cloned().ok_or_else(|| not_found_sub(id))?;
        let before = entry.live();
        let mut fragment = fragment.clone();
        let mut temporal = before.stored.temporal_q.clone();
        match fragment.remove("temporalQ") {
            Some(Value::Null) => temporal = None,
            Some(t) => temporal = Some(temporal_q(&t)?.0),
            None => {}
        }
        let mut sub = before.stored.sub.update(&fragment, &ctx)?;
        sub.delivery = entry.status.lock().clone();
        let live = self.compile(StoredSub { sub, temporal_q: temporal }, None).await?;
        self.inner.store.put_doc(tenant, DocKind::RegistrationSubscription, id, &to_doc(&live.stored)?).await?;
        *entry.live.write() = Arc::new(live);
        self.drop_expired(tenant).await;
        self.notify_matching(&entry, Some(&before.query));
        Ok(())
    }

    /// `DELETE /csourceSubscriptions/{id}`: pending notifications are dropped.
    pub async fn unsubscribe(&self, tenant: &str, id: &str) -> Result<()> {
        let _write = self.inner.writes.lock().await;
        let entry = self.inner.subscriptions.write().remove(&key(tenant, id)).ok_or_else(|| not_found_sub(id))?;
        entry.deleted.store(true, Ordering::Release);
        self.inner.store.delete_doc(tenant, DocKind::RegistrationSubscription, id).await?;
        Ok(())
    }

    // ---- notifications ---------------------------------------------------------------------

    /// Sends the registrations that match `entry` (and did not match `before`, the query of
    /// its previous version) as `newlyMatching`; a periodic subscription starts its clock.
    fn notify_matching(&self, entry: &Arc<SubEntry>, before: Option<&RegQuery>) {
        let live = entry.live();
        if live.stored.sub.state(&Timestamp::now()) == State::Active {
            send_matching(&self.inner, entry, &live, before);
        }
        self.start_clock(entry);
    }

    /// Starts the clock of the live version of a `timeInterval` subscription.
    fn start_clock(&self, entry: &Arc<SubEntry>) {
        let live = entry.live();
        if let Some(secs) = live.stored.sub.time_interval {
            tokio::spawn(periodic(Arc::downgrade(&self.inner), entry.clone(), live, Duration::from_secs_f64(secs)));
        }
    }

    /// Notifies the tenant's subscriptions of a registration that changed from `before` to
    /// `after` (`None`: did not exist / no longer exists).
    fn notify_change(&self, tenant: &str, before: Option<&Registration>, after: Option<&Registration>) {
        let entries: Vec<Arc<SubEntry>> =
            self.inner.subscriptions.read().iter().filter(|((t, _), _)| t == tenant).map(|(_, e)| e.clone()).collect();
        let now = Timestamp::now();
        for entry in entries {
            let live = entry.live();
            if live.stored.sub.state(&now) != State::Active || live.stored.sub.time_interval.is_some() {
                continue;
            }
            let matched = |r: Option<&Registration>| r.is_some_and(|r| live.query.matches(r));
            let Some(reason) = Reason::of(matched(before), matched(after)) else { continue };
            // What is sent is the registration as it is now, or as it was when it is gone.
            let Some(reg) = after.or(before) else { continue };
            enqueue(&entry, &live, reason, std::slice::from_ref(reg));
        }
    }
}

/// Queues the registrations of the tenant that match `live` and did not match `before`.
fn send_matching(inner: &Inner, entry: &SubEntry, live: &Live, before: Option<&RegQuery>) {
    let mut matching: Vec<Registration> = inner
        .registrations
        .read()
        .iter()
        .filter(|((t, _), r)| *t == entry.tenant && live.query.matches(r) && before.is_none_or(|b| !b.matches(r)))
        .map(|(_, r)| r.clone())
        .collect();
    matching.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
    if !matching.is_empty() {
        enqueue(entry, live, Reason::NewlyMatching, &matching);
    }
}

/// The clock of a `timeInterval` subscription (§5.2.12): every period, the matching
/// registrations, as long as this version of the subscription is the live one.
async fn periodic(inner: std::sync::Weak<Inner>, entry: Arc<SubEntry>, live: Arc<Live>, period: Duration) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if entry.deleted.load(Ordering::Acquire) || !Arc::ptr_eq(&entry.live(), &live) {
            return;
        }
        if live.stored.sub.state(&Timestamp::now()) == State::Active {
            send_matching(&inner, &entry, &live, None);
        }
    }
}

/// Builds the notification (§5.3.2 CSourceNotification: type `ContextSourceNotification`,
/// `triggerReason`, the registrations in `data`, each cut to its RegistrationInfo relevant to
/// the subscription (§5.11.7), names compacted with the subscription's @context) and queues it.
fn enqueue(entry: &SubEntry, live: &Live, reason: Reason, regs: &[Registration]) {
    let json_ld = live.stored.sub.notification.endpoint.wants_json_ld();
    let data: Vec<Value> = regs
        .iter()
        .map(|r| {
            let mut o = live.query.relevant_part(r).render(&live.notify.ctx, false);
            if json_ld {
                o.insert("@context".into(), live.notify.value.clone());
            }
            Value::Object(o)
        })
        .collect();
    let mut body = Map::new();
    body.insert("id".into(), json!(format!("urn:ngsi-ld:Notification:{}", uuid::Uuid::new_v4())));
    body.insert("type".into(), json!("ContextSourceNotification"));
    body.insert("subscriptionId".into(), json!(live.stored.sub.id));
    body.insert("notifiedAt".into(), json!(Timestamp::now().to_text()));
    body.insert("triggerReason".into(), json!(reason.as_str()));
    body.insert("data".into(), Value::Array(data));
    if json_ld {
        body.insert("@context".into(), live.notify.value.clone());
    }
    if entry.queue.try_send(Value::Object(body)).is_err() {
        tracing::warn!(subscription = %live.stored.sub.id, "registration notification queue full: notification dropped");
    }
}

/// The delivery task of one registration subscription: sends its notifications in order,
/// one attempt each (a registration subscription reports the registrations as they are at the
/// next change), records the status and writes it back.
async fn deliver(inner: std::sync::Weak<Inner>, entry: std::sync::Weak<SubEntry>, mut rx: mpsc::Receiver<Value>) {
    while let Some(body) = rx.recv().await {
        let (Some(inner), Some(entry)) = (inner.upgrade(), entry.upgrade()) else { return };
        if entry.deleted.load(Ordering::Acquire) {
            return;
        }
        let live = entry.live();
        let endpoint = &live.stored.sub.notification.endpoint;
        let json_ld = endpoint.wants_json_ld();
        let out = Outgoing {
            body,
            content_type: if json_ld { "application/ld+json" } else { "application/json" },
            link: (!json_ld).then(|| hanbat_context::link_header(&live.notify.link_url)),
            tenant: (!entry.tenant.is_empty()).then(|| entry.tenant.clone()),
        };
        let timeout = endpoint.timeout.filter(|t| *t > 0.0).map(|ms| Duration::from_secs_f64(ms / 1000.0));
        let result = inner.transports.send(endpoint, &out, timeout.unwrap_or(inner.timeout)).await;
        if let Err(why) = &result {
            tracing::debug!(subscription = %live.stored.sub.id, uri = %endpoint.uri, error = %why, "registration notification failed");
        }
        entry.status.lock().record(result.is_ok(), Timestamp::now());
        let _write = inner.writes.lock().await;
        if entry.deleted.load(Ordering::Acquire) {
            return;
        }
        let doc = match to_doc(&entry.snapshot()) {
            Ok(d) => d,
            Err(_) => continue,
        };
        let id = &live.stored.sub.id;
        if let Err(e) = inner.store.put_doc(&entry.tenant, DocKind::RegistrationSubscription, id, &doc).await {
            tracing::warn!(subscription = %id, error = %e.detail, "writing the registration subscription status failed");
        }
    }
}

fn not_found(id: &str) -> NgsiError {
    NgsiError::not_found(format!("registration '{id}' does not exist"))
}

fn not_found_sub(id: &str) -> NgsiError {
    NgsiError::not_found(format!("subscription '{id}' does not exist"))
}
