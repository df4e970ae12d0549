//! History as stores keep and answer it: every committed change is recorded (in the same
//! transaction) as attribute instances; the temporal API reads and edits them.

use crate::EntityQuery;
use hanbat_model::{Attribute, Attrs, Entity};
use hanbat_temporal::{AggrMethod, Aggregation, TimeFilter};
use indexmap::IndexMap;
use serde_json::Value;

/// A temporal query (§5.7.3, §5.7.4): which entities, which attributes, which instants.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    /// Entity selection; `q`, `scopeQ` and geo-queries are evaluated on the latest instance of
    /// each attribute. Its `limit`/`offset`/`count` page the entities.
    pub select: EntityQuery,
    /// Attributes to return (expanded); empty: all.
    pub attrs: Vec<String>,
    pub time: TimeFilter,
    pub aggregation: Option<Aggregation>,
    /// At most this many instances per attribute; more are cut (the response says so).
    pub max_instances: usize,
}

/// One entity's history as a query returns it.
#[derive(Debug, Clone, Default)]
pub struct TemporalEntity {
    /// Id, types, scopes, times; `attrs` holds the instances (each with `instance_id`,
    /// `observed_at`, `created_at`/`modified_at` = when recorded, `deleted_at` for deletions), in
    /// ascending order of the query's time property.
    pub entity: Entity,
    /// With aggregation instead of instances: per attribute, its kind and per method the rows
    /// `[value, startAt, endAt]`.
    pub aggregated: IndexMap<String, AggregatedAttr>,
    /// Whether some attribute had more instances than `max_instances` (cut).
    pub truncated: bool,
    /// The range of the time property over the instances returned, for `Content-Range`.
    pub range: Option<(i64, i64)>,
}

#[derive(Debug, Clone)]
pub struct AggregatedAttr {
    /// NGSI-LD attribute kind (`Property`, `Relationship`, …).
    pub kind: &'static str,
    pub methods: Vec<(AggrMethod, Vec<Value>)>,
}

#[derive(Debug, Clone, Default)]
pub struct HistoryPage {
    pub entities: Vec<TemporalEntity>,
    pub count: Option<u64>,
}

/// Writes of the temporal API (§5.6.11–5.6.16). They edit history only, never the current
/// state of an entity.
#[derive(Debug, Clone)]
pub enum HistoryOp {
    /// Create the temporal representation, or add instances to it.
    Upsert(Entity),
    /// Add instances of attributes to an existing temporal representation.
    AddAttrs {
        id: String,
        attrs: Attrs,
    },
    DeleteEntity {
        id: String,
    },
    /// Every instance of an attribute (of one datasetId, or of all with `all`).
    DeleteAttr {
        id: String,
        attr: String,
        dataset_id: Option<String>,
        all: bool,
    },
    /// Replaces members of one instance (by its `instanceId`).
    PatchInstance {
        id: String,
        attr: String,
        instance_id: String,
        /// Boxed: an attribute is far larger than the other variants.
        fragment: Box<Attribute>,
    },
    DeleteInstance {
        id: String,
        attr: String,
        instance_id: String,
    },
}

impl HistoryOp {
    pub fn entity_id(&self) -> &str {
        match self {
            Self::Upsert(e) => &e.id,
            Self::AddAttrs { id, .. }
            | Self::DeleteEntity { id }
            | Self::DeleteAttr { id, .. }
            | Self::PatchInstance { id, .. }
            | Self::DeleteInstance { id, .. } => id,
        }
    }
}

/// What a history write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryOutcome {
    Created,
    Updated,
}
