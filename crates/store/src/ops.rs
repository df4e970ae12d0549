//! Write operations and their NGSI-LD semantics, independent of any storage engine.
//!
//! A store executes a batch of [`WriteOp`]s in one transaction: for each op it loads the current
//! entity, calls [`apply`] (pure: no I/O) and persists what comes out. Keeping the semantics here
//! means the embedded and the PostgreSQL stores cannot disagree on what a merge or an append does.

use crate::change::{AttrChange, AttrChangeKind, Change, ChangeKind};
use hanbat_model::{AttrValue, Attribute, Attrs, Entity, NgsiError, Result, Timestamp};
use std::sync::Arc;

/// One write, as the API layer hands it to the store. Names are expanded.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// `POST /entities`, batch create: fails if the entity exists.
    Create(Entity),
    /// Batch upsert: create, or replace the entity (`replace`) / update its attributes.
    Upsert { entity: Entity, replace: bool },
    /// `PUT /entities/{id}`: replace every attribute, keep `createdAt`.
    Replace(Entity),
    /// `PATCH /entities/{id}`, batch merge: JSON merge-patch of attributes (null deletes).
    Merge { id: String, fragment: Entity },
    /// `POST /entities/{id}/attrs`, batch update: add attributes, overwrite existing ones
    /// unless `overwrite` is false (`options=noOverwrite`).
    Append { id: String, fragment: Entity, overwrite: bool },
    /// `PATCH /entities/{id}/attrs`: replace existing attributes only.
    Update { id: String, fragment: Entity },
    /// `PATCH /entities/{id}/attrs/{attrId}`: merge into one existing attribute instance.
    PatchAttr { id: String, name: String, fragment: Attribute },
    /// `PUT /entities/{id}/attrs/{attrId}`: replace one existing attribute instance.
    ReplaceAttr { id: String, name: String, attribute: Attribute },
    /// `DELETE /entities/{id}/attrs/{attrId}`: one instance, or all with `all`.
    DeleteAttr { id: String, name: String, dataset_id: Option<String>, all: bool },
    /// `DELETE /entities/{id}`, batch delete.
    Delete { id: String },
    /// `POST /temporal/entities` (and `…/{id}/attrs` with `create` false): instances over time;
    /// the entity takes the latest instance of each attribute, history records them all.
    Temporal { entity: Entity, create: bool },
}

impl WriteOp {
    pub fn entity_id(&self) -> &str {
        match self {
            Self::Create(e) | Self::Upsert { entity: e, .. } | Self::Replace(e) | Self::Temporal { entity: e, .. } => {
                &e.id
            }
            Self::Merge { id, .. }
            | Self::Append { id, .. }
            | Self::Update { id, .. }
            | Self::PatchAttr { id, .. }
            | Self::ReplaceAttr { id, .. }
            | Self::DeleteAttr { id, .. }
            | Self::Delete { id } => id,
        }
    }
}

/// What an op did, for the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Created,
    Updated,
    Deleted,
}

/// An attribute the op could not write, with the reason (207 `notUpdated`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotUpdated {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    /// Expanded names of the attributes written.
    pub updated: Vec<String>,
    pub not_updated: Vec<NotUpdated>,
}

/// The result of applying one op: the response outcome and the change event (`None`: nothing
/// changed). The entity to persist is the change's entity, unless the change is a deletion.
#[derive(Debug, Clone)]
pub struct Applied {
    pub outcome: Outcome,
    pub change: Option<Change>,
}

impl Applied {
    /// The entity to persist after a change, `None` when the change deletes it.
    pub fn to_persist(&self) -> Option<&Entity> {
        self.change.as_ref().filter(|c| c.kind != ChangeKind::Deleted).map(|c| c.entity.as_ref())
    }
}

fn missing(id: &str) -> NgsiError {
    NgsiError::not_found(format!("entity '{id}' does not exist"))
}

