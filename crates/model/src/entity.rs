//! Entities and attributes in Hanbat's internal form.
//!
//! Invariants, relied on by every crate above this one:
//! - every name is **expanded**: entity types, attribute and sub-attribute names, vocabulary
//!   values are full IRIs; core members (`value`, `observedAt`, …) are fields, never map keys;
//! - an attribute name maps to a non-empty list of **instances**, at most one per `datasetId`
//!   (the default instance has none);
//! - the serde form of these types is the storage form (short keys, nothing empty written), not
//!   an NGSI-LD representation: [`crate::render`] produces those.

use crate::time::Timestamp;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Attributes of an entity (or sub-attributes of an attribute) by expanded name.
pub type Attrs = IndexMap<String, Vec<Attribute>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Entity {
    pub id: String,
    #[serde(rename = "t")]
    pub types: Vec<String>,
    #[serde(rename = "s", default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(rename = "a", default, skip_serializing_if = "IndexMap::is_empty")]
    pub attrs: Attrs,
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<Timestamp>,
    /// Only in temporal and notification representations of a deleted entity.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<Timestamp>,
    /// Transient entities (§4.20 of V1.8): the broker deletes the entity at this instant.
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Only in a fragment: its `expiresAt` was `urn:ngsi-ld:null` (§5.5.4), so the entity
    /// stops being transient.
    #[serde(skip)]
    pub clears_expiry: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribute {
    #[serde(rename = "v")]
    pub value: AttrValue,
    #[serde(rename = "di", default, skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<String>,
    #[serde(rename = "oa", default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<Timestamp>,
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub unit_code: Option<String>,
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<Timestamp>,
    /// Temporal representation: the id of this instance in the history.
    #[serde(rename = "ii", default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Temporal representation of a deletion.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<Timestamp>,
    /// Notifications with `showChanges`: the value before the change.
    #[serde(rename = "pv", default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Box<AttrValue>>,
    /// Sub-attributes (properties and relationships of this attribute), by expanded name.
    #[serde(rename = "sa", default, skip_serializing_if = "IndexMap::is_empty")]
    pub sub: Attrs,
    /// Transient attribute instances (§4.22 of V1.9): the broker deletes the instance at this instant.
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// `valueType` (non-reified, expanded): the datatype of the value.
    #[serde(rename = "vt", default, skip_serializing_if = "Option::is_none")]
    pub value_type: Option<String>,
    /// `entityIdSealed` / `entityTypeSealed` of an `ngsildproof` Property (§4.5.2.2 of V1.9).
    #[serde(rename = "sl", default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<Box<Sealed>>,
}

/// The non-reified members that seal a proof to its entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Sealed {
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    /// Expanded types.
    #[serde(rename = "t", default, skip_serializing_if = "Vec::is_empty")]
    pub entity_types: Vec<String>,
}

/// The kind of an attribute with its kind-specific payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AttrValue {
    /// `value`: any JSON value other than null.
    #[serde(rename = "P")]
    Property(Value),
    /// `object`: an IRI (or, as V1.8 allows, an array of IRIs); `objectType`: expanded types.
    #[serde(rename = "R")]
    Relationship {
        #[serde(rename = "o")]
        object: Value,
        #[serde(rename = "ot", default, skip_serializing_if = "Vec::is_empty")]
        object_type: Vec<String>,
    },
    /// `value`: a GeoJSON geometry.
    #[serde(rename = "G")]
    GeoProperty(Value),
    /// `languageMap`: language tag → string or array of strings.
    #[serde(rename = "L")]
    LanguageProperty(Map<String, Value>),
    /// `vocab`: one expanded IRI or an array of them.
    #[serde(rename = "V")]
    VocabProperty(Value),
    /// `valueList`.
    #[serde(rename = "LP")]
    ListProperty(Vec<Value>),
    /// `objectList`: IRIs.
    #[serde(rename = "LR")]
    ListRelationship(Vec<Value>),
    /// `json`: an opaque JSON value, never expanded.
    #[serde(rename = "J")]
    JsonProperty(Value),
    /// In a merge or update fragment only: delete this attribute (JSON `null` or `urn:ngsi-ld:null`).
    #[serde(rename = "N")]
    Null,
}

/// The NGSI-LD null marker of merge-patch (§4.5.9 of V1.8).
pub const NGSI_LD_NULL: &str = "urn:ngsi-ld:null";

impl AttrValue {
    /// The entity ids a Relationship (`object`: one URI or, since V1.8, an array of them) or a
    /// ListRelationship links to; nothing for other kinds.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        let items: &[serde_json::Value] = match self {
            Self::Relationship { object: serde_json::Value::Array(items), .. } => items,
            Self::Relationship { object, .. } => std::slice::from_ref(object),
            Self::ListRelationship(items) => items,
            _ => &[],
        };
        items.iter().filter_map(|v| v.as_str().or_else(|| v.get("object").and_then(serde_json::Value::as_str)))
    }

    /// The NGSI-LD type name (`Property`, `Relationship`, …) of this kind.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Property(_) | Self::Null => "Property",
            Self::Relationship { .. } => "Relationship",
            Self::GeoProperty(_) => "GeoProperty",
            Self::LanguageProperty(_) => "LanguageProperty",
            Self::VocabProperty(_) => "VocabProperty",
            Self::ListProperty(_) => "ListProperty",
            Self::ListRelationship(_) => "ListRelationship",
            Self::JsonProperty(_) => "JsonProperty",
        }
    }

    /// The expanded IRI of the type name, as discovery (`/attributes`) reports it.
    pub fn type_iri(&self) -> String {
        format!("{}{}", crate::jsonld::NGSI_LD, self.type_name())
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }
}

