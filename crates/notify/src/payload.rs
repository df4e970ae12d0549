//! Notification payloads (§5.3.1): `{id, type: "Notification", subscriptionId, notifiedAt, data}`,
//! each entity of `data` in the subscription's format, reduced to its `attributes` /
//! `pick` / `omit` / `datasetId`, with `showChanges` previous values (§4.5.18) and deleted
//! attributes rendered with the NGSI-LD Null of their kind.

use crate::registry::Spec;
use crate::subscription::{CORE_MEMBERS, Trigger};
use hanbat_model::render::{self, Format, Options};
use hanbat_model::{AttrValue, Attribute, Context, Entity, Timestamp};
use hanbat_store::{AttrChangeKind, Change, ChangeKind};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

const NULL: &str = "urn:ngsi-ld:null";

/// Whether an attribute instance passes the subscription's attribute and datasetId selection.
fn keeps(spec: &Spec, name: &str, dataset_id: Option<&str>) -> bool {
    let n = &spec.sub.notification;
    let listed = |list: &Option<Vec<String>>| list.as_ref().is_none_or(|l| l.iter().any(|a| a == name));
    let omitted = n.omit.as_ref().is_some_and(|l| l.iter().any(|a| a == name));
    let picked = match &n.pick {
        // Picking only core members keeps no attribute.
        Some(pick) => pick.iter().any(|a| a == name),
        None => true,
    };
    let dataset = spec.sub.dataset_id.as_ref().is_none_or(|ids| match dataset_id {
        Some(d) => ids.iter().any(|i| i == d),
        None => ids.iter().any(|i| i == "@none"),
    });
    listed(&n.attributes) && picked && !omitted && dataset
}

/// The entity reduced to the selected attributes and instances.
fn project(spec: &Spec, entity: &Entity) -> Entity {
    let mut e = entity.clone();
    e.attrs.retain(|name, instances| {
        instances.retain(|a| keeps(spec, name, a.dataset_id.as_deref()));
        !instances.is_empty()
    });
    e
}

/// `pick` / `omit` of core members (`id`, `type`, …) on the rendered entity.
fn trim_core(spec: &Spec, out: &mut Map<String, Value>) {
    let n = &spec.sub.notification;
    if let Some(pick) = &n.pick {
        for member in CORE_MEMBERS {
            if !pick.iter().any(|p| p == member) {
                out.remove(member);
            }
        }
    }
    if let Some(omit) = &n.omit {
        for member in omit.iter().filter(|m| CORE_MEMBERS.contains(&m.as_str())) {
            out.remove(member.as_str());
        }
    }
}

/// A deleted attribute instance: its kind's member set to the NGSI-LD Null, the previous value
/// with `showChanges`, `deletedAt` with `sysAttrs`.
fn deleted_instance(prev: &Attribute, at: &Timestamp, ctx: &Context, opts: &Options, show_changes: bool) -> Value {
    if opts.format == Format::KeyValues {
        return json!(NULL);
    }
    let mut shell = Attribute::new(prev.value.clone());
    shell.dataset_id = prev.dataset_id.clone();
    shell.created_at = prev.created_at.clone();
    shell.modified_at = prev.modified_at.clone();
    if show_changes {
        shell.previous = Some(Box::new(prev.value.clone()));
    }
    // Concise rendering would fold a lone value into a bare one: render normalized, then drop
    // the type for concise.
    let normalized = Options { format: Format::Normalized, ..opts.clone() };
    let Value::Object(mut out) = render::attribute(&shell, ctx, &normalized) else {
        return json!(NULL);
    };
    let (member, null) = match &prev.value {
        AttrValue::Relationship { .. } => ("object", json!(NULL)),
        AttrValue::LanguageProperty(_) => ("languageMap", json!({"@none": NULL})),
        AttrValue::VocabProperty(_) => ("vocab", json!(NULL)),
        AttrValue::ListProperty(_) => ("valueList", json!([NULL])),
        AttrValue::ListRelationship(_) => ("objectList", json!([NULL])),
        AttrValue::JsonProperty(_) => ("json", json!(NULL)),
        AttrValue::Property(_) | AttrValue::GeoProperty(_) | AttrValue::Null => ("value", json!(NULL)),
    };
    out.remove("objectType");
    out.insert(member.into(), null);
    if opts.sys_attrs {
        out.insert("deletedAt".into(), json!(at.to_text()));
    }
    if opts.format == Format::Concise {
        out.remove("type");
    }
    Value::Object(out)
}

