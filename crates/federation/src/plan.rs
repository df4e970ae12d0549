//! Which registrations a request concerns, and what each of them provides (§4.3.6.2, §4.3.6.3).

use crate::Operation;
use hanbat_csource::{EntityInfo, Mode, Registration};
use std::collections::BTreeSet;

/// What a request is about: an entity (by id, by type, or both) and the attributes it touches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    pub id: Option<&'a str>,
    /// Expanded; empty when the request does not say.
    pub types: &'a [String],
    /// Expanded names the request involves; empty for all.
    pub attrs: &'a [String],
}

/// The attributes a registration provides for a target (expanded names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attrs {
    All,
    Only(BTreeSet<String>),
}

impl Attrs {
    pub fn contains(&self, name: &str) -> bool {
        match self {
            Attrs::All => true,
            Attrs::Only(names) => names.contains(name),
        }
    }

    fn add(&mut self, other: Attrs) {
        match (self, other) {
            (Attrs::All, _) => {}
            (this, Attrs::All) => *this = Attrs::All,
            (Attrs::Only(mine), Attrs::Only(theirs)) => mine.extend(theirs),
        }
    }

    /// The names a read asks this source for: its own names among the `requested` ones (all of
    /// its names when none are requested); empty for "every attribute".
    pub fn narrow(&self, requested: &[String]) -> Vec<String> {
        match self {
            Attrs::All => requested.to_vec(),
            Attrs::Only(names) if requested.is_empty() => names.iter().cloned().collect(),
            Attrs::Only(names) => names.iter().filter(|n| requested.contains(n)).cloned().collect(),
        }
    }
}

/// One registration a request concerns, with what it provides for the request's entity.
#[derive(Debug, Clone)]
pub struct Leg {
    pub registration: Registration,
    pub attrs: Attrs,
}

impl Leg {
    /// Exclusive and redirect sources hold their attributes in place of the broker.
    pub fn proxied(&self) -> bool {
        self.registration.mode.claims()
    }
}

/// The registrations a request concerns: those it is forwarded to, and the proxied ones
/// (exclusive, redirect) that do not support the operation: their attributes are not the
/// broker's to write, so that part of the request fails with a Conflict (§4.3.6.3).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub forward: Vec<Leg>,
    pub refused: Vec<Leg>,
}

fn entity_matches(info: &EntityInfo, target: &Target<'_>) -> bool {
    let type_ok = target.types.is_empty() || target.types.contains(&info.entity_type);
    let id_ok = match (target.id, &info.id, &info.id_pattern) {
        (None, ..) => true,
        (Some(id), Some(registered), _) => registered == id,
        (Some(id), None, Some(pattern)) => hanbat_query::compile_id_pattern(pattern).is_ok_and(|p| p.is_match(id)),
        (Some(_), None, None) => true,
    };
    type_ok && id_ok
}

/// What `reg` provides for `target`, if anything: the union over its RegistrationInfo that
/// describe the entity and name at least one of the target's attributes.
fn provided(reg: &Registration, target: &Target<'_>) -> Option<Attrs> {
    let mut out: Option<Attrs> = None;
    for info in &reg.information {
        if !info.entities.is_empty() && !info.entities.iter().any(|e| entity_matches(e, target)) {
            continue;
        }
        let attrs = if info.all_attributes() {
            Attrs::All
        } else {
            let names: BTreeSet<String> = info.names().cloned().collect();
            if !target.attrs.is_empty() && !target.attrs.iter().any(|a| names.contains(a)) {
                continue;
            }
            Attrs::Only(names)
        };
        match &mut out {
            Some(acc) => acc.add(attrs),
            None => out = Some(attrs),
        }
    }
    out
}

