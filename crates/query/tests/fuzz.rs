//! A bounded, proptest-driven fuzz of every parser and evaluator: random text, token soup and
//! mutations of valid queries never panic, and every failure is a `BadRequestData` naming its
//! parameter. Inputs are short (tens of characters), so each case is quick; `fuzz/` has the
//! open-ended `cargo fuzz` targets.

// Test code: unwrap on fixtures is part of the assertion.
#![allow(clippy::unwrap_used)]

use hanbat_model::jsonld::core_context;
use hanbat_model::parse::{Mode, entity as parse_entity};
use hanbat_model::{Entity, ErrorKind, NgsiError, Timestamp};
use hanbat_query::{GeoQuery, Query, ScopeQuery, TypeQuery, compile_id_pattern};
use proptest::prelude::*;
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::sync::OnceLock;

const VALID_Q: [&str; 14] = [
    "speed>50;brandName!=\"Mercedes\"",
    "((speed>50|rpm>3000);brandName==\"Mercedes\")",
    "temperature.observedAt>=2017-12-24T12:00:00Z",
    "sensor.rawdata[airquality.particulate]==40",
    "color[en]==\"red\"|color[*]!=\"rot\"",
    "name==\"Eiffel Tower\",\"Pisa Tower\"",
    "airQualityLevel!=4..5;!heading",
    "name!~=\"^Eiffel\"|brandName~=^(Merc|BMW)",
    "managedBy{Building,Vehicle:name}==\"Pisa Tower\"",
    "owner{works{name}}~=\"x\"",
    "locatedIn==urn:ngsi-ld:City:Pisa",
    "modifiedAt>\"2020-01-01T00:00:00Z\"",
    "opens==08:00:00..09:00:00;built<2019-06-01",
    "address[city];speed.unitCode==\"KMH\"",
];

fn expect_400(param: &str, input: &str, e: NgsiError) -> Result<(), TestCaseError> {
    prop_assert_eq!(e.kind, ErrorKind::BadRequestData, "{}", input);
    prop_assert!(e.detail.starts_with(param), "{:?} → {}", input, e.detail);
    Ok(())
}

fn entity() -> &'static (Entity, HashMap<String, Entity>) {
    static E: OnceLock<(Entity, HashMap<String, Entity>)> = OnceLock::new();
    E.get_or_init(|| {
        let body = json!({
            "id": "urn:ngsi-ld:Building:1", "type": "Building",
            "speed": [{"type": "Property", "value": 80, "observedAt": "2024-01-01T00:00:00Z", "unitCode": "KMH"},
                      {"type": "Property", "value": [1, "a"], "datasetId": "urn:d:1"}],
            "brandName": {"type": "Property", "value": "Mercedes"},
            "color": {"type": "LanguageProperty", "languageMap": {"en": "red", "de": ["rot"]}},
            "address": {"type": "Property", "value": {"city": "Berlin"}},
            "managedBy": {"type": "Relationship", "object": "urn:ngsi-ld:Building:1"},
            "owner": {"type": "ListRelationship", "objectList": ["urn:ngsi-ld:Building:1"]},
            "name": {"type": "Property", "value": "Pisa Tower"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 1]}},
        });
        let mut e = parse_entity(body.as_object().unwrap().clone(), &core_context(), Mode::Entity).unwrap();
        e.stamp_created(&Timestamp::now());
        // The entity links to itself, so linked paths of any depth find something.
        let links = [(e.id.clone(), e.clone())].into();
        (e, links)
    })
}

/// Strings made of the characters the query languages give meaning to.
fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "a",
            "speed",
            "x.y",
            "[",
            "]",
            "{",
            "}",
            "(",
            ")",
            ";",
            "|",
            ",",
            "!",
            "==",
            "!=",
            ">",
            ">=",
            "<",
            "<=",
            "~=",
            "!~=",
            "..",
            "\"",
            "\\",
            "\\u",
            "d834",
            "1",
            "-2.5e3",
            "true",
            "2024-01-01",
            "T10:00:00Z",
            "12:00",
            "urn:x:1",
            ":",
            "*",
            "#",
            "+",
            "/",
            " ",
            "é",
            "\u{0}",
            "near",
            ";maxDistance==",
            "within",
            "observedAt",
            "createdAt",
        ]),
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

/// A valid query with a few characters inserted, deleted or replaced.
fn mutated() -> impl Strategy<Value = String> {
    let edit = (
        any::<prop::sample::Index>(),
        0u8..3,
        prop::sample::select(";|()[]{}.,!=<>~\"\\:a1 ".chars().collect::<Vec<_>>()),
    );
    (prop::sample::select(VALID_Q.to_vec()), prop::collection::vec(edit, 1..4)).prop_map(|(q, edits)| {
        let mut chars: Vec<char> = q.chars().collect();
        for (at, kind, c) in edits {
            let i = at.index(chars.len() + 1);
            match kind {
                0 => chars.insert(i, c),
                1 if i < chars.len() => {
                    chars.remove(i);
                }
                _ if i < chars.len() => chars[i] = c,
                _ => chars.push(c),
            }
        }
        chars.into_iter().collect()
    })
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>().prop_map(|s| s.chars().take(40).collect()), token_soup(), mutated()]
}

