//! The broker service: what every entry point (HTTP API, MQTT ingestion, the simulator through
//! HTTP) calls to read and write context information.
//!
//! The write path is: the caller hands expanded, validated [`WriteOp`]s to [`Broker::write`] → the
//! store applies them in one durable transaction → each committed [`Change`] is published on the
//! change bus, in commit order, to every listener (subscription matcher, live feed, other nodes).
//! Listeners must not block: each one queues the change for its own worker.

use hanbat_context::Contexts;
use hanbat_model::{Entity, NgsiError, Result, Timestamp};
use hanbat_query::Query;
use hanbat_store::{Applied, Change, EntityQuery, EntitySelector, Page, Store, WriteOp};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;

/// The most candidates a query that the broker finishes in memory may have (see `Broker::query`).
pub const MAX_IN_MEMORY: usize = 100_000;

/// Receives every committed change. Called on the writer's task: enqueue and return.
pub type ChangeListener = Box<dyn Fn(&Arc<Change>) + Send + Sync>;

/// Limits that shape responses (§6.3.10: the broker's default and maximum page sizes).
#[derive(Debug, Clone)]
pub struct Limits {
    pub default_page: usize,
    pub max_page: usize,
    /// Attribute instances per entity in one temporal response (§6.3.10); more are cut (206).
    pub temporal_page: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // Orion-LD's figures for entity pages: 20 by default, at most 1000. For temporal pages,
        // 20 instances per entity, the default the conformance suite and TS 104-176 §6.4.7 assume.
        Self { default_page: 20, max_page: 1000, temporal_page: 20 }
    }
}

pub struct Broker {
    pub store: Arc<dyn Store>,
    pub contexts: Arc<Contexts>,
    pub limits: Limits,
    /// Each listener, and whether it also hears the changes other nodes committed.
    listeners: RwLock<Vec<(ChangeListener, bool)>>,
}

impl Broker {
    pub fn new(store: Arc<dyn Store>, contexts: Arc<Contexts>, limits: Limits) -> Self {
        Self { store, contexts, limits, listeners: RwLock::new(Vec::new()) }
    }

    /// Registers a listener for every change committed from now on, by this node or (several
    /// nodes on one store) another one.
    pub fn on_change(&self, listener: ChangeListener) {
        self.listeners.write().push((listener, true));
    }

    /// Registers a listener for the changes this node commits from now on: what must happen
    /// once per change, on the node that made it (e.g. sending a device its command).
    pub fn on_local_change(&self, listener: ChangeListener) {
        self.listeners.write().push((listener, false));
    }

    /// Applies `ops` (one durable transaction), publishes their changes, returns one result per op.
    pub async fn write(&self, tenant: &str, ops: Vec<WriteOp>) -> Result<Vec<Result<Applied>>> {
        let results = self.store.write(tenant, ops).await?;
        self.publish(results.iter().filter_map(|r| r.as_ref().ok()).filter_map(|a| a.change.as_ref()));
        Ok(results)
    }