/// Applies `op` to the current state of its entity. Pure: the caller persists the result.
pub fn apply(op: WriteOp, current: Option<Entity>, tenant: &str, now: &Timestamp) -> Result<Applied> {
    match op {
        WriteOp::Create(mut entity) => {
            if current.is_some() {
                return Err(NgsiError::already_exists(format!("entity '{}' already exists", entity.id)));
            }
            entity.stamp_created(now);
            Ok(created(entity, tenant, now))
        }
        WriteOp::Upsert { mut entity, replace } => match current {
            None => {
                entity.stamp_created(now);
                Ok(created(entity, tenant, now))
            }
            Some(cur) if replace => Ok(replace_entity(cur, entity, tenant, now)),
            Some(cur) => {
                let id = entity.id.clone();
                append(cur, entity, true, tenant, now).map_err(|_| missing(&id))
            }
        },
        WriteOp::Replace(entity) => match current {
            None => Err(missing(&entity.id)),
            Some(cur) => Ok(replace_entity(cur, entity, tenant, now)),
        },
        WriteOp::Merge { id, fragment } => {
            let cur = current.ok_or_else(|| missing(&id))?;
            Ok(merge(cur, fragment, tenant, now))
        }
        WriteOp::Append { id, fragment, overwrite } => {
            let cur = current.ok_or_else(|| missing(&id))?;
            append(cur, fragment, overwrite, tenant, now)
        }
        WriteOp::Update { id, fragment } => {
            let cur = current.ok_or_else(|| missing(&id))?;
            Ok(update(cur, fragment, tenant, now))
        }
        WriteOp::PatchAttr { id, name, fragment } => {
            let cur = current.ok_or_else(|| missing(&id))?;
            patch_attr(cur, name, fragment, tenant, now)
        }
        WriteOp::ReplaceAttr { id, name, attribute } => {
            let cur = current.ok_or_else(|| missing(&id))?;
            replace_attr(cur, name, attribute, tenant, now)
        }
        WriteOp::DeleteAttr { id, name, dataset_id, all } => {
            let cur = current.ok_or_else(|| missing(&id))?;
            delete_attr(cur, name, dataset_id, all, tenant, now)
        }
        WriteOp::Temporal { entity, create } => temporal(current, entity, create, tenant, now),
        WriteOp::Delete { id } => {
            let cur = current.ok_or_else(|| missing(&id))?;
            let attrs = cur
                .attrs
                .iter()
                .flat_map(|(n, is)| is.iter().map(move |a| attr_change(n, a, AttrChangeKind::Deleted)))
                .collect();
            let change = Change {
                tenant: tenant.to_string(),
                id,
                kind: ChangeKind::Deleted,
                entity: Arc::new(cur),
                previous: None,
                at: now.clone(),
                attrs,
                history: None,
            };
            Ok(Applied {
                outcome: Outcome { status: Status::Deleted, updated: Vec::new(), not_updated: Vec::new() },
                change: Some(change),
            })
        }
    }
}

fn attr_change(name: &str, a: &Attribute, kind: AttrChangeKind) -> AttrChange {
    AttrChange { name: name.to_string(), dataset_id: a.dataset_id.clone(), kind }
}

fn created(entity: Entity, tenant: &str, now: &Timestamp) -> Applied {
    let attrs = entity
        .attrs
        .iter()
        .flat_map(|(n, is)| is.iter().map(move |a| attr_change(n, a, AttrChangeKind::Created)))
        .collect();
    let outcome =
        Outcome { status: Status::Created, updated: entity.attrs.keys().cloned().collect(), not_updated: Vec::new() };
    let change = Change {
        tenant: tenant.to_string(),
        id: entity.id.clone(),
        kind: ChangeKind::Created,
        entity: Arc::new(entity),
        previous: None,
        at: now.clone(),
        attrs,
        history: None,
    };
    Applied { outcome, change: Some(change) }
}