fn check_q(input: &str) -> Result<(), TestCaseError> {
    let ctx = core_context();
    match Query::parse(input, &ctx) {
        Ok(q) => {
            let (e, links) = entity();
            let _ = q.matches(e);
            let _ = q.matches_with(e, links);
            let _ = (q.link_depth(), q.attributes(), q.conjuncts().count());
            // What parses prints back to an equal query.
            let printed = q.to_string();
            let again = Query::parse(&printed, &ctx)
                .map_err(|e| TestCaseError::fail(format!("{input:?} → {printed:?}: {}", e.detail)))?;
            prop_assert_eq!(again, q, "{:?} → {:?}", input, printed);
            Ok(())
        }
        Err(e) => expect_400("q: ", input, e),
    }
}

/// A geometry type with GeoJSON-ish coordinates: usually of the matching shape, sometimes not;
/// numbers in and out of range.
fn shaped_geometry() -> impl Strategy<Value = (&'static str, Json)> {
    let number = prop_oneof![
        4 => (-3i32..4).prop_map(|n| json!(n)),
        1 => prop::sample::select(vec![json!(0.5), json!(-180), json!(180), json!(90.0), json!(-91), json!(1e300), json!("1")]),
    ];
    // Mostly valid positions on a small grid, so that shapes are often valid but degenerate
    // (repeated points, zero-area rings, self-intersections): the cases geometry code gets wrong.
    let position = prop_oneof![
        24 => (-3i32..4, -3i32..4).prop_map(|(x, y)| json!([x, y])),
        1 => prop::collection::vec(number, 0..4).prop_map(Json::Array),
    ];
    let line = prop::collection::vec(position.clone(), 1..6).prop_map(Json::Array);
    let closed_ring = prop::collection::vec(position.clone(), 3..7).prop_map(|mut ps| {
        ps.push(ps[0].clone());
        Json::Array(ps)
    });
    let polygon = prop::collection::vec(prop_oneof![4 => closed_ring, 1 => line.clone()], 1..3).prop_map(Json::Array);
    let lines = prop::collection::vec(line.clone(), 1..3).prop_map(Json::Array);
    let points = prop::collection::vec(position.clone(), 1..4).prop_map(Json::Array);
    let polygons = prop::collection::vec(polygon.clone(), 1..3).prop_map(Json::Array);
    let any_kind = prop::sample::select(vec![
        "Point",
        "MultiPoint",
        "LineString",
        "MultiLineString",
        "Polygon",
        "MultiPolygon",
        "Circle",
    ]);
    prop_oneof![
        2 => position.clone().prop_map(|c| ("Point", c)),
        1 => points.prop_map(|c| ("MultiPoint", c)),
        2 => line.clone().prop_map(|c| ("LineString", c)),
        1 => lines.prop_map(|c| ("MultiLineString", c)),
        3 => polygon.clone().prop_map(|c| ("Polygon", c)),
        1 => polygons.prop_map(|c| ("MultiPolygon", c)),
        1 => (any_kind, prop_oneof![position, line, polygon]),
    ]
}

fn georel() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec![
            "near;maxDistance==100000", "near;minDistance==1", "within", "contains", "intersects", "equals", "disjoint",
            "overlaps",
        ])
        .prop_map(String::from),
        1 => token_soup(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn q_never_panics(input in any_text()) {
        check_q(&input)?;
    }

    #[test]
    fn type_scope_and_id_pattern_never_panic(input in any_text()) {
        match TypeQuery::parse(&input, &core_context()) {
            Ok(t) => {
                let _ = (t.matches(&["https://uri.etsi.org/ngsi-ld/default-context/a".to_string()]), t.any_of());
                prop_assert_eq!(TypeQuery::parse(&t.to_string(), &core_context()).unwrap(), t);
            }
            Err(e) => expect_400("type: ", &input, e)?,
        }
        match ScopeQuery::parse(&input) {
            Ok(s) => {
                let _ = s.matches(&["/a/b".to_string(), "/speed".to_string()]);
                prop_assert_eq!(ScopeQuery::parse(&s.to_string()).unwrap(), s);
            }
            Err(e) => expect_400("scopeQ: ", &input, e)?,
        }
        match compile_id_pattern(&input) {
            Ok(p) => { let _ = p.is_match("urn:ngsi-ld:Building:1"); }
            Err(e) => expect_400("idPattern: ", &input, e)?,
        }
    }
}

proptest! {
    // Geometry predicates cost more per case than parsing.
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn geo_queries_never_panic(
        rel in georel(),
        (kind, reference) in shaped_geometry(),
        (target_kind, target) in shaped_geometry(),
        as_text in any::<bool>(),
    ) {
        let ctx = core_context();
        let parsed = if as_text {
            GeoQuery::parse(&rel, kind, &reference.to_string(), None, &ctx)
        } else {
            GeoQuery::new(&rel, kind, &reference, Some("location"), &ctx)
        };
        match parsed {
            Ok(gq) => {
                let (e, _) = entity();
                let _ = (gq.matches(e), gq.search_bbox());
                let mut other = e.clone();
                if let Some(instances) = other.attrs.get_mut("https://uri.etsi.org/ngsi-ld/location") {
                    instances[0].value = hanbat_model::AttrValue::GeoProperty(json!({"type": target_kind, "coordinates": target}));
                }
                let _ = gq.matches(&other);
            }
            Err(e) => prop_assert!(
                ["georel: ", "geometry: ", "coordinates: "].iter().any(|p| e.detail.starts_with(p)) && e.kind == ErrorKind::BadRequestData,
                "{}", e.detail
            ),
        }
    }
}
