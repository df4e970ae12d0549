//! Evaluation of `q` over an entity (§4.9 "semantics of the operators").
//!
//! A path resolves to zero or more *leaves*: one per attribute instance it reaches (every
//! `datasetId`, at every sub-attribute level). A term holds when some leaf satisfies it, so a
//! multi-instance attribute matches when any instance does. Within a leaf, an array value is a
//! set of elements: `==` holds when some element equals, `!=` when none does.

use super::{AttrPath, Expr, LinkResolver, Member, Operand, Path, Predicate, Term};
use crate::value::{Target, compare};
use hanbat_model::{AttrValue, Attribute, Entity};
use serde_json::Value as Json;
use std::cmp::Ordering;

pub(super) fn expr(e: &Expr, entity: &Entity, links: &dyn LinkResolver) -> bool {
    match e {
        Expr::Term(t) => term(t, entity, links),
        Expr::And(items) => items.iter().all(|e| expr(e, entity, links)),
        Expr::Or(items) => items.iter().any(|e| expr(e, entity, links)),
    }
}

fn term(t: &Term, entity: &Entity, links: &dyn LinkResolver) -> bool {
    match t.predicate {
        // Non-existence is the negation of existence over the whole path (every instance, every
        // linked entity), not "some instance lacks it".
        Predicate::NotExists => !path(&t.path, &Predicate::Exists, entity, links),
        _ => path(&t.path, &t.predicate, entity, links),
    }
}

fn path(p: &Path, pred: &Predicate, entity: &Entity, links: &dyn LinkResolver) -> bool {
    match p {
        Path::Entity(member) => {
            entity_instant(entity, *member).is_some_and(|t| leaf_matches(pred, &Leaf::plain(vec![t])))
        }
        Path::Attribute(a) => instances(entity, a).any(|inst| leaf(inst, a).is_some_and(|l| leaf_matches(pred, &l))),
        Path::Linked(l) => {
            let Some(rel) = entity.attrs.get(&l.relationship.iri) else { return false };
            rel.iter().flat_map(|inst| inst.value.targets()).any(|id| {
                links.resolve(id).is_some_and(|target| {
                    (l.types.is_empty() || l.types.iter().any(|t| target.types.contains(&t.iri)))
                        && path(&l.path, pred, &target, links)
                })
            })
        }
    }
}

/// The element an entity is ordered by on `p` (§4.23): the first one the path reaches, in
/// instance order; `None` when the path reaches nothing.
pub(crate) fn sort_target<'a>(p: &'a Path, entity: &'a Entity) -> Option<Target<'a>> {
    match p {
        Path::Entity(member) => entity_instant(entity, *member),
        Path::Attribute(a) => instances(entity, a).find_map(|inst| leaf(inst, a)?.elements.into_iter().next()),
        Path::Linked(_) => None,
    }
}

/// `createdAt` / `modifiedAt` of the entity itself.
fn entity_instant(entity: &Entity, member: Member) -> Option<Target<'static>> {
    let at = match member {
        Member::CreatedAt => entity.created_at.as_ref(),
        Member::ModifiedAt => entity.modified_at.as_ref(),
        _ => None,
    }?;
    Some(Target::Instant(at.micros()))
}

/// The instances that the attribute and sub-attribute names of a path reach.
fn instances<'a>(entity: &'a Entity, p: &'a AttrPath) -> impl Iterator<Item = &'a Attribute> + 'a {
    let top = entity.attrs.get(&p.attr.iri).into_iter().flatten();
    let mut level: Box<dyn Iterator<Item = &'a Attribute> + 'a> = Box::new(top);
    for name in &p.sub {
        level = Box::new(level.flat_map(move |inst| inst.sub.get(&name.iri).into_iter().flatten()));
    }
    level
}

/// What one instance offers a predicate: the elements of its target value.
struct Leaf<'a> {
    elements: Vec<Target<'a>>,
    /// Relationship objects: only `==` and `!=` can match them (§4.9).
    relationship: bool,
}

impl<'a> Leaf<'a> {
    fn plain(elements: Vec<Target<'a>>) -> Self {
        Self { elements, relationship: false }
    }

    /// A JSON value as a set of elements: an array is its elements, anything else itself.
    fn json(value: &'a Json) -> Self {
        match value {
            Json::Array(items) => Self::plain(items.iter().map(Target::Json).collect()),
            other => Self::plain(vec![Target::Json(other)]),
        }
    }
}