/// Builds the update result: diffs `before` and `after` into attribute changes.
fn updated(before: Entity, mut after: Entity, outcome: Outcome, tenant: &str, now: &Timestamp) -> Applied {
    let mut attrs = Vec::new();
    for (name, instances) in &after.attrs {
        for a in instances {
            match before.instance(name, a.dataset_id.as_deref()) {
                None => attrs.push(attr_change(name, a, AttrChangeKind::Created)),
                Some(_) if a.modified_at.as_ref() == Some(now) => {
                    attrs.push(attr_change(name, a, AttrChangeKind::Updated))
                }
                Some(_) => {}
            }
        }
    }
    for (name, instances) in &before.attrs {
        for a in instances {
            if after.instance(name, a.dataset_id.as_deref()).is_none() {
                attrs.push(attr_change(name, a, AttrChangeKind::Deleted));
            }
        }
    }
    let entity_changed = before.types != after.types || before.scopes != after.scopes;
    if attrs.is_empty() && !entity_changed {
        return Applied { outcome, change: None };
    }
    after.modified_at = Some(now.clone());
    let change = Change {
        tenant: tenant.to_string(),
        id: after.id.clone(),
        kind: ChangeKind::Updated,
        entity: Arc::new(after),
        previous: Some(Arc::new(before)),
        at: now.clone(),
        attrs,
        history: None,
    };
    Applied { outcome, change: Some(change) }
}

fn ok_outcome(updated: Vec<String>, not_updated: Vec<NotUpdated>) -> Outcome {
    Outcome { status: Status::Updated, updated, not_updated }
}

fn replace_entity(cur: Entity, mut entity: Entity, tenant: &str, now: &Timestamp) -> Applied {
    entity.created_at = cur.created_at.clone();
    for (name, instances) in entity.attrs.iter_mut() {
        for a in instances.iter_mut() {
            a.created_at = cur.instance(name, a.dataset_id.as_deref()).and_then(|old| old.created_at.clone());
            a.stamp(now);
        }
    }
    let names = entity.attrs.keys().cloned().collect();
    updated(cur, entity, ok_outcome(names, Vec::new()), tenant, now)
}

fn add_types(entity: &mut Entity, types: Vec<String>) {
    for t in types {
        if !entity.types.contains(&t) {
            entity.types.push(t);
        }
    }
}

/// Puts `incoming` in place of the instance with the same datasetId (keeping its `createdAt`),
/// or adds it. Returns whether an instance existed.
fn put_instance(attrs: &mut Attrs, name: &str, mut incoming: Attribute, now: &Timestamp) -> bool {
    let slot = attrs.entry(name.to_string()).or_default();
    match slot.iter_mut().find(|a| a.dataset_id == incoming.dataset_id) {
        Some(existing) => {
            incoming.created_at = existing.created_at.clone();
            incoming.stamp(now);
            *existing = incoming;
            true
        }
        None => {
            incoming.created_at = None;
            incoming.stamp(now);
            slot.push(incoming);
            false
        }
    }
}

/// Removes the instance of `name` with `dataset_id`; drops the name when no instance is left.
fn remove_instance(attrs: &mut Attrs, name: &str, dataset_id: Option<&str>) -> bool {
    let Some(slot) = attrs.get_mut(name) else { return false };
    let before = slot.len();
    slot.retain(|a| a.dataset_id.as_deref() != dataset_id);
    let removed = slot.len() != before;
    if slot.is_empty() {
        attrs.shift_remove(name);
    }
    removed
}

fn append(cur: Entity, fragment: Entity, overwrite: bool, tenant: &str, now: &Timestamp) -> Result<Applied> {
    let mut next = cur.clone();
    add_types(&mut next, fragment.types);
    if !fragment.scopes.is_empty() {
        next.scopes = fragment.scopes;
    }
    let mut done = Vec::new();
    let mut not_updated = Vec::new();
    for (name, instances) in fragment.attrs {
        for incoming in instances {
            if incoming.value.is_null() {
                remove_instance(&mut next.attrs, &name, incoming.dataset_id.as_deref());
                done.push(name.clone());
                continue;
            }
            if !overwrite && next.instance(&name, incoming.dataset_id.as_deref()).is_some() {
                not_updated
                    .push(NotUpdated { name: name.clone(), reason: "attribute exists and options=noOverwrite".into() });
                continue;
            }
            put_instance(&mut next.attrs, &name, incoming, now);
            done.push(name.clone());
        }
    }
    done.dedup();
    Ok(updated(cur, next, ok_outcome(done, not_updated), tenant, now))
}