impl Plan {
    /// The plan of `op` on `target` over the tenant's live `registrations`.
    pub fn new(registrations: Vec<Registration>, op: Operation, target: &Target<'_>) -> Self {
        let mut plan = Plan::default();
        for registration in registrations {
            if !op.is_read() && registration.mode == Mode::Auxiliary {
                continue;
            }
            let Some(attrs) = provided(&registration, target) else { continue };
            let leg = Leg { registration, attrs };
            if op.served_by(&leg.registration) {
                plan.forward.push(leg);
            } else if leg.proxied() && !op.is_read() {
                plan.refused.push(leg);
            }
        }
        plan
    }

    pub fn is_empty(&self) -> bool {
        self.forward.is_empty() && self.refused.is_empty()
    }

    /// The attributes that proxied sources hold, which the broker leaves out of its own part
    /// of a write; `None` when no proxied source is concerned.
    pub fn claimed(&self) -> Option<Attrs> {
        let mut out: Option<Attrs> = None;
        for leg in self.forward.iter().chain(&self.refused).filter(|l| l.proxied()) {
            match &mut out {
                Some(acc) => acc.add(leg.attrs.clone()),
                None => out = Some(leg.attrs.clone()),
            }
        }
        out
    }

    /// Whether a proxied source holds `name`.
    pub fn claims(&self, name: &str) -> bool {
        self.claimed().is_some_and(|c| c.contains(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hanbat_model::jsonld;
    use serde_json::json;

    fn reg(body: serde_json::Value) -> Registration {
        let mut body = body;
        body["type"] = json!("ContextSourceRegistration");
        body["endpoint"] = json!("http://s.example");
        Registration::create(body.as_object().expect("object"), &jsonld::core_context()).expect("valid")
    }

    fn expand(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| jsonld::core_context().expand(n)).collect()
    }

    #[test]
    fn proxied_sources_claim_their_attributes_and_refuse_what_they_do_not_support() {
        let exclusive = reg(json!({"mode": "exclusive", "operations": ["retrieveEntity"], "information": [
            {"entities": [{"id": "urn:v:1", "type": "Vehicle"}], "propertyNames": ["speed"]}]}));
        let inclusive = reg(json!({"operations": ["redirectionOps"], "information": [
            {"entities": [{"idPattern": "urn:v:", "type": "Vehicle"}]}]}));
        let types = expand(&["Vehicle"]);
        let attrs = expand(&["speed", "brandName"]);
        let target = Target { id: Some("urn:v:1"), types: &types, attrs: &attrs };
        let plan = Plan::new(vec![exclusive.clone(), inclusive.clone()], Operation::AppendAttrs, &target);
        assert_eq!(plan.forward.len(), 1, "the inclusive source takes the append");
        assert_eq!(plan.refused.len(), 1, "the exclusive source does not support it");
        assert!(plan.claims(&expand(&["speed"])[0]));
        assert!(!plan.claims(&expand(&["brandName"])[0]));

        let reads = Plan::new(vec![exclusive, inclusive], Operation::RetrieveEntity, &target);
        assert_eq!(reads.forward.len(), 2);
        assert!(reads.refused.is_empty());
        let other = Target { id: Some("urn:w:1"), ..target };
        assert!(
            Plan::new(
                reads.forward.iter().map(|l| l.registration.clone()).collect(),
                Operation::RetrieveEntity,
                &other
            )
            .is_empty()
        );
    }

    #[test]
    fn groups_and_auxiliary() {
        let aux = reg(json!({"mode": "auxiliary", "information": [{"entities": [{"type": "Vehicle"}]}]}));
        let types = expand(&["Vehicle"]);
        let target = Target { types: &types, ..Target::default() };
        assert_eq!(Plan::new(vec![aux.clone()], Operation::QueryEntity, &target).forward.len(), 1);
        assert!(Plan::new(vec![aux.clone()], Operation::CreateEntity, &target).is_empty());
        assert!(Plan::new(vec![aux], Operation::PurgeEntity, &target).is_empty());
        let narrowed = Attrs::Only(expand(&["speed", "name"]).into_iter().collect());
        assert_eq!(narrowed.narrow(&expand(&["speed", "other"])), expand(&["speed"]));
        assert_eq!(Attrs::All.narrow(&[]), Vec::<String>::new());
    }
}