/// The leaf of an instance, or `None` when the path's target element does not exist in it.
fn leaf<'a>(inst: &'a Attribute, p: &'a AttrPath) -> Option<Leaf<'a>> {
    if let Some(member) = p.member {
        let target = match member {
            Member::ObservedAt => Target::Instant(inst.observed_at.as_ref()?.micros()),
            Member::CreatedAt => Target::Instant(inst.created_at.as_ref()?.micros()),
            Member::ModifiedAt => Target::Instant(inst.modified_at.as_ref()?.micros()),
            Member::UnitCode => Target::Str(inst.unit_code.as_deref()?),
            Member::DatasetId => Target::Str(inst.dataset_id.as_deref()?),
        };
        return Some(Leaf::plain(vec![target]));
    }
    match &inst.value {
        AttrValue::Property(v) | AttrValue::JsonProperty(v) | AttrValue::GeoProperty(v) => {
            member_path(v, &p.keys).map(Leaf::json)
        }
        AttrValue::ListProperty(items) if p.keys.is_empty() => {
            Some(Leaf::plain(items.iter().map(Target::Json).collect()))
        }
        AttrValue::Relationship { object, .. } if p.keys.is_empty() => {
            let elements = match object {
                Json::Array(items) => items.iter().filter_map(Json::as_str).map(Target::Str).collect(),
                Json::String(s) => vec![Target::Str(s)],
                _ => Vec::new(),
            };
            Some(Leaf { elements, relationship: true })
        }
        AttrValue::ListRelationship(_) if p.keys.is_empty() => {
            Some(Leaf { elements: inst.value.targets().map(Target::Str).collect(), relationship: true })
        }
        AttrValue::VocabProperty(v) if p.keys.is_empty() => {
            let elements = match v {
                Json::Array(items) => items.iter().filter_map(Json::as_str).map(Target::Str).collect(),
                Json::String(s) => vec![Target::Str(s)],
                _ => Vec::new(),
            };
            Some(Leaf::plain(elements))
        }
        AttrValue::LanguageProperty(map) => {
            // `attr` and `attr[*]` see every language's texts, `attr[en]` only English (tags
            // compare case-insensitively, as BCP 47 says).
            let selected: Vec<&Json> = match p.keys.as_slice() {
                [] => map.values().collect(),
                [tag] if tag == "*" => map.values().collect(),
                [tag] => map.iter().filter(|(k, _)| k.eq_ignore_ascii_case(tag)).map(|(_, v)| v).collect(),
                _ => return None,
            };
            if selected.is_empty() {
                return None;
            }
            let elements = selected
                .into_iter()
                .flat_map(|v| match v {
                    Json::Array(items) => items.iter().collect(),
                    other => vec![other],
                })
                .map(Target::Json)
                .collect();
            Some(Leaf::plain(elements))
        }
        _ => None,
    }
}

/// ECMA-262 member access in dot notation (§4.9): through objects only; an undefined member
/// makes the target element non-existent.
fn member_path<'a>(value: &'a Json, keys: &[String]) -> Option<&'a Json> {
    keys.iter().try_fold(value, |v, k| v.as_object()?.get(k))
}

fn leaf_matches(pred: &Predicate, leaf: &Leaf<'_>) -> bool {
    let elements = leaf.elements.iter().copied();
    match pred {
        Predicate::Exists => true,
        // Evaluated by `term` as the negation of `Exists`; a leaf exists, so it cannot hold here.
        Predicate::NotExists => false,
        Predicate::Equal(operand) => elements.clone().any(|e| operand_holds(operand, e)),
        Predicate::NotEqual(operand) => !elements.clone().any(|e| operand_holds(operand, e)),
        _ if leaf.relationship => false,
        Predicate::Compare(op, value) => elements.clone().any(|e| compare(e, value).is_some_and(|o| op.holds(o))),
        Predicate::Matches(re) => elements.clone().filter_map(|e| e.as_str()).any(|s| re.is_match(s)),
        Predicate::NotMatches(re) => {
            // Not matching needs a string to not match: a number "does not match" nothing.
            let mut strings = elements.filter_map(|e| e.as_str()).peekable();
            strings.peek().is_some() && strings.all(|s| !re.is_match(s))
        }
    }
}

fn operand_holds(operand: &Operand, e: Target<'_>) -> bool {
    match operand {
        Operand::Value(v) => compare(e, v) == Some(Ordering::Equal),
        Operand::List(values) => values.iter().any(|v| compare(e, v) == Some(Ordering::Equal)),
        Operand::Range(min, max) => {
            compare(e, min).is_some_and(Ordering::is_ge) && compare(e, max).is_some_and(Ordering::is_le)
        }
    }
}