fn update(cur: Entity, fragment: Entity, tenant: &str, now: &Timestamp) -> Applied {
    let mut next = cur.clone();
    add_types(&mut next, fragment.types);
    let mut done = Vec::new();
    let mut not_updated = Vec::new();
    for (name, instances) in fragment.attrs {
        for incoming in instances {
            let exists = next.instance(&name, incoming.dataset_id.as_deref()).is_some();
            if !exists {
                let reason = match &incoming.dataset_id {
                    Some(d) => format!("attribute has no instance with datasetId '{d}'"),
                    None => "attribute does not exist".to_string(),
                };
                not_updated.push(NotUpdated { name: name.clone(), reason });
                continue;
            }
            if incoming.value.is_null() {
                remove_instance(&mut next.attrs, &name, incoming.dataset_id.as_deref());
            } else {
                put_instance(&mut next.attrs, &name, incoming, now);
            }
            done.push(name.clone());
        }
    }
    done.dedup();
    updated(cur, next, ok_outcome(done, not_updated), tenant, now)
}

fn merge(cur: Entity, fragment: Entity, tenant: &str, now: &Timestamp) -> Applied {
    let mut next = cur.clone();
    add_types(&mut next, fragment.types);
    if !fragment.scopes.is_empty() {
        next.scopes = fragment.scopes;
    }
    let mut done = Vec::new();
    for (name, instances) in fragment.attrs {
        for incoming in instances {
            if incoming.value.is_null() {
                remove_instance(&mut next.attrs, &name, incoming.dataset_id.as_deref());
            } else {
                merge_attr(&mut next.attrs, &name, incoming, now);
            }
        }
        done.push(name);
    }
    updated(cur, next, ok_outcome(done, Vec::new()), tenant, now)
}

/// Merge-patch of one attribute instance: the patch's members replace the existing ones,
/// members it leaves out are kept, sub-attributes are merged the same way (null deletes).
fn merge_attr(attrs: &mut Attrs, name: &str, patch: Attribute, now: &Timestamp) {
    let slot = attrs.entry(name.to_string()).or_default();
    let Some(existing) = slot.iter_mut().find(|a| a.dataset_id == patch.dataset_id) else {
        let mut fresh = patch;
        fresh.created_at = None;
        fresh.sub.retain(|_, is| {
            is.retain(|a| !a.value.is_null());
            !is.is_empty()
        });
        fresh.stamp(now);
        slot.push(fresh);
        return;
    };
    merge_into(existing, patch, now);
}

fn merge_into(existing: &mut Attribute, patch: Attribute, now: &Timestamp) {
    if !patch.value.is_null() {
        existing.value = patch.value;
    }
    if patch.observed_at.is_some() {
        existing.observed_at = patch.observed_at;
    }
    if patch.unit_code.is_some() {
        existing.unit_code = patch.unit_code;
    }
    if !matches!(existing.value, AttrValue::Property(_)) {
        existing.unit_code = None;
    }
    for (sub_name, sub_instances) in patch.sub {
        for sub in sub_instances {
            if sub.value.is_null() {
                remove_instance(&mut existing.sub, &sub_name, sub.dataset_id.as_deref());
            } else {
                merge_attr(&mut existing.sub, &sub_name, sub, now);
            }
        }
    }
    existing.modified_at = Some(now.clone());
}

fn patch_attr(cur: Entity, name: String, fragment: Attribute, tenant: &str, now: &Timestamp) -> Result<Applied> {
    let mut next = cur.clone();
    let dataset_id = fragment.dataset_id.clone();
    let existing = next
        .attrs
        .get_mut(&name)
        .and_then(|is| is.iter_mut().find(|a| a.dataset_id == dataset_id))
        .ok_or_else(|| attr_missing(&cur.id, &name, dataset_id.as_deref()))?;
    merge_into(existing, fragment, now);
    Ok(updated(cur, next, ok_outcome(vec![name], Vec::new()), tenant, now))
}

fn replace_attr(cur: Entity, name: String, attribute: Attribute, tenant: &str, now: &Timestamp) -> Result<Applied> {
    if cur.instance(&name, attribute.dataset_id.as_deref()).is_none() {
        return Err(attr_missing(&cur.id, &name, attribute.dataset_id.as_deref()));
    }
    let mut next = cur.clone();
    put_instance(&mut next.attrs, &name, attribute, now);
    Ok(updated(cur, next, ok_outcome(vec![name], Vec::new()), tenant, now))
}

