//! The change event: what one committed write did to one entity.
//!
//! Every write path (HTTP, batch, MQTT ingestion, simulator) produces exactly one [`Change`] per
//! modified entity, after the store committed it. Downstream consumers — history, subscription
//! matching, the dashboard's live feed, other broker nodes — read these events instead of hooking
//! into the write path.

use hanbat_model::{Entity, Timestamp};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttrChangeKind {
    Created,
    Updated,
    Deleted,
}

/// One attribute instance that the write created, updated or deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrChange {
    /// Expanded attribute name.
    pub name: String,
    pub dataset_id: Option<String>,
    pub kind: AttrChangeKind,
}

/// Serialisable so that a node can hand its changes to the other nodes of a cluster (the
/// PostgreSQL store's change log).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    pub tenant: String,
    pub id: String,
    pub kind: ChangeKind,
    /// The entity after the write; for a deletion, its last state.
    pub entity: Arc<Entity>,
    /// The entity before an update (`None` for creations and deletions).
    pub previous: Option<Arc<Entity>>,
    /// The instant of the write: every instance it touched has this `modifiedAt`.
    pub at: Timestamp,
    pub attrs: Vec<AttrChange>,
    /// Set by temporal writes: the instances to record in history (several per attribute over
    /// time, nulls for deletions) instead of the instances the change left in the entity.
    pub history: Option<hanbat_model::Attrs>,
}

impl Change {
    pub fn types(&self) -> &[String] {
        &self.entity.types
    }
}
