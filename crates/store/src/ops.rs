//! Write operations and their NGSI-LD semantics, independent of any storage engine.
//!
//! A store executes a batch of [`WriteOp`]s in one transaction: for each op it loads the current
//! entity, calls [`apply`] (pure: no I/O) and persists what comes out. Keeping the semantics here
//! means the embedded and the PostgreSQL stores cannot disagree on what a merge or an append does.

use crate::change::{AttrChange, AttrChangeKind, Change, ChangeKind};
use hanbat_model::entity::NGSI_LD_NULL;
use hanbat_model::{AttrValue, Attribute, Attrs, Entity, NgsiError, Result, Timestamp};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The expanded name under which `scope` is addressed as an attribute (`DELETE …/attrs/scope`).
pub use hanbat_model::jsonld::SCOPE_IRI;

/// One write, as the API layer hands it to the store. Names are expanded.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// `POST /entities`, batch create: fails if the entity exists.
    Create(Entity),
    /// A copy of an entity as another tenant holds it (snapshots, §5.16 of V1.9.1): fails if the
    /// entity exists; keeps the copy's system timestamps, stamping only those it lacks.
    Copy(Entity),
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
    /// `PATCH /entities/{id}/attrs/{attrId}`: merge into one existing attribute instance, or
    /// delete it (`delete`: the fragment's value is the NGSI-LD null). `kind`, when the
    /// fragment declares one, must be the instance's kind.
    PatchAttr { id: String, name: String, fragment: Attribute, kind: Option<&'static str>, delete: bool },
    /// `PUT /entities/{id}/attrs/{attrId}`: replace one existing attribute instance.
    ReplaceAttr { id: String, name: String, attribute: Attribute },
    /// `DELETE /entities/{id}/attrs/{attrId}`: one instance, or all with `all`.
    DeleteAttr { id: String, name: String, dataset_id: Option<String>, all: bool },
    /// `DELETE /entities/{id}`, batch delete.
    Delete { id: String },
    /// `POST /temporal/entities` (and `…/{id}/attrs` with `create` false): instances over time;
    /// the entity takes the latest instance of each attribute, history records them all.
    Temporal { entity: Entity, create: bool },
    /// Transient entities (§4.22): delete the entity, or its attribute instances, whose
    /// `expiresAt` has passed at the time of the write.
    Expire { id: String },
    /// `op`, only if the entity has one of `types` (expanded; the `type` selector of §4.17 on
    /// entity operations): otherwise the entity counts as not found.
    Typed { types: Vec<String>, op: Box<WriteOp> },
}