    /// Publishes changes this node committed outside [`Self::write`] (expiry of transient
    /// entities).
    pub fn publish<'a>(&self, changes: impl Iterator<Item = &'a Change>) {
        self.publish_to(changes.map(|c| Arc::new(c.clone())), false);
    }

    /// Publishes changes another node committed (several nodes on one store) to the listeners
    /// of [`Self::on_change`].
    pub fn publish_from_peer(&self, changes: Vec<Change>) {
        self.publish_to(changes.into_iter().map(Arc::new), true);
    }

    fn publish_to(&self, changes: impl Iterator<Item = Arc<Change>>, from_peer: bool) {
        let listeners = self.listeners.read();
        if listeners.is_empty() {
            return;
        }
        for change in changes {
            for (listener, _) in listeners.iter().filter(|(_, everywhere)| *everywhere || !from_peer) {
                listener(&change);
            }
        }
    }

    /// An entity as it stands now: transient data past its `expiresAt` is gone from that
    /// instant (§4.22), even before the expiry sweep has removed it from the store.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Option<Entity>> {
        let now = Timestamp::now();
        Ok(self.store.get(tenant, id).await?.and_then(|e| unexpired(e, &now)))
    }

    pub async fn query(&self, tenant: &str, query: &EntityQuery) -> Result<Page> {
        let link_depth = query.q.as_ref().map_or(0, Query::link_depth);
        if query.order.is_some() || link_depth > 0 {
            return self.query_in_memory(tenant, query, link_depth).await;
        }
        self.query_store(tenant, query).await
    }

    /// The store's answer as it stands now (expired transient data left out).
    async fn query_store(&self, tenant: &str, query: &EntityQuery) -> Result<Page> {
        let mut page = self.store.query(tenant, query).await?;
        let now = Timestamp::now();
        page.entities = page.entities.into_iter().filter_map(|e| unexpired(e, &now)).collect();
        Ok(page)
    }

    /// The queries a store cannot finish alone: an `orderBy` other than the id (§4.23; stores
    /// page in creation or id order only) and a q on linked entities (§4.9 examples 13 and 14;
    /// a store judges one entity at a time). Every candidate is loaded, filtered and sorted
    /// here, then cut to the page. Candidates are bounded so that one query cannot take the
    /// broker's memory: past [`MAX_IN_MEMORY`] the client is asked to narrow the query.
    async fn query_in_memory(&self, tenant: &str, query: &EntityQuery, link_depth: usize) -> Result<Page> {
        let linked_q = query.q.as_ref().filter(|_| link_depth > 0);
        let candidates = EntityQuery {
            q: if linked_q.is_some() { None } else { query.q.clone() },
            order: None,
            offset: 0,
            limit: MAX_IN_MEMORY + 1,
            count: false,
            ..query.clone()
        };
        let mut entities = self.query_store(tenant, &candidates).await?.entities;
        if entities.len() > MAX_IN_MEMORY {
            return Err(NgsiError::bad_data(format!(
                "the query matches more than {MAX_IN_MEMORY} entities before ordering or following relationships; narrow it"
            )));
        }
        if let Some(q) = linked_q {
            let linked = self.linked_entities(tenant, &entities, link_depth).await?;
            entities.retain(|e| q.matches_with(e, &linked));
        }
        if let Some(order) = &query.order {
            entities.sort_by(|a, b| order.compare(a, b));
        }
        let count = query.count.then_some(entities.len() as u64);
        let entities = entities.into_iter().skip(query.offset).take(query.limit).collect();
        Ok(Page { entities, count })
    }

    /// The entities that `roots` link to, and those they link to, `depth` relationships deep.
    async fn linked_entities(&self, tenant: &str, roots: &[Entity], depth: usize) -> Result<HashMap<String, Entity>> {
        let targets = |entities: &[Entity]| -> Vec<String> {
            entities
                .iter()
                .flat_map(|e| e.attrs.values().flatten().flat_map(|a| a.value.targets()))
                .map(str::to_string)
                .collect()
        };
        let mut found = HashMap::new();
        let mut frontier = targets(roots);
        for _ in 0..depth {
            frontier.sort_unstable();
            frontier.dedup();
            frontier.retain(|id| !found.contains_key(id));
            if frontier.is_empty() {
                break;
            }
            let selector = EntitySelector { ids: std::mem::take(&mut frontier), ..EntitySelector::default() };
            let lookup = EntityQuery { limit: selector.ids.len(), entities: vec![selector], ..EntityQuery::default() };
            let page = self.query_store(tenant, &lookup).await?;
            frontier = targets(&page.entities);
            found.extend(page.entities.into_iter().map(|e| (e.id.clone(), e)));
        }
        Ok(found)
    }

    /// Removes the transient data due now and publishes the changes; returns how many entities
    /// changed. Called periodically by the server.
    pub async fn expire_due(&self) -> Result<usize> {
        let changes = self.store.expire(&Timestamp::now()).await?;
        self.publish(changes.iter());
        Ok(changes.len())
    }
}

fn unexpired(mut entity: Entity, now: &Timestamp) -> Option<Entity> {
    if entity.is_expired(now) {
        return None;
    }
    entity.drop_expired_attrs(now);
    Some(entity)
}
