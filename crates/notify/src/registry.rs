//! The live subscriptions: one [`Entry`] per subscription (its compiled [`Spec`], delivery queue
//! and status), and the [`Index`] that narrows a change down to the subscriptions that can match
//! it without looking at the others.

use crate::subscription::{DeliveryStatus, Subscription, Trigger};
use hanbat_context::Contexts;
use hanbat_model::jsonld::{self, CORE_CONTEXT_URL};
use hanbat_model::{Context, Entity, Result, Timestamp};
use hanbat_query::comparable_numbers;
use hanbat_query::q::Expr;
use hanbat_store::{Change, EntityQuery};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The @context of a subscription's notifications, resolved.
#[derive(Clone)]
pub struct NotifyContext {
    pub ctx: Arc<Context>,
    /// `@context` member of JSON-LD notifications.
    pub value: Value,
    /// URL for the `Link` header of JSON notifications.
    pub link_url: String,
}

impl NotifyContext {
    /// The @context of `sub`'s notifications: its `jsonldContext`, else the @context of the
    /// request that created it (`request_ctx` spares resolving it again when the request just
    /// did). An own @context that can no longer be fetched falls back to the core context, so
    /// that a subscription stored earlier still notifies.
    pub async fn resolve(contexts: &Contexts, sub: &Subscription, request_ctx: Option<Arc<Context>>) -> Result<Self> {
        match &sub.jsonld_context {
            Some(url) => {
                let value = Value::String(url.clone());
                let ctx = contexts.resolve(&value).await?;
                Ok(Self { ctx, value, link_url: url.clone() })
            }
            None => {
                let value =
                    if sub.context.is_null() { Value::String(CORE_CONTEXT_URL.into()) } else { sub.context.clone() };
                let ctx = match request_ctx {
                    Some(ctx) => ctx,
                    None => contexts.resolve(&value).await.unwrap_or_else(|e| {
                        tracing::warn!(subscription = %sub.id, error = %e.detail, "the subscription's @context is unavailable; notifying with the core context");
                        jsonld::core_context()
                    }),
                };
                Ok(Self { link_url: crate::context_url(contexts, &value), ctx, value })
            }
        }
    }
}

/// A subscription compiled for matching and rendering. Replaced as a whole on update.
pub struct Spec {
    /// The stored form; its `delivery` counters are stale (the entry's status is live).
    pub sub: Subscription,
    pub query: EntityQuery,
    /// Bit set of [`Trigger::bit`].
    pub triggers: u8,
    /// `q` follows relationships: evaluated by the sender, which can read linked entities.
    pub linked_q: bool,
    pub notify: NotifyContext,
}

impl Spec {
    pub fn fires(&self, t: Trigger) -> bool {
        self.triggers & t.bit() != 0
    }
}

/// A unit of work in a subscription's queue.
pub enum Job {
    /// A committed change that matched, and the trigger it fired.
    Change { change: Arc<Change>, trigger: Trigger },
    /// A periodic (`timeInterval`) notification: the matching entities at that instant.
    Snapshot { entities: Vec<Entity> },
}

#[derive(Default)]
pub struct Queue {
    pub jobs: VecDeque<Job>,
    /// A sender task is draining the queue.
    pub running: bool,
}

pub struct Entry {
    pub tenant: String,
    pub id: String,
    /// Creation instant in microseconds: the order of listings.
    pub created: i64,
    spec: RwLock<Arc<Spec>>,
    pub queue: Mutex<Queue>,
    pub status: Mutex<DeliveryStatus>,
    /// Status changed since the last write-back.
    pub dirty: AtomicBool,
    pub deleted: AtomicBool,
    /// Notifications dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Notifications given up after the last retry.
    pub abandoned: AtomicU64,
    /// Bumped on every update, so that a periodic task of an older version stops.
    pub generation: AtomicU64,
    /// Serialises writes of this subscription's document (update, status write-back, delete),
    /// so that an older snapshot never overwrites a newer one or revives a deleted one.
    pub persist: tokio::sync::Mutex<()>,
}

impl Entry {
    pub fn new(tenant: &str, spec: Spec) -> Self {
        let status = spec.sub.delivery.clone();
        Self {
            tenant: tenant.to_string(),
            id: spec.sub.id.clone(),
            created: spec.sub.created_at.as_ref().map(Timestamp::micros).unwrap_or(0),
            spec: RwLock::new(Arc::new(spec)),
            queue: Mutex::new(Queue::default()),
            status: Mutex::new(status),
            dirty: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            persist: tokio::sync::Mutex::new(()),
        }
    }

    pub fn spec(&self) -> Arc<Spec> {
        self.spec.read().clone()
    }