impl Attribute {
    pub fn new(value: AttrValue) -> Self {
        Self {
            value,
            dataset_id: None,
            observed_at: None,
            unit_code: None,
            created_at: None,
            modified_at: None,
            instance_id: None,
            deleted_at: None,
            previous: None,
            sub: Attrs::new(),
            expires_at: None,
            value_type: None,
            sealed: None,
        }
    }

    pub fn property(value: Value) -> Self {
        Self::new(AttrValue::Property(value))
    }

    pub fn relationship(object: impl Into<String>) -> Self {
        Self::new(AttrValue::Relationship { object: Value::String(object.into()), object_type: Vec::new() })
    }

    /// Sets `createdAt` (if unset) and `modifiedAt` here and in every sub-attribute.
    /// Like [`Entity::stamp_missing`], for an instance and its sub-attributes.
    pub fn stamp_missing(&mut self, now: &Timestamp) {
        self.created_at.get_or_insert_with(|| now.clone());
        self.modified_at.get_or_insert_with(|| now.clone());
        for sub in self.sub.values_mut().flatten() {
            sub.stamp_missing(now);
        }
    }

    pub fn stamp(&mut self, now: &Timestamp) {
        if self.created_at.is_none() {
            self.created_at = Some(now.clone());
        }
        self.modified_at = Some(now.clone());
        for sub in self.sub.values_mut().flatten() {
            sub.stamp(now);
        }
    }

    /// Whether this instance and `other` carry the same data (system times and instance ids
    /// aside): an update that changes nothing is not a change for `onChange` notifications.
    pub fn same_content(&self, other: &Attribute) -> bool {
        self.value == other.value
            && self.dataset_id == other.dataset_id
            && self.observed_at == other.observed_at
            && self.unit_code == other.unit_code
            && self.expires_at == other.expires_at
            && self.value_type == other.value_type
            && self.sealed == other.sealed
            && self.sub.len() == other.sub.len()
            && self.sub.iter().all(|(name, mine)| {
                other.sub.get(name).is_some_and(|theirs| {
                    mine.len() == theirs.len() && mine.iter().zip(theirs).all(|(a, b)| a.same_content(b))
                })
            })
    }
}

impl Entity {
    pub fn new(id: impl Into<String>, types: Vec<String>) -> Self {
        Self { id: id.into(), types, ..Self::default() }
    }

    /// The instance of `name` with `dataset_id` (`None` = the default instance).
    pub fn instance(&self, name: &str, dataset_id: Option<&str>) -> Option<&Attribute> {
        self.attrs.get(name)?.iter().find(|a| a.dataset_id.as_deref() == dataset_id)
    }

    /// Whether the entity has one of `types` (expanded).
    pub fn has_any_type(&self, types: &[String]) -> bool {
        self.types.iter().any(|t| types.contains(t))
    }

    /// The earliest instant at which the entity or one of its attribute instances expires.
    pub fn next_expiry(&self) -> Option<&Timestamp> {
        let attrs = self.attrs.values().flatten().filter_map(|a| a.expires_at.as_ref());
        self.expires_at.iter().chain(attrs).min()
    }

    /// Whether the whole entity has expired at `now` (§4.22: it is gone from that instant on).
    pub fn is_expired(&self, now: &Timestamp) -> bool {
        self.expires_at.as_ref().is_some_and(|at| at <= now)
    }

    /// Drops the attribute instances that expired at `now`; returns whether any was dropped.
    pub fn drop_expired_attrs(&mut self, now: &Timestamp) -> bool {
        let before: usize = self.attrs.values().map(Vec::len).sum();
        self.attrs.retain(|_, instances| {
            instances.retain(|a| a.expires_at.as_ref().is_none_or(|at| at > now));
            !instances.is_empty()
        });
        before != self.attrs.values().map(Vec::len).sum::<usize>()
    }

    /// Sets the system times of a freshly created entity and all its attributes.
    /// Stamps `now` where a system timestamp is missing, keeping those present (a copy of an
    /// entity keeps its history's times).
    pub fn stamp_missing(&mut self, now: &Timestamp) {
        self.created_at.get_or_insert_with(|| now.clone());
        self.modified_at.get_or_insert_with(|| now.clone());
        for attr in self.attrs.values_mut().flatten() {
            attr.stamp_missing(now);
        }
    }

    pub fn stamp_created(&mut self, now: &Timestamp) {
        self.created_at = Some(now.clone());
        self.modified_at = Some(now.clone());
        for attr in self.attrs.values_mut().flatten() {
            attr.created_at = None;
            attr.stamp(now);
        }
    }
}
