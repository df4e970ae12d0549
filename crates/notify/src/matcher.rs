//! Matching: which subscriptions a committed change notifies, and with which trigger.
//!
//! The index ([`crate::registry::Registry::candidates`]) yields the subscriptions that can match;
//! each is then checked here in full: state, trigger, watched attributes and the selection with
//! its filters ([`hanbat_store::EntityQuery::matches`], the same semantics as entity queries).

use crate::registry::Spec;
use crate::subscription::{State, Trigger};
use hanbat_model::Timestamp;
use hanbat_store::{AttrChangeKind, Change, ChangeKind};

/// The trigger that `change` fires for `spec`, if it notifies at all.
pub fn matches(spec: &Spec, change: &Change, now: &Timestamp) -> Option<Trigger> {
    let sub = &spec.sub;
    // Periodic subscriptions notify on their own clock, never on changes (§5.2.12 timeInterval).
    if sub.time_interval.is_some() || sub.state(now) != State::Active {
        return None;
    }
    let trigger = fired(spec, change)?;
    // Linked-entity filters need the linked entities: the sender evaluates those.
    if spec.linked_q {
        let mut query = spec.query.clone();
        query.q = None;
        return query.matches(&change.entity).then_some(trigger);
    }
    spec.query.matches(&change.entity).then_some(trigger)
}

/// The first trigger of the subscription that the change fires, taking `watchedAttributes` into
/// account: attribute triggers need a watched attribute among the changed ones, entity triggers
/// an entity that has (or, for updates, changed) one.
fn fired(spec: &Spec, change: &Change) -> Option<Trigger> {
    let watched = spec.sub.watched_attributes.as_deref();
    let is_watched = |name: &str| watched.is_none_or(|w| w.iter().any(|a| a == name));
    let changed = |kind: AttrChangeKind| change.attrs.iter().any(|a| a.kind == kind && is_watched(&a.name));
    match change.kind {
        ChangeKind::Created => {
            let has_watched = || watched.is_none() || change.entity.attrs.keys().any(|n| is_watched(n));
            if spec.fires(Trigger::EntityCreated) && has_watched() {
                Some(Trigger::EntityCreated)
            } else if spec.fires(Trigger::AttributeCreated) && changed(AttrChangeKind::Created) {
                Some(Trigger::AttributeCreated)
            } else {
                None
            }
        }
        ChangeKind::Deleted => {
            let has_watched = || watched.is_none() || change.entity.attrs.keys().any(|n| is_watched(n));
            if spec.fires(Trigger::EntityDeleted) && has_watched() {
                Some(Trigger::EntityDeleted)
            } else if spec.fires(Trigger::AttributeDeleted) && changed(AttrChangeKind::Deleted) {
                Some(Trigger::AttributeDeleted)
            } else {
                None
            }
        }
        ChangeKind::Updated => {
            // Attribute triggers first: they name what happened more precisely.
            for (trigger, kind) in [
                (Trigger::AttributeUpdated, AttrChangeKind::Updated),
                (Trigger::AttributeCreated, AttrChangeKind::Created),
                (Trigger::AttributeDeleted, AttrChangeKind::Deleted),
            ] {
                if spec.fires(trigger) && changed(kind) {
                    return Some(trigger);
                }
            }
            let any_watched_change = if watched.is_none() {
                // A change of types or scopes alone is an entity update too.
                true
            } else {
                change.attrs.iter().any(|a| is_watched(&a.name))
            };
            (spec.fires(Trigger::EntityUpdated) && any_watched_change).then_some(Trigger::EntityUpdated)
        }
    }
}
