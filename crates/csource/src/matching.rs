//! Which registrations a discovery query or a registration subscription selects (§5.12: matching
//! of registrations against entity selectors and attributes; §5.10.2 for the filters).
//!
//! A registration matches when one of its RegistrationInfo covers the selection (an
//! EntityInfo that may describe a selected entity, and one of the requested attributes) and the
//! registration itself passes the filters (`q`/`csf` over its properties, `scopeQ`, the
//! geo-query over its location, the temporal query over its intervals).

use crate::registration::{EntityInfo, Interval, Registration, RegistrationInfo};
use hanbat_query::geoquery::geometry_from_geojson;
use hanbat_query::{GeoQuery, Query, ScopeQuery};
use hanbat_store::EntitySelector;
use hanbat_temporal::{TimeProperty, TimeRel};

/// A temporal query on registrations: `observedAt` (the default) looks at
/// `observationInterval`, `createdAt`/`modifiedAt` at `managementInterval` (§5.10.2).
#[derive(Debug, Clone)]
pub struct TimeQuery {
    pub property: TimeProperty,
    pub rel: TimeRel,
}

impl TimeQuery {
    fn matches(&self, reg: &Registration) -> bool {
        let interval = match self.property {
            TimeProperty::ObservedAt => &reg.observation_interval,
            _ => &reg.management_interval,
        };
        // A registration that declares no interval makes no claim about that time: like a
        // registration without a location for a geo-query, it does not match.
        let Some(Interval { start_at, end_at }) = interval else { return false };
        let (from, to) = self.rel.bounds();
        start_at.micros() < to && end_at.as_ref().is_none_or(|end| end.micros() >= from)
    }
}

/// The selection and filters of a registration query or subscription; names expanded.
#[derive(Debug, Clone, Default)]
pub struct RegQuery {
    /// Entity selectors; empty selects any entity.
    pub entities: Vec<EntitySelector>,
    /// Attributes (`attrs`, `watchedAttributes`); empty selects any attribute.
    pub attrs: Vec<String>,
    /// `q` and `csf`: both over the registration's properties.
    pub filters: Vec<Query>,
    pub scope: Option<ScopeQuery>,
    pub geo: Option<GeoQuery>,
    pub time: Option<TimeQuery>,
}

/// Whether an EntityInfo may describe an entity the selector selects. An id pattern against
/// an id pattern cannot be decided in general: such pairs are taken to overlap.
fn entity_matches(info: &EntityInfo, sel: &EntitySelector) -> bool {
    let type_ok = sel.types.as_ref().is_none_or(|t| t.matches(std::slice::from_ref(&info.entity_type)));
    let ids_ok = sel.ids.is_empty()
        || match (&info.id, &info.id_pattern) {
            (Some(id), _) => sel.ids.contains(id),
            (None, Some(p)) => hanbat_query::compile_id_pattern(p).is_ok_and(|p| sel.ids.iter().any(|i| p.is_match(i))),
            (None, None) => true,
        };
    let pattern_ok = match (&sel.id_pattern, &info.id) {
        (Some(p), Some(id)) => p.is_match(id),
        _ => true,
    };
    type_ok && ids_ok && pattern_ok
}

impl RegQuery {
    fn info_matches(&self, info: &RegistrationInfo) -> bool {
        let entities_ok = self.entities.is_empty()
            || info.entities.is_empty()
            || self.entities.iter().any(|sel| info.entities.iter().any(|e| entity_matches(e, sel)));
        let attrs_ok = self.attrs.is_empty() || info.all_attributes() || info.names().any(|n| self.attrs.contains(n));
        entities_ok && attrs_ok
    }

