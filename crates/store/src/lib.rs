//! The storage boundary of Hanbat.
//!
//! One trait, [`Store`], with two implementations: `hanbat-store-sqlite` (embedded, the default:
//! one binary, one data folder) and `hanbat-store-postgres` (several broker nodes on one
//! database). Everything above this crate — the broker, the HTTP API, ingestion — talks to
//! `Arc<dyn Store>` only.
//!
//! What a store must guarantee:
//! - a batch of [`WriteOp`]s is applied with the semantics of [`ops::apply`], in order, in one
//!   transaction, and the call returns only once that transaction is durable;
//! - every op that changed something yields one [`Change`], in commit order per entity;
//! - tenants are isolated: no call with tenant A reads or writes tenant B's data;
//! - queries page in a stable order (creation order), so `offset`/`limit` never skip or repeat.

pub mod change;
pub mod ops;

pub use change::{AttrChange, AttrChangeKind, Change, ChangeKind};
pub use ops::{Applied, NotUpdated, Outcome, Status, WriteOp};

use async_trait::async_trait;
use hanbat_model::{Entity, Result, Timestamp};
use serde_json::Value;

/// The default tenant (no `NGSILD-Tenant` header).
pub const DEFAULT_TENANT: &str = "";

/// Which entities a query selects. Names are expanded. An empty selector selects everything.
#[derive(Debug, Clone, Default)]
pub struct EntitySelector {
    /// `id`: any of these ids.
    pub ids: Vec<String>,
    /// `idPattern`, already validated.
    pub id_pattern: Option<regex::Regex>,
    /// `type`: entities having any of these types (type expressions are in `filter`).
    pub types: Vec<String>,
    /// `attrs` used as a filter: entities having at least one of these attributes.
    pub with_any_attr: Vec<String>,
}

/// A query over entities: a selector, an optional in-memory predicate for what the store cannot
/// plan, and the page to return.
#[derive(Debug, Clone)]
pub struct EntityQuery {
    pub selector: EntitySelector,
    pub limit: usize,
    pub offset: usize,
    /// Also count every match (`count=true`).
    pub count: bool,
}

/// A predicate over entities, evaluated by the store on candidates its indexes selected.
pub type EntityFilter = std::sync::Arc<dyn Fn(&Entity) -> bool + Send + Sync>;

/// One page of entities, and the total number of matches when it was asked for.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub entities: Vec<Entity>,
    pub count: Option<u64>,
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
    Registration,
    RegistrationSubscription,
    HostedContext,
    EntityMap,
    Snapshot,
    IotService,
    IotDevice,
}

impl DocKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subscription => "subscription",
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

    /// Entities matching the query's selector and `filter` (what the store's indexes cannot
    /// answer), one page of them in creation order.
    async fn query(&self, tenant: &str, query: &EntityQuery, filter: Option<EntityFilter>) -> Result<Page>;

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

/// Whether `entity` matches the selector (used by stores for what their indexes left open, and
/// by the subscription matcher).
pub fn selector_matches(sel: &EntitySelector, entity: &Entity) -> bool {
    (sel.ids.is_empty() || sel.ids.contains(&entity.id))
        && sel.id_pattern.as_ref().is_none_or(|re| re.is_match(&entity.id))
        && (sel.types.is_empty() || entity.has_any_type(&sel.types))
        && (sel.with_any_attr.is_empty() || sel.with_any_attr.iter().any(|a| entity.attrs.contains_key(a)))
}