    pub fn set_spec(&self, spec: Spec) {
        *self.spec.write() = Arc::new(spec);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The subscription with its live status.
    pub fn snapshot(&self) -> Subscription {
        let mut sub = self.spec().sub.clone();
        sub.delivery = self.status.lock().clone();
        sub
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }
}

/// Entries by type, then attribute, then the number their `q` requires it to equal.
type ByTypeEqual = HashMap<String, HashMap<String, HashMap<u64, Vec<Arc<Entry>>>>>;

/// Where an entry is indexed, per tenant.
#[derive(Default)]
struct TenantIndex {
    by_id: HashMap<String, Vec<Arc<Entry>>>,
    by_type: HashMap<String, Vec<Arc<Entry>>>,
    /// Type-selected entries whose `q` requires a plain attribute to equal a number
    /// (`zone==3`): a change is checked only against those its entity can match, not against
    /// every subscription on its type.
    by_type_equal: ByTypeEqual,
    /// Subscriptions without `entities`, by watched attribute.
    by_attr: HashMap<String, Vec<Arc<Entry>>>,
    /// Selections no key bounds (`*`, type expressions with `;`): checked for every change.
    scan: Vec<Arc<Entry>>,
}

/// The keys under which a subscription is found.
#[derive(Debug, Default, PartialEq)]
pub struct Keys {
    pub ids: Vec<String>,
    pub types: Vec<String>,
    pub attrs: Vec<String>,
    pub scan: bool,
    /// With `types`: an attribute and the number (see [`number_key`]) that `q` requires it to
    /// equal; the types are then keyed on it too.
    pub equal: Option<(String, u64)>,
}

/// The key of a number in the equality index: `0` and `-0` are equal numbers.
fn number_key(n: f64) -> u64 {
    if n == 0.0 { 0 } else { n.to_bits() }
}

/// An equality that every match of `spec` must satisfy: a conjunct of its `q` that pins a plain
/// attribute to one number. Filters that follow relationships are left to the sender (see
/// [`crate::matcher`]), so their `q` keys nothing.
fn required_equality(spec: &Spec) -> Option<(String, u64)> {
    if spec.linked_q {
        return None;
    }
    spec.query.q.as_ref()?.conjuncts().find_map(|c| {
        let Expr::Term(term) = c else { return None };
        let range = term.numeric_range()?;
        match (range.lower, range.upper) {
            (Bound::Included(a), Bound::Included(b)) if a == b => Some((range.attr.to_string(), number_key(a))),
            _ => None,
        }
    })
}

impl Keys {
    /// Each selector is indexed by its most selective bound: ids, else plain types, else it
    /// goes to the scan list. A subscription without selectors is found by watched attribute.
    pub fn of(spec: &Spec) -> Self {
        let mut keys = Keys::default();
        if spec.query.entities.is_empty() {
            match &spec.sub.watched_attributes {
                Some(attrs) => keys.attrs = attrs.clone(),
                None => keys.scan = true,
            }
            return keys;
        }
        for s in &spec.query.entities {
            if !s.ids.is_empty() {
                keys.ids.extend(s.ids.iter().cloned());
            } else if let Some(types) = s.types.as_ref().and_then(|t| t.any_of()) {
                keys.types.extend(types.into_iter().map(str::to_string));
            } else {
                keys.scan = true;
            }
        }
        for list in [&mut keys.ids, &mut keys.types] {
            list.sort_unstable();
            list.dedup();
        }
        if !keys.types.is_empty() {
            keys.equal = required_equality(spec);
        }
        keys
    }
}

fn remove_from(map: &mut HashMap<String, Vec<Arc<Entry>>>, keys: &[String], entry: &Arc<Entry>) {
    for k in keys {
        if let Some(list) = map.get_mut(k) {
            list.retain(|e| !Arc::ptr_eq(e, entry));
            if list.is_empty() {
                map.remove(k);
            }
        }
    }
}

/// Every live subscription, by tenant and id, and the matching index.
#[derive(Default)]
pub struct Registry {
    entries: RwLock<HashMap<(String, String), Arc<Entry>>>,
    index: RwLock<HashMap<String, TenantIndex>>,
    count: AtomicU64,
}

impl Registry {
    pub fn len(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, tenant: &str, id: &str) -> Option<Arc<Entry>> {
        self.entries.read().get(&(tenant.to_string(), id.to_string())).cloned()
    }