/// The expanded name of `scope`, which the attribute API can address (§4.18).
pub const SCOPE: &str = "https://uri.etsi.org/ngsi-ld/scope";

fn delete_attr(
    cur: Entity,
    name: String,
    dataset_id: Option<String>,
    all: bool,
    tenant: &str,
    now: &Timestamp,
) -> Result<Applied> {
    let mut next = cur.clone();
    if name == SCOPE && !cur.scopes.is_empty() && !cur.attrs.contains_key(SCOPE) {
        next.scopes.clear();
        return Ok(updated(cur, next, ok_outcome(vec![name], Vec::new()), tenant, now));
    }
    let removed = if all {
        next.attrs.shift_remove(&name).is_some()
    } else {
        remove_instance(&mut next.attrs, &name, dataset_id.as_deref())
    };
    if !removed {
        return Err(attr_missing(&cur.id, &name, dataset_id.as_deref()));
    }
    Ok(updated(cur, next, ok_outcome(vec![name], Vec::new()), tenant, now))
}

/// The latest instance of each (attribute, datasetId) of a temporal payload: the one with the
/// latest `observedAt`, or the last one given.
fn latest_instances(attrs: &Attrs) -> Attrs {
    let mut latest = Attrs::new();
    for (name, instances) in attrs {
        let slot: &mut Vec<Attribute> = latest.entry(name.clone()).or_default();
        for a in instances {
            match slot.iter_mut().find(|l| l.dataset_id == a.dataset_id) {
                Some(l) if a.observed_at >= l.observed_at => *l = a.clone(),
                Some(_) => {}
                None => slot.push(a.clone()),
            }
        }
    }
    latest
}

fn temporal(current: Option<Entity>, entity: Entity, create: bool, tenant: &str, now: &Timestamp) -> Result<Applied> {
    let history = entity.attrs.clone();
    let fragment = Entity { attrs: latest_instances(&entity.attrs), ..entity };
    let (mut applied, before) = match current {
        None if !create => return Err(missing(&fragment.id)),
        None => {
            let mut fresh = fragment;
            fresh.attrs.retain(|_, instances| {
                instances.retain(|a| !a.value.is_null());
                !instances.is_empty()
            });
            fresh.stamp_created(now);
            (created(fresh, tenant, now), None)
        }
        Some(cur) => {
            let before = Arc::new(cur.clone());
            (append(cur, fragment, true, tenant, now)?, Some(before))
        }
    };
    // Instances that leave the current entity as it was still have history to record.
    if applied.change.is_none()
        && let Some(entity) = before
    {
        applied.change = Some(Change {
            tenant: tenant.to_string(),
            id: entity.id.clone(),
            kind: ChangeKind::Updated,
            previous: Some(entity.clone()),
            entity,
            at: now.clone(),
            attrs: Vec::new(),
            history: None,
        });
    }
    if let Some(change) = applied.change.as_mut() {
        change.history = Some(history);
    }
    Ok(applied)
}