impl WriteOp {
    pub fn entity_id(&self) -> &str {
        match self {
            Self::Create(e)
            | Self::Copy(e)
            | Self::Upsert { entity: e, .. }
            | Self::Replace(e)
            | Self::Temporal { entity: e, .. } => &e.id,
            Self::Merge { id, .. }
            | Self::Append { id, .. }
            | Self::Update { id, .. }
            | Self::PatchAttr { id, .. }
            | Self::ReplaceAttr { id, .. }
            | Self::DeleteAttr { id, .. }
            | Self::Delete { id }
            | Self::Expire { id } => id,
            Self::Typed { op, .. } => op.entity_id(),
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
        WriteOp::Copy(mut entity) => {
            if current.is_some() {
                return Err(NgsiError::already_exists(format!("entity '{}' already exists", entity.id)));
            }
            entity.stamp_missing(now);
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
        WriteOp::PatchAttr { id, name, fragment, kind, delete } => {
            let cur = current.ok_or_else(|| missing(&id))?;
            if delete {
                let dataset_id = fragment.dataset_id;
                return delete_attr(cur, name, dataset_id, false, tenant, now);
            }
            patch_attr(cur, name, fragment, kind, tenant, now)
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
        WriteOp::Typed { types, op } => match current {
            Some(cur) if !cur.has_any_type(&types) => {
                Err(NgsiError::not_found(format!("entity '{}' exists but has none of the types asked for", cur.id)))
            }
            current => apply(*op, current, tenant, now),
        },
        WriteOp::Expire { id } => {
            let Some(cur) = current else {
                return Ok(Applied { outcome: no_outcome(), change: None });
            };
            if cur.is_expired(now) {
                return Ok(deleted(id, cur, tenant, now));
            }
            let mut next = cur.clone();
            if !next.drop_expired_attrs(now) {
                return Ok(Applied { outcome: no_outcome(), change: None });
            }
            Ok(updated(cur, next, no_outcome(), tenant, now))
        }
        WriteOp::Delete { id } => {
            let cur = current.ok_or_else(|| missing(&id))?;
            Ok(deleted(id, cur, tenant, now))
        }
    }
}

fn no_outcome() -> Outcome {
    Outcome { status: Status::Updated, updated: Vec::new(), not_updated: Vec::new() }
}

fn deleted(id: String, cur: Entity, tenant: &str, now: &Timestamp) -> Applied {
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
    Applied {
        outcome: Outcome { status: Status::Deleted, updated: Vec::new(), not_updated: Vec::new() },
        change: Some(change),
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
    let entity_changed =
        before.types != after.types || before.scopes != after.scopes || before.expires_at != after.expires_at;
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

/// What a fragment's `scope` asks for (§4.18): nothing, deletion (the NGSI-LD null), or values.
enum ScopeChange {
    None,
    Delete,
    Set(Vec<String>),
}

fn scope_change(fragment_scopes: Vec<String>) -> ScopeChange {
    match fragment_scopes.as_slice() {
        [] => ScopeChange::None,
        [only] if only == NGSI_LD_NULL => ScopeChange::Delete,
        _ => ScopeChange::Set(fragment_scopes),
    }
}

/// Entity-level members of a fragment that every partial write applies alike.
fn apply_entity_members(next: &mut Entity, fragment: &Entity) {
    add_types(next, fragment.types.clone());
    if let Some(at) = &fragment.expires_at {
        next.expires_at = Some(at.clone());
    }
    if fragment.clears_expiry {
        next.expires_at = None;
    }
}

/// Append (§5.6.3): new attributes are added, existing instances overwritten unless
/// `overwrite` is false; `scope` is replaced, or extended with `noOverwrite`.
fn append(cur: Entity, fragment: Entity, overwrite: bool, tenant: &str, now: &Timestamp) -> Result<Applied> {
    let mut next = cur.clone();
    apply_entity_members(&mut next, &fragment);
    let mut done = Vec::new();
    let mut not_updated = Vec::new();
    match scope_change(fragment.scopes) {
        ScopeChange::None => {}
        ScopeChange::Delete => next.scopes.clear(),
        ScopeChange::Set(scopes) if overwrite => next.scopes = scopes,
        ScopeChange::Set(scopes) => {
            for scope in scopes {
                if !next.scopes.contains(&scope) {
                    next.scopes.push(scope);
                }
            }
        }
    }
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

/// Update (§5.6.2): each instance of the fragment replaces the instance with the same datasetId
/// whole (§5.5.8 example 2) or, when there is none, is added (the ETSI suite's reading, see
/// docs/conformance.md); the NGSI-LD null deletes. `scope` is replaced only if the entity has one.
fn update(cur: Entity, fragment: Entity, tenant: &str, now: &Timestamp) -> Applied {
    let mut next = cur.clone();
    apply_entity_members(&mut next, &fragment);
    let mut done = Vec::new();
    let mut not_updated = Vec::new();
    match scope_change(fragment.scopes) {
        ScopeChange::None => {}
        _ if next.scopes.is_empty() => {
            not_updated.push(NotUpdated { name: SCOPE_IRI.into(), reason: "the entity has no scope to update".into() })
        }
        ScopeChange::Delete => next.scopes.clear(),
        ScopeChange::Set(scopes) => next.scopes = scopes,
    }
    for (name, instances) in fragment.attrs {
        for incoming in instances {
            if incoming.value.is_null() {
                if !remove_instance(&mut next.attrs, &name, incoming.dataset_id.as_deref()) {
                    not_updated.push(NotUpdated { name: name.clone(), reason: "attribute does not exist".into() });
                    continue;
                }
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
    apply_entity_members(&mut next, &fragment);
    match scope_change(fragment.scopes) {
        ScopeChange::None => {}
        ScopeChange::Delete => next.scopes.clear(),
        ScopeChange::Set(scopes) => next.scopes = scopes,
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
        if let AttrValue::Property(v) = &mut fresh.value {
            strip_nulls(v);
        }
        fresh.stamp(now);
        slot.push(fresh);
        return;
    };
    merge_into(existing, patch, now);
}

fn merge_into(existing: &mut Attribute, patch: Attribute, now: &Timestamp) {
    match (&mut existing.value, patch.value) {
        (_, AttrValue::Null) => {}
        // §5.5.12: a compound value is merged key by key (RFC 7396), a null removing the key.
        (AttrValue::Property(Value::Object(current)), AttrValue::Property(Value::Object(update))) => {
            merge_patch(current, update)
        }
        (_, mut value) => {
            if let AttrValue::Property(v) = &mut value {
                strip_nulls(v);
            }
            existing.value = value;
        }
    }
    if patch.observed_at.is_some() {
        existing.observed_at = patch.observed_at;
    }
    if patch.unit_code.is_some() {
        existing.unit_code = patch.unit_code;
    }
    if patch.expires_at.is_some() {
        existing.expires_at = patch.expires_at;
    }
    if patch.value_type.is_some() {
        existing.value_type = patch.value_type;
    }
    if patch.sealed.is_some() {
        existing.sealed = patch.sealed;
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

/// Whether a member of a merge patch removes the key (JSON null or the NGSI-LD null).
fn removes(v: &Value) -> bool {
    v.is_null() || v.as_str() == Some(NGSI_LD_NULL)
}

/// RFC 7396 merge of `update` into `target`.
fn merge_patch(target: &mut Map<String, Value>, update: Map<String, Value>) {
    for (key, value) in update {
        if removes(&value) {
            target.remove(&key);
            continue;
        }
        match (target.get_mut(&key), value) {
            (Some(Value::Object(inner)), Value::Object(patch)) => merge_patch(inner, patch),
            (_, mut value) => {
                strip_nulls(&mut value);
                target.insert(key, value);
            }
        }
    }
}

/// Drops removal markers from a value that has nothing to merge into.
fn strip_nulls(value: &mut Value) {
    if let Value::Object(map) = value {
        map.retain(|_, v| !removes(v));
        map.values_mut().for_each(strip_nulls);
    }
}

fn patch_attr(
    cur: Entity,
    name: String,
    fragment: Attribute,
    kind: Option<&'static str>,
    tenant: &str,
    now: &Timestamp,
) -> Result<Applied> {
    let mut next = cur.clone();
    let dataset_id = fragment.dataset_id.clone();
    let existing = next
        .attrs
        .get_mut(&name)
        .and_then(|is| is.iter_mut().find(|a| a.dataset_id == dataset_id))
        .ok_or_else(|| attr_missing(&cur.id, &name, dataset_id.as_deref()))?;
    if let Some(kind) = kind
        && kind != existing.value.type_name()
    {
        return Err(NgsiError::bad_data(format!(
            "attribute '{name}' is a {}; a partial update cannot make it a {kind}",
            existing.value.type_name()
        )));
    }
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

fn delete_attr(
    cur: Entity,
    name: String,
    dataset_id: Option<String>,
    all: bool,
    tenant: &str,
    now: &Timestamp,
) -> Result<Applied> {
    let mut next = cur.clone();
    let removed = if name == SCOPE_IRI && !cur.attrs.contains_key(SCOPE_IRI) {
        // `scope` is deletable like an attribute (§4.18).
        let had = !next.scopes.is_empty();
        next.scopes.clear();
        had
    } else if all {
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
    let mut fragment = Entity { attrs: latest_instances(&entity.attrs), ..entity };
    // Scope instances over time are history only; the entity's scope is their latest value,
    // which the parser put in `scopes`.
    fragment.attrs.shift_remove(SCOPE_IRI);
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
    fn update_replaces_whole_instances_and_adds_new_ones() {
        let mut p = Attribute::property(json!(1));
        p.unit_code = Some("CEL".into());
        let stored = apply(WriteOp::Create(entity(&[("p", p)])), None, T, &ts(1)).unwrap().to_persist().cloned();
        let frag = entity(&[("p", Attribute::property(json!(2))), ("new", Attribute::property(json!(3)))]);
        let applied = apply(WriteOp::Update { id: "urn:e:1".into(), fragment: frag }, stored, T, &ts(2)).unwrap();
        let next = applied.to_persist().cloned().unwrap();
        assert_eq!(next.attrs["p"][0].unit_code, None);
        assert!(next.attrs.contains_key("new"));
        let mut scoped = entity(&[]);
        scoped.scopes = vec!["/a".into()];
        let applied = apply(WriteOp::Update { id: "urn:e:1".into(), fragment: scoped }, Some(next), T, &ts(3)).unwrap();
        assert_eq!(applied.outcome.not_updated[0].name, SCOPE_IRI);
        assert!(applied.change.is_none());
    }

    #[test]
    fn merge_patches_compound_values_and_type_selector_gates() {
        let stored = apply(
            WriteOp::Create(entity(&[("a", Attribute::property(json!({"street": "x", "city": "B", "country": "D"})))])),
            None,
            T,
            &ts(1),
        )
        .unwrap()
        .to_persist()
        .cloned();
        let frag = entity(&[("a", Attribute::property(json!({"street": "y", "country": "urn:ngsi-ld:null"})))]);
        let merged = apply(WriteOp::Merge { id: "urn:e:1".into(), fragment: frag }, stored.clone(), T, &ts(2))
            .unwrap()
            .to_persist()
            .cloned()
            .unwrap();
        assert_eq!(merged.attrs["a"][0].value, AttrValue::Property(json!({"street": "y", "city": "B"})));
        let gated = WriteOp::Typed {
            types: vec!["https://t/Other".into()],
            op: Box::new(WriteOp::Delete { id: "urn:e:1".into() }),
        };
        assert_eq!(apply(gated, stored, T, &ts(3)).unwrap_err().status(), 404);
    }

    #[test]
    fn expire_drops_expired_instances_then_the_entity() {
        let mut short = Attribute::property(json!(1));
        short.expires_at = Some(ts(5));
        let mut e = entity(&[("short", short), ("long", Attribute::property(json!(2)))]);
        e.expires_at = Some(ts(10));
        let stored = apply(WriteOp::Create(e), None, T, &ts(1)).unwrap().to_persist().cloned();
        let op = || WriteOp::Expire { id: "urn:e:1".into() };
        assert!(apply(op(), stored.clone(), T, &ts(4)).unwrap().change.is_none());
        let next = apply(op(), stored, T, &ts(6)).unwrap().to_persist().cloned().unwrap();
        assert!(!next.attrs.contains_key("short") && next.attrs.contains_key("long"));
        assert!(apply(op(), Some(next), T, &ts(10)).unwrap().to_persist().is_none());
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
