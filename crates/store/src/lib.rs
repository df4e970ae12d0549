//! The storage boundary of Hanbat.
//!
//! One trait, [`Store`], with two implementations: `hanbat-store-sqlite` (embedded, the default:
//! one binary, one data folder) and `hanbat-store-postgres` (several broker nodes on one
//! database). Everything above this crate — the broker, the HTTP API, ingestion — talks to
//! `Arc<dyn Store>` only.
//!
//! What a store must guarantee:
//! - every committed change is recorded as history (its attribute instances, deletions
//!   included) in the same transaction;
//! - a batch of [`WriteOp`]s is applied with the semantics of [`ops::apply`], in order, in one
//!   transaction, and the call returns only once that transaction is durable;
//! - every op that changed something yields one [`Change`], in commit order per entity;
//! - tenants are isolated: no call with tenant A reads or writes tenant B's data;
//! - queries page in a stable order (creation order), so `offset`/`limit` never skip or repeat.

pub mod change;
pub mod history;
pub mod ops;

pub use change::{AttrChange, AttrChangeKind, Change, ChangeKind};
pub use history::{
    AggregatedAttr, HistoryOp, HistoryOutcome, HistoryPage, HistoryQuery, HistoryScan, InstancePage, TemporalEntity,
};
pub use ops::{Applied, NotUpdated, Outcome, Status, WriteOp};

use async_trait::async_trait;
use hanbat_model::{Entity, Result, Timestamp};
use hanbat_query::{EntityOrder, GeoQuery, Pattern, Query, ScopeQuery, TypeQuery};
use serde_json::Value;

/// The default tenant (no `NGSILD-Tenant` header).
pub const DEFAULT_TENANT: &str = "";

/// One entity selector (§5.2.33 EntitySelector): ids, id pattern, type expression, all of which
/// must hold. Names are expanded. An empty selector selects everything.
#[derive(Debug, Clone, Default)]
pub struct EntitySelector {
    /// `id`: any of these ids.
    pub ids: Vec<String>,
    /// `idPattern`.
    pub id_pattern: Option<Pattern>,
    /// `type`: a type expression (`A,B`, `(A;B)|C`).
    pub types: Option<TypeQuery>,
}

impl EntitySelector {
    pub fn matches(&self, entity: &Entity) -> bool {
        (self.ids.is_empty() || self.ids.contains(&entity.id))
            && self.id_pattern.as_ref().is_none_or(|p| p.is_match(&entity.id))
            && self.types.as_ref().is_none_or(|t| t.matches(&entity.types))
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.id_pattern.is_none() && self.types.is_none()
    }
}

/// A query over entities: selectors, the query languages' filters, and the page to return.
#[derive(Debug, Clone, Default)]
pub struct EntityQuery {
    /// Entities matching any of these selectors (none: every entity).
    pub entities: Vec<EntitySelector>,
    /// `attrs` as a filter: entities having at least one of these attributes.
    pub with_any_attr: Vec<String>,
    pub q: Option<Query>,
    pub scope: Option<ScopeQuery>,
    pub geo: Option<GeoQuery>,
    pub limit: usize,
    pub offset: usize,
    /// Also count every match (`count=true`).
    pub count: bool,
    /// `orderBy=id` (§4.23 of V1.9): by entity id, descending when `Descending`; otherwise in
    /// creation order.
    pub order_by_id: Option<Order>,
    /// Any other `orderBy` (§4.23): the broker sorts the matches itself (see `Broker::query`);
    /// stores ignore it.
    pub order: Option<EntityOrder>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Ascending,
    Descending,
}

impl EntityQuery {
    /// Whether `entity` matches every part of the query (the reference semantics that a store's
    /// plan must reproduce, and what the subscription matcher evaluates).
    pub fn matches(&self, entity: &Entity) -> bool {
        (self.entities.is_empty() || self.entities.iter().any(|s| s.matches(entity)))
            && (self.with_any_attr.is_empty() || self.with_any_attr.iter().any(|a| entity.attrs.contains_key(a)))
            && self.scope.as_ref().is_none_or(|s| s.matches(&entity.scopes))
            && self.q.as_ref().is_none_or(|q| q.matches(entity))
            && self.geo.as_ref().is_none_or(|g| g.matches(entity))
    }

    /// The types that bound the result, when every selector names plain types: an index on
    /// types then answers the selection (candidates still go through [`Self::matches`]).
    pub fn candidate_types(&self) -> Option<Vec<&str>> {
        if self.entities.is_empty() {
            return None;
        }
        let mut all = Vec::new();
        for s in &self.entities {
            all.extend(s.types.as_ref()?.any_of()?);
        }
        all.sort_unstable();
        all.dedup();
        Some(all)
    }

    /// The ids that bound the result, when every selector lists ids.
    pub fn candidate_ids(&self) -> Option<Vec<&str>> {
        if self.entities.is_empty() || self.entities.iter().any(|s| s.ids.is_empty()) {
            return None;
        }
        Some(self.entities.iter().flat_map(|s| s.ids.iter().map(String::as_str)).collect())
    }
}