    /// Adds an entry; `false` if the tenant already has a subscription with that id.
    pub fn insert(&self, entry: Arc<Entry>) -> bool {
        {
            let mut entries = self.entries.write();
            let key = (entry.tenant.clone(), entry.id.clone());
            if entries.contains_key(&key) {
                return false;
            }
            entries.insert(key, entry.clone());
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.index_add(&entry, &Keys::of(&entry.spec()));
        true
    }

    pub fn remove(&self, tenant: &str, id: &str) -> Option<Arc<Entry>> {
        let entry = self.entries.write().remove(&(tenant.to_string(), id.to_string()))?;
        self.count.fetch_sub(1, Ordering::Relaxed);
        self.index_remove(&entry, &Keys::of(&entry.spec()));
        Some(entry)
    }

    /// Replaces an entry's spec and re-indexes it.
    pub fn update(&self, entry: &Arc<Entry>, spec: Spec) {
        let old = Keys::of(&entry.spec());
        let new = Keys::of(&spec);
        entry.set_spec(spec);
        if old != new {
            self.index_remove(entry, &old);
            self.index_add(entry, &new);
        }
    }

    fn index_add(&self, entry: &Arc<Entry>, keys: &Keys) {
        let mut index = self.index.write();
        let t = index.entry(entry.tenant.clone()).or_default();
        let by_type: &[String] = if keys.equal.is_some() { &[] } else { &keys.types };
        for (map, list) in [(&mut t.by_id, &keys.ids[..]), (&mut t.by_type, by_type), (&mut t.by_attr, &keys.attrs[..])]
        {
            for k in list {
                map.entry(k.clone()).or_default().push(entry.clone());
            }
        }
        if let Some((attr, number)) = &keys.equal {
            for ty in &keys.types {
                let by_number = t.by_type_equal.entry(ty.clone()).or_default().entry(attr.clone()).or_default();
                by_number.entry(*number).or_default().push(entry.clone());
            }
        }
        if keys.scan {
            t.scan.push(entry.clone());
        }
    }

    fn index_remove(&self, entry: &Arc<Entry>, keys: &Keys) {
        let mut index = self.index.write();
        let Some(t) = index.get_mut(&entry.tenant) else { return };
        remove_from(&mut t.by_id, &keys.ids, entry);
        match &keys.equal {
            None => remove_from(&mut t.by_type, &keys.types, entry),
            Some((attr, number)) => {
                for ty in &keys.types {
                    let Some(by_attr) = t.by_type_equal.get_mut(ty) else { continue };
                    if let Some(by_number) = by_attr.get_mut(attr) {
                        if let Some(list) = by_number.get_mut(number) {
                            list.retain(|e| !Arc::ptr_eq(e, entry));
                            if list.is_empty() {
                                by_number.remove(number);
                            }
                        }
                        if by_number.is_empty() {
                            by_attr.remove(attr);
                        }
                    }
                    if by_attr.is_empty() {
                        t.by_type_equal.remove(ty);
                    }
                }
            }
        }
        remove_from(&mut t.by_attr, &keys.attrs, entry);
        t.scan.retain(|e| !Arc::ptr_eq(e, entry));
    }

    /// The subscriptions that may match `change`: indexed under its id, one of its types (before
    /// or after the change) or a changed attribute, plus the unindexed ones. Each at most once.
    pub fn candidates(&self, change: &Change, out: &mut Vec<Arc<Entry>>) {
        out.clear();
        let index = self.index.read();
        let Some(t) = index.get(&change.tenant) else { return };
        if let Some(list) = t.by_id.get(&change.id) {
            out.extend(list.iter().cloned());
        }
        let previous_types = change.previous.as_ref().map(|p| p.types.as_slice()).unwrap_or(&[]);
        // The matcher evaluates `q` on the entity as the change left it.
        let mut numbers = None;
        for ty in change.entity.types.iter().chain(previous_types) {
            if let Some(list) = t.by_type.get(ty) {
                out.extend(list.iter().cloned());
            }
            if let Some(by_attr) = t.by_type_equal.get(ty) {
                for (name, n, _) in numbers.get_or_insert_with(|| comparable_numbers(&change.entity)).iter() {
                    if let Some(list) = by_attr.get(*name).and_then(|by_number| by_number.get(&number_key(*n))) {
                        out.extend(list.iter().cloned());
                    }
                }
            }
        }
        if !t.by_attr.is_empty() {
            let names: Box<dyn Iterator<Item = &String>> = if change.attrs.is_empty() {
                Box::new(change.entity.attrs.keys())
            } else {
                Box::new(change.attrs.iter().map(|a| &a.name))
            };
            for name in names {
                if let Some(list) = t.by_attr.get(name) {
                    out.extend(list.iter().cloned());
                }
            }
        }
        out.extend(t.scan.iter().cloned());
        if out.len() > 1 {
            out.sort_unstable_by_key(|e| Arc::as_ptr(e) as usize);
            out.dedup_by(|a, b| Arc::ptr_eq(a, b));
        }
    }

    /// A tenant's entries in creation order.
    pub fn list(&self, tenant: &str) -> Vec<Arc<Entry>> {
        let mut list: Vec<Arc<Entry>> = self.entries.read().values().filter(|e| e.tenant == tenant).cloned().collect();
        list.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
        list
    }

    pub fn all(&self) -> Vec<Arc<Entry>> {
        self.entries.read().values().cloned().collect()
    }
}