/// Appends `value` as one more instance of attribute `key` in `out`.
fn push_instance(out: &mut Map<String, Value>, key: String, value: Value) {
    match out.get_mut(&key) {
        None => {
            out.insert(key, value);
        }
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
    }
}

/// A deleted instance in the simplified representation: the NGSI-LD Null under its datasetId
/// in the attribute's dataset map (§4.5.4), beside the instances that remain.
fn push_key_value_null(out: &mut Map<String, Value>, key: String, dataset_id: Option<&str>) {
    let slot = dataset_id.unwrap_or("@none").to_string();
    let dataset_map = |entries: Vec<(String, Value)>| json!({ "dataset": entries.into_iter().collect::<Map<_, _>>() });
    match out.get_mut(&key) {
        None if dataset_id.is_none() => {
            out.insert(key, json!(NULL));
        }
        None => {
            out.insert(key, dataset_map(vec![(slot, json!(NULL))]));
        }
        Some(Value::Object(o)) if matches!(o.get("dataset"), Some(Value::Object(_))) => {
            if let Some(Value::Object(map)) = o.get_mut("dataset") {
                map.insert(slot, json!(NULL));
            }
        }
        Some(existing) => {
            let default = existing.take();
            *existing = dataset_map(vec![("@none".into(), default), (slot, json!(NULL))]);
        }
    }
}

/// One entity of `data` for a change that fired `trigger`.
pub fn change_entity(spec: &Spec, change: &Change, trigger: Trigger, ctx: &Context) -> Map<String, Value> {
    let opts = spec.sub.render_options();
    let show_changes = spec.sub.notification.show_changes();
    if change.kind == ChangeKind::Deleted {
        return deleted_entity(spec, change, trigger, ctx, &opts, show_changes);
    }
    let mut entity = project(spec, &change.entity);
    if show_changes && let Some(previous) = &change.previous {
        for a in change.attrs.iter().filter(|a| a.kind == AttrChangeKind::Updated) {
            let before = previous.instance(&a.name, a.dataset_id.as_deref());
            let after = entity
                .attrs
                .get_mut(&a.name)
                .and_then(|is| is.iter_mut().find(|i| i.dataset_id.as_deref() == a.dataset_id.as_deref()));
            if let (Some(before), Some(after)) = (before, after) {
                after.previous = Some(Box::new(before.value.clone()));
            }
        }
    }
    let mut out = render::entity(&entity, ctx, &opts);
    if let Some(previous) = &change.previous {
        let deleted: Vec<_> = change
            .attrs
            .iter()
            .filter(|a| a.kind == AttrChangeKind::Deleted && keeps(spec, &a.name, a.dataset_id.as_deref()))
            .collect();
        let mut whole_attrs_done = Vec::new();
        for a in &deleted {
            let Some(prev) = previous.instance(&a.name, a.dataset_id.as_deref()) else { continue };
            let key = ctx.compact(&a.name);
            // Every instance deleted at once (`deleteAll`): the attribute is gone, and one Null
            // attribute says so rather than one per dataset.
            let whole =
                !change.entity.attrs.contains_key(&a.name) && deleted.iter().filter(|d| d.name == a.name).count() > 1;
            if whole {
                if whole_attrs_done.contains(&&a.name) {
                    continue;
                }
                whole_attrs_done.push(&a.name);
                let mut shell = prev.clone();
                shell.dataset_id = None;
                push_instance(&mut out, key, deleted_instance(&shell, &change.at, ctx, &opts, show_changes));
            } else if opts.format == Format::KeyValues {
                push_key_value_null(&mut out, key, a.dataset_id.as_deref());
            } else {
                push_instance(&mut out, key, deleted_instance(prev, &change.at, ctx, &opts, show_changes));
            }
        }
    }
    trim_core(spec, &mut out);
    out
}

