//! History as stores keep and answer it: every committed change is recorded (in the same
//! transaction) as attribute instances; the temporal API reads and edits them.

use crate::EntityQuery;
use hanbat_model::{Attribute, Entity};
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
    /// Instances to return by datasetId (`@none`: the default instance); `None`: all.
    pub dataset_ids: Option<Vec<String>>,
    pub time: TimeFilter,
    pub aggregation: Option<Aggregation>,
    /// Leave out entities that have no instance in the time window (queries do; retrieving one
    /// entity does not).
    pub skip_empty: bool,
    /// At most this many instances per entity (all attributes together); more are cut and the
    /// response says so (§6.3.10, 206 + Content-Range).
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
    /// Set when instances were cut at `max_instances`.
    pub page: Option<InstancePage>,
}

/// The part of an entity's history a cut response holds, in traversal order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstancePage {
    /// The instant of the first instance returned (the most recent one when descending).
    pub first: i64,
    /// The instant of the last instance returned.
    pub last: i64,
    /// Most recent first (`lastN`).
    pub descending: bool,
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

/// Edits of recorded history by the temporal API (§5.6.12–5.6.16); they never change the
/// current state of an entity. (Adding instances goes through the normal write path:
/// `WriteOp::Temporal`.)
#[derive(Debug, Clone)]
pub enum HistoryOp {
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
            Self::DeleteEntity { id }
            | Self::DeleteAttr { id, .. }
            | Self::PatchInstance { id, .. }
            | Self::DeleteInstance { id, .. } => id,
        }
    }
}

/// What a history edit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryOutcome {
    Updated,
}