/// One page of entities, and the total number of matches when it was asked for.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub entities: Vec<Entity>,
    pub count: Option<u64>,
}

/// A query as a store runs it: the store streams candidate entities (the ids, types or tenant
/// its indexes narrow the query to) in page order through [`Self::offer`], which applies the
/// full predicate, keeps the page and counts; so the page and the count stay right whatever
/// part of the query the store evaluated itself.
pub struct PageScan<'q> {
    q: &'q EntityQuery,
    page: Vec<Entity>,
    matched: u64,
}

impl<'q> PageScan<'q> {
    pub fn new(q: &'q EntityQuery) -> Self {
        Self { q, page: Vec::new(), matched: 0 }
    }

    /// Returns `false` once the page is complete and no count is asked: stop reading.
    pub fn offer(&mut self, entity: Entity) -> bool {
        if !self.q.matches(&entity) {
            return true;
        }
        self.matched += 1;
        if self.matched as usize > self.q.offset && self.page.len() < self.q.limit {
            self.page.push(entity);
        }
        self.q.count || (self.matched as usize) < self.q.offset.saturating_add(self.q.limit)
    }

    pub fn finish(self) -> Page {
        Page { entities: self.page, count: self.q.count.then_some(self.matched) }
    }
}

/// How many entities of a type have an attribute of a kind; the source of the discovery API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeAttrCount {
    /// Expanded type.
    pub entity_type: String,
    /// Expanded attribute name, or `None` for the count of entities of the type.
    pub attr: Option<String>,
    /// NGSI-LD attribute kind (`Property`, `Relationship`, …); empty when `attr` is `None`.
    pub kind: String,
    pub entities: u64,
}

/// Collections of JSON documents the broker keeps besides entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocKind {
    Subscription,
    /// A subscription's delivery status (`timesSent`, `lastNotification`…), apart from its
    /// definition: the node delivering it writes the status while any node may update the
    /// definition, and neither write may overwrite the other.
    SubscriptionStatus,
    Registration,
    RegistrationSubscription,
    HostedContext,
    EntityMap,
    Snapshot,
    IotService,
    IotDevice,
}

impl DocKind {
    pub const ALL: [DocKind; 9] = [
        Self::Subscription,
        Self::SubscriptionStatus,
        Self::Registration,
        Self::RegistrationSubscription,
        Self::HostedContext,
        Self::EntityMap,
        Self::Snapshot,
        Self::IotService,
        Self::IotDevice,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subscription => "subscription",
            Self::SubscriptionStatus => "subscription-status",
            Self::Registration => "registration",
            Self::RegistrationSubscription => "csr-subscription",
            Self::HostedContext => "context",
            Self::EntityMap => "entity-map",
            Self::Snapshot => "snapshot",
            Self::IotService => "iot-service",
            Self::IotDevice => "iot-device",
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies `ops` in one durable transaction; one result per op, in order. An op that fails
    /// (e.g. `AlreadyExists`) does not abort the others. The outer error is a storage failure.
    async fn write(&self, tenant: &str, ops: Vec<WriteOp>) -> Result<Vec<Result<Applied>>>;

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Entity>>;

    /// Transient data (§4.22 of V1.9): applies [`WriteOp::Expire`] to every entity, in every
    /// tenant, that holds something (itself or an attribute instance) expiring at or before
    /// `now`, in one durable transaction; returns the changes, in commit order.
    async fn expire(&self, now: &Timestamp) -> Result<Vec<Change>>;

    /// Entities matching the query, one page of them in creation order.
    async fn query(&self, tenant: &str, query: &EntityQuery) -> Result<Page>;

    /// History of the entities the query selects (temporal API reads).
    async fn history(&self, tenant: &str, query: &HistoryQuery) -> Result<HistoryPage>;

    /// Edits history (temporal API writes), durably.
    async fn write_history(&self, tenant: &str, op: HistoryOp) -> Result<HistoryOutcome>;

    /// Per type: the entity count and, per attribute and kind, how many entities have it.
    async fn type_attr_counts(&self, tenant: &str) -> Result<Vec<TypeAttrCount>>;

    /// Whether the tenant holds (or has held) data. The default tenant always exists.
    async fn tenant_exists(&self, tenant: &str) -> Result<bool>;

    async fn put_doc(&self, tenant: &str, kind: DocKind, id: &str, doc: &Value) -> Result<()>;
    async fn get_doc(&self, tenant: &str, kind: DocKind, id: &str) -> Result<Option<Value>>;
    /// Every document of a kind, across tenants when `tenant` is `None`: (tenant, id, doc).
    async fn list_docs(&self, tenant: Option<&str>, kind: DocKind) -> Result<Vec<(String, String, Value)>>;
    /// Returns whether the document existed.
    async fn delete_doc(&self, tenant: &str, kind: DocKind, id: &str) -> Result<bool>;
}