    /// The registration with only the RegistrationInfo elements this query selects: what a
    /// registration subscription notifies (§5.11.7). One that no longer matches at all (a
    /// `noLongerMatching` notification) is kept whole.
    pub fn relevant_part<'r>(&self, reg: &'r Registration) -> std::borrow::Cow<'r, Registration> {
        let relevant: Vec<RegistrationInfo> =
            reg.information.iter().filter(|info| self.info_matches(info)).cloned().collect();
        if relevant.is_empty() || relevant.len() == reg.information.len() {
            return std::borrow::Cow::Borrowed(reg);
        }
        std::borrow::Cow::Owned(Registration { information: relevant, ..reg.clone() })
    }

    pub fn matches(&self, reg: &Registration) -> bool {
        if !reg.information.iter().any(|info| self.info_matches(info)) {
            return false;
        }
        if !self.filters.is_empty() {
            let entity = reg.as_entity();
            if !self.filters.iter().all(|q| q.matches(&entity)) {
                return false;
            }
        }
        if let Some(scope) = &self.scope
            && !scope.matches(&reg.scopes())
        {
            return false;
        }
        if let Some(geo) = &self.geo {
            let target = reg.geometry(&geo.geoproperty.iri).and_then(|g| geometry_from_geojson(g).ok());
            if !target.is_some_and(|g| geo.matches_geometry(&g)) {
                return false;
            }
        }
        self.time.as_ref().is_none_or(|t| t.matches(reg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hanbat_model::{Timestamp, jsonld};
    use hanbat_query::TypeQuery;
    use serde_json::json;

    fn reg(body: serde_json::Value) -> Registration {
        let mut body = body;
        body["type"] = json!("ContextSourceRegistration");
        body["endpoint"] = json!("http://s.example");
        Registration::create(body.as_object().expect("object"), &jsonld::core_context()).expect("valid")
    }

    fn selector(ty: Option<&str>, ids: &[&str], pattern: Option<&str>) -> EntitySelector {
        let core = jsonld::core_context();
        EntitySelector {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            id_pattern: pattern.map(|p| hanbat_query::compile_id_pattern(p).expect("pattern")),
            types: ty.map(|t| TypeQuery::parse(t, &core).expect("type")),
        }
    }

    #[test]
    fn entity_and_attribute_matching() {
        let vehicle = reg(json!({"information": [
            {"entities": [{"id": "urn:v:1", "type": "Vehicle"}], "propertyNames": ["speed"]},
            {"entities": [{"idPattern": ".*downtown$", "type": "Parking"}]}]}));
        let names_only = reg(json!({"information": [{"propertyNames": ["name"]}]}));
        let q = |sel: EntitySelector, attrs: &[&str]| RegQuery {
            entities: vec![sel],
            attrs: attrs.iter().map(|a| jsonld::core_context().expand(a)).collect(),
            ..RegQuery::default()
        };
        assert!(q(selector(Some("Vehicle"), &[], None), &[]).matches(&vehicle));
        assert!(q(selector(Some("Vehicle"), &[], None), &["speed"]).matches(&vehicle));
        assert!(!q(selector(Some("Vehicle"), &[], None), &["name"]).matches(&vehicle));
        assert!(!q(selector(None, &["urn:v:2"], None), &[]).matches(&vehicle));
        assert!(q(selector(None, &["urn:p:downtown"], None), &[]).matches(&vehicle));
        assert!(!q(selector(Some("Building"), &[], None), &[]).matches(&vehicle));
        assert!(q(selector(Some("Parking"), &[], Some(".*downtown$")), &[]).matches(&vehicle));
        // No entities: any entity, but only its named attributes.
        assert!(q(selector(Some("Building"), &[], None), &["name"]).matches(&names_only));
        assert!(!q(selector(Some("Building"), &[], None), &["speed"]).matches(&names_only));
    }

    #[test]
    fn intervals() {
        let r = reg(json!({"information": [{"entities": [{"type": "B"}]}],
            "observationInterval": {"startAt": "2020-08-01T22:07:00Z", "endAt": "2021-08-01T21:07:00Z"}}));
        let at = |s: &str| Timestamp::parse(s).expect("instant").micros();
        let t =
            |rel| RegQuery { time: Some(TimeQuery { property: TimeProperty::ObservedAt, rel }), ..RegQuery::default() };
        assert!(t(TimeRel::Before(at("2021-08-01T22:00:00Z"))).matches(&r));
        assert!(!t(TimeRel::Before(at("2019-01-01T00:00:00Z"))).matches(&r));
        assert!(!t(TimeRel::After(at("2022-01-01T00:00:00Z"))).matches(&r));
        let management = RegQuery {
            time: Some(TimeQuery {
                property: TimeProperty::CreatedAt,
                rel: TimeRel::Before(at("2030-01-01T00:00:00Z")),
            }),
            ..RegQuery::default()
        };
        assert!(!management.matches(&r));
    }
}