fn attr_missing(id: &str, name: &str, dataset_id: Option<&str>) -> NgsiError {
    NgsiError::not_found(match dataset_id {
        Some(d) => format!("entity '{id}' has no attribute '{name}' with datasetId '{d}'"),
        None => format!("entity '{id}' has no attribute '{name}' (default instance)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T: &str = "default";

    fn entity(attrs: &[(&str, Attribute)]) -> Entity {
        let mut e = Entity::new("urn:e:1", vec!["https://t/T".into()]);
        for (n, a) in attrs {
            e.attrs.entry(n.to_string()).or_default().push(a.clone());
        }
        e
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_micros(s * 1_000_000)
    }

    #[test]
    fn create_stamps_and_refuses_duplicates() {
        let e = entity(&[("p", Attribute::property(json!(1)))]);
        let applied = apply(WriteOp::Create(e.clone()), None, T, &ts(1)).unwrap();
        let stored = applied.to_persist().cloned().unwrap();
        assert_eq!(stored.created_at, Some(ts(1)));
        assert_eq!(stored.attrs["p"][0].created_at, Some(ts(1)));
        let err = apply(WriteOp::Create(e), Some(stored), T, &ts(2)).unwrap_err();
        assert_eq!(err.status(), 409);
    }

    #[test]
    fn append_respects_no_overwrite_and_reports_it() {
        let stored = apply(WriteOp::Create(entity(&[("p", Attribute::property(json!(1)))])), None, T, &ts(1))
            .unwrap()
            .to_persist()
            .cloned();
        let frag = entity(&[("p", Attribute::property(json!(2))), ("q", Attribute::property(json!(3)))]);
        let applied =
            apply(WriteOp::Append { id: "urn:e:1".into(), fragment: frag, overwrite: false }, stored, T, &ts(2))
                .unwrap();
        assert_eq!(applied.outcome.not_updated.len(), 1);
        let next = applied.to_persist().cloned().unwrap();
        assert_eq!(next.attrs["p"][0].value, AttrValue::Property(json!(1)));
        assert_eq!(next.attrs["q"][0].value, AttrValue::Property(json!(3)));
        assert_eq!(next.modified_at, Some(ts(2)));
        let change = applied.change.unwrap();
        assert_eq!(change.attrs.len(), 1);
        assert_eq!(change.attrs[0].kind, AttrChangeKind::Created);
    }

    #[test]
    fn merge_keeps_unmentioned_members_and_deletes_nulls() {
        let mut p = Attribute::property(json!(1));
        p.unit_code = Some("CEL".into());
        p.sub.insert("acc".into(), vec![Attribute::property(json!(0.9))]);
        let stored =
            apply(WriteOp::Create(entity(&[("p", p), ("gone", Attribute::property(json!(0)))])), None, T, &ts(1))
                .unwrap()
                .to_persist()
                .cloned();
        let mut patch = Attribute::property(json!(2));
        patch.sub.insert("acc".into(), vec![Attribute::new(AttrValue::Null)]);
        let frag = entity(&[("p", patch), ("gone", Attribute::new(AttrValue::Null))]);
        let next = apply(WriteOp::Merge { id: "urn:e:1".into(), fragment: frag }, stored, T, &ts(2))
            .unwrap()
            .to_persist()
            .cloned()
            .unwrap();
        let p = &next.attrs["p"][0];
        assert_eq!(p.value, AttrValue::Property(json!(2)));
        assert_eq!(p.unit_code.as_deref(), Some("CEL"));
        assert!(p.sub.is_empty());
        assert_eq!(p.created_at, Some(ts(1)));
        assert!(!next.attrs.contains_key("gone"));
    }

    #[test]
    fn update_only_touches_existing_and_no_change_means_no_event() {
        let stored = apply(WriteOp::Create(entity(&[("p", Attribute::property(json!(1)))])), None, T, &ts(1))
            .unwrap()
            .to_persist()
            .cloned();
        let frag = entity(&[("missing", Attribute::property(json!(2)))]);
        let applied = apply(WriteOp::Update { id: "urn:e:1".into(), fragment: frag }, stored, T, &ts(2)).unwrap();
        assert!(applied.change.is_none());
        assert_eq!(applied.outcome.not_updated[0].name, "missing");
    }

    #[test]
    fn delete_attr_instances() {
        let mut b = Attribute::property(json!(2));
        b.dataset_id = Some("urn:ds:b".into());
        let stored = apply(WriteOp::Create(entity(&[("p", Attribute::property(json!(1))), ("p", b)])), None, T, &ts(1))
            .unwrap()
            .to_persist()
            .cloned();
        let op = |ds: Option<&str>, all| WriteOp::DeleteAttr {
            id: "urn:e:1".into(),
            name: "p".into(),
            dataset_id: ds.map(String::from),
            all,
        };
        assert_eq!(apply(op(Some("urn:ds:x"), false), stored.clone(), T, &ts(2)).unwrap_err().status(), 404);
        let next =
            apply(op(Some("urn:ds:b"), false), stored.clone(), T, &ts(2)).unwrap().to_persist().cloned().unwrap();
        assert_eq!(next.attrs["p"].len(), 1);
        let next = apply(op(None, true), stored, T, &ts(2)).unwrap().to_persist().cloned().unwrap();
        assert!(next.attrs.is_empty());
    }
}