/// A deleted entity: `id`, `type`, `deletedAt` (and system times with `sysAttrs`); its
/// attributes as deleted instances when the subscription asked for attribute deletions or for
/// the changes.
fn deleted_entity(
    spec: &Spec,
    change: &Change,
    trigger: Trigger,
    ctx: &Context,
    opts: &Options,
    show_changes: bool,
) -> Map<String, Value> {
    let last = &change.entity;
    let mut out = Map::new();
    out.insert("id".into(), json!(last.id));
    out.insert("type".into(), render::types(&last.types, ctx));
    if opts.sys_attrs {
        if let Some(c) = &last.created_at {
            out.insert("createdAt".into(), json!(c.to_text()));
        }
        if let Some(m) = &last.modified_at {
            out.insert("modifiedAt".into(), json!(m.to_text()));
        }
    }
    out.insert("deletedAt".into(), json!(change.at.to_text()));
    if trigger == Trigger::AttributeDeleted || show_changes {
        // An entity deletion fires attributeDeleted for the watched attributes: those are the
        // ones deleted as far as this subscription is concerned.
        let watched = |name: &str| {
            trigger != Trigger::AttributeDeleted
                || spec.sub.watched_attributes.as_ref().is_none_or(|w| w.iter().any(|a| a == name))
        };
        for (name, instances) in last.attrs.iter().filter(|(name, _)| watched(name)) {
            for prev in instances.iter().filter(|a| keeps(spec, name, a.dataset_id.as_deref())) {
                push_instance(&mut out, ctx.compact(name), deleted_instance(prev, &change.at, ctx, opts, show_changes));
            }
        }
    }
    trim_core(spec, &mut out);
    out
}

/// The entity of `data` with its linked entities (§4.5.23): with `join=inline` each one
/// rendered under `entity` in the Relationship that points to it (in the simplified format,
/// in place of the Relationship's object), with `join=flat` each one after it in `data`.
/// Linked entities come whole, in the subscription's format: its attribute selection is about
/// the subscribed entities (as the ETSI suite's 046_26 and 046_30 expect).
pub fn with_linked(
    spec: &Spec,
    entity: &Entity,
    mut out: Map<String, Value>,
    linked: &HashMap<String, Entity>,
    ctx: &Context,
) -> Vec<Map<String, Value>> {
    if linked.is_empty() {
        return vec![out];
    }
    let inline = spec.sub.notification.join.as_deref() == Some("inline");
    let opts = spec.sub.render_options();
    let simplified = opts.format == Format::KeyValues;
    let mut flat: Vec<Map<String, Value>> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (name, instances) in &entity.attrs {
        let key = ctx.compact(name);
        for target in instances.iter().flat_map(|a| a.value.targets()) {
            let Some(linked_entity) = linked.get(target) else { continue };
            if inline {
                let rendered = Value::Object(render::entity(linked_entity, ctx, &opts));
                match out.get_mut(&key) {
                    Some(Value::Object(attr)) if !simplified => {
                        attr.insert("entity".into(), rendered);
                    }
                    Some(slot @ Value::String(_)) if simplified => *slot = rendered,
                    _ => {}
                }
            } else if !seen.contains(&target) {
                seen.push(target);
                flat.push(render::entity(linked_entity, ctx, &opts));
            }
        }
    }
    std::iter::once(out).chain(flat).collect()
}

/// One entity of a periodic notification: its current state.
pub fn snapshot_entity(spec: &Spec, entity: &Entity, ctx: &Context) -> Map<String, Value> {
    let mut out = render::entity(&project(spec, entity), ctx, &spec.sub.render_options());
    trim_core(spec, &mut out);
    out
}

/// The notification body. With JSON-LD, the @context goes into the notification and into each
/// entity of `data` (receivers process the entities on their own).
pub fn notification(spec: &Spec, data: Vec<Map<String, Value>>, json_ld: bool) -> Value {
    let data: Vec<Value> = data
        .into_iter()
        .map(|mut e| {
            if json_ld {
                let mut with = Map::with_capacity(e.len() + 1);
                with.insert("@context".into(), spec.notify.value.clone());
                with.append(&mut e);
                e = with;
            }
            Value::Object(e)
        })
        .collect();
    let mut out = Map::new();
    out.insert("id".into(), json!(format!("urn:ngsi-ld:Notification:{}", uuid::Uuid::new_v4())));
    out.insert("type".into(), json!("Notification"));
    out.insert("subscriptionId".into(), json!(spec.sub.id));
    out.insert("notifiedAt".into(), json!(Timestamp::now().to_text()));
    out.insert("data".into(), Value::Array(data));
    if json_ld {
        out.insert("@context".into(), spec.notify.value.clone());
    }
    Value::Object(out)
}
