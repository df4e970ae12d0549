//! The query strings of the ETSI NGSI-LD conformance suite (TP/NGSI-LD/ContextInformation/
//! Consumption/Entity/QueryEntities) against the suite's fixtures, with the counts and statuses
//! the tests expect.

// Fixtures are built with unwrap: a fixture that does not parse should fail loudly.
#![allow(clippy::unwrap_used)]

use hanbat_model::jsonld::ContextBuilder;
use hanbat_model::parse::{Mode, entity as parse_entity};
use hanbat_model::{Context, Entity, ErrorKind, Timestamp};
use hanbat_query::{GeoQuery, Query, QueryOptions, ScopeQuery, TypeQuery, compile_id_pattern};
use serde_json::{Value, json};
use std::collections::HashMap;

/// `ngsi-ld-test-suite-compound.jsonld`: the suite's terms, then the core context.
fn suite_context() -> Context {
    let mut b = ContextBuilder::from_core();
    let terms = json!({
        "Building": "https://ngsi-ld-test-suite/context#Building",
        "Vehicle": "https://ngsi-ld-test-suite/context#Vehicle",
        "OffStreetParking": "https://ngsi-ld-test-suite/context#OffStreetParking",
        "airQualityLevel": "https://ngsi-ld-test-suite/context#airQualityLevel",
        "almostFull": "https://ngsi-ld-test-suite/context#almostFull",
        "brandName": "https://ngsi-ld-test-suite/context#brandName",
        "fuelLevel": "https://ngsi-ld-test-suite/context#fuelLevel",
        "name": "https://ngsi-ld-test-suite/context#name",
        "source": "https://ngsi-ld-test-suite/context#source",
        "speed": "https://ngsi-ld-test-suite/context#speed",
        "subCategory": "https://ngsi-ld-test-suite/context#subCategory"
    });
    b.apply_object(terms.as_object().unwrap(), false).unwrap();
    b.build()
}

fn entity(id: &str, mut body: Value) -> Entity {
    body["id"] = json!(id);
    body["type"] = json!("Building");
    let mut e = parse_entity(body.as_object().unwrap().clone(), &suite_context(), Mode::Entity).unwrap();
    e.stamp_created(&Timestamp::parse("2024-05-01T12:00:00Z").unwrap());
    e
}

/// building-simple-attributes{,-second,-third}.jsonld.
fn simple_buildings() -> [Entity; 3] {
    let building = |id: &str, name: &str, sub: &str, aql: i64, full: bool| {
        entity(
            id,
            json!({
                "name": {"type": "Property", "value": name},
                "subCategory": {"type": "Property", "value": sub},
                "airQualityLevel": {"type": "Property", "value": aql, "unitCode": "C62",
                                    "observedAt": "2020-09-09T16:40:00.000Z"},
                "almostFull": {"type": "Property", "value": full}
            }),
        )
    };
    let mut third = building("urn:ngsi-ld:Building:3", "Pisa Tower", "sightseeing", 7, false);
    third.attrs.extend(
        entity("urn:x:tmp", json!({"locatedIn": {"type": "Relationship", "object": "urn:ngsi-ld:City:Pisa"}})).attrs,
    );
    [
        building("urn:ngsi-ld:Building:1", "Eiffel Tower", "tourism", 4, false),
        building("urn:ngsi-ld:Building:2", "Pisa Tower", "tourism", 6, true),
        third,
    ]
}

fn count(
    q: &str,
    options: &QueryOptions,
    entities: &[Entity],
    links: &HashMap<String, Entity>,
) -> Result<usize, String> {
    let parsed = Query::parse_with(q, &suite_context(), options).map_err(|e| {
        assert_eq!(e.kind, ErrorKind::BadRequestData);
        e.detail
    })?;
    Ok(entities.iter().filter(|e| parsed.matches_with(e, links)).count())
}

#[test]
fn tp_019_07_019_09_019_32_q_on_simple_attributes() {
    let [first, second, third] = simple_buildings();
    let all = [first.clone(), second.clone(), third];
    let none = HashMap::new();
    let opts = QueryOptions::default();
    // 019_09 queries the three buildings.
    for (q, expected) in [
        ("name==\"Eiffel Tower\"", 1),
        ("name==\"Pisa Tower\";almostFull==false", 1),
        ("name==\"Pisa Tower\"|almostFull==false", 3),
        ("(name==\"Pisa Tower\"|name==\"Eiffel Tower\");almostFull==false", 2),
        ("airQualityLevel==4", 1),
        ("airQualityLevel>=4;airQualityLevel<7", 2),
        ("locatedIn==urn:ngsi-ld:City:Pisa", 1),
        ("locatedIn==urn:ngsi-ld:City:Paris", 0),
        ("locatedIn==urn:ngsi-ld:City:Pisa|locatedIn==urn:ngsi-ld:City:Paris", 1),
    ] {
        assert_eq!(count(q, &opts, &all, &none), Ok(expected), "019_09 {q}");
    }
    // 019_07 queries the first two.
    assert_eq!(count("airQualityLevel==6", &opts, &[first, second], &none), Ok(1));
    // 019_32: speed>100 over vehicles at 80 and 120; "speed>" is rejected.
    let vehicles: Vec<Entity> = [80, 120]
        .iter()
        .map(|s| entity("urn:ngsi-ld:Vehicle:x", json!({"speed": {"type": "Property", "value": s}})))
        .collect();
    assert_eq!(count("speed>100", &opts, &vehicles, &none), Ok(1));
    assert!(count("speed>", &opts, &vehicles, &none).is_err());
}

#[test]
fn tp_019_28_lists_ranges_and_not_pattern() {
    let [first, second, _] = simple_buildings();
    let two = [first, second];
    let none = HashMap::new();
    let opts = QueryOptions::default();
    for (q, expected) in [
        ("airQualityLevel==4..5", Ok(1)),
        ("airQualityLevel!=4..5", Ok(1)),
        ("name==\"Eiffel Tower\",\"Pisa Tower\"", Ok(2)),
        ("name!=\"Eiffel Tower\",\"Big Ben\"", Ok(1)),
        ("name!~=\"^Eiffel\"", Ok(1)),
    ] {
        assert_eq!(count(q, &opts, &two, &none), expected, "{q}");
    }
    assert!(count("airQualityLevel>4..5", &opts, &two, &none).is_err());
}

#[test]
fn tp_019_29_paths_languages_links_and_expand_values() {
    let features = entity(
        "urn:ngsi-ld:Building:qlFeatures019x29",
        json!({
            "address": {"type": "Property", "value": {"city": "Berlin", "street": "Ulrich Strasse"}},
            "color": {"type": "LanguageProperty", "languageMap": {"fr": "rouge", "en": "red", "de": "rot"}},
            "category": {"type": "VocabProperty", "vocab": "commercial"},
            "managedBy": {"type": "Relationship", "object": "urn:ngsi-ld:Building:qlTarget019x29"}
        }),
    );
    let target =
        entity("urn:ngsi-ld:Building:qlTarget019x29", json!({"name": {"type": "Property", "value": "Pisa Tower"}}));
    let both = [features, target.clone()];
    let links: HashMap<String, Entity> = [(target.id.clone(), target)].into();
    let plain = QueryOptions::default();
    for (q, expected) in [
        ("address[city]==\"Berlin\"", 1),
        ("address[postcode]==\"Berlin\"", 0),
        ("address[city]", 1),
        ("color[en]==\"red\"", 1),
        ("color[en]==\"rouge\"", 0),
        ("color[*]==\"rouge\"", 1),
        ("color[*]!=\"red\"", 0),
        ("managedBy{name}==\"Pisa Tower\"", 1),
        ("managedBy{Building:name}==\"Pisa Tower\"", 1),
        ("managedBy{Vehicle:name}==\"Pisa Tower\"", 0),
        ("managedBy>\"urn:a\"", 0),
        ("category==commercial", 0),
    ] {
        assert_eq!(count(q, &plain, &both, &links), Ok(expected), "{q}");
    }
    let expand = QueryOptions::with_expand_values("category");
    assert_eq!(count("category==commercial", &expand, &both, &links), Ok(1));
}

#[test]
fn tp_5722_01_validation_inputs() {
    let ctx = suite_context();
    // A q reading only system attributes parses; the broker sees that it names no attribute.
    assert!(Query::parse("modifiedAt>\"2020-01-01T00:00:00Z\"", &ctx).unwrap().attributes().is_empty());
    // Linked-entity depth is what the broker compares with join / joinLevel.
    assert_eq!(Query::parse("owner{name}==\"x\"", &ctx).unwrap().link_depth(), 1);
    assert_eq!(Query::parse("owner{works{name}}==\"x\"", &ctx).unwrap().link_depth(), 2);
    // Other q strings of the suite (subscriptions, temporal queries) parse too.
    for q in [
        "!heading;speed>25",
        "speed>25|name~=\"^m\"",
        "route==\"550\",\"551\"",
        "speed==10..40",
        "isConnectedTo{batteryLevel}<0.5",
        "ref==\"urn:dest:qp1\"",
        "snapshotPriority<5",
        "notanumber",
        "speed>=5;heading<90",
        "name==\"Eiffel%20Tower\"",
    ] {
        assert!(Query::parse(q, &ctx).is_ok(), "{q}");
    }
}

#[test]
fn tp_019_03_02_and_019_26_id_pattern_and_type_wildcard() {
    assert_eq!(compile_id_pattern("invalid_entity_id_pattern**").unwrap_err().kind, ErrorKind::BadRequestData);
    assert!(compile_id_pattern("urn:ngsi-ld:Building:.*").unwrap().is_match("urn:ngsi-ld:Building:019"));
    let ctx = suite_context();
    let any = TypeQuery::parse("*", &ctx).unwrap();
    assert!(any.matches(&["https://ngsi-ld-test-suite/context#Vehicle".to_string()]));
    let building = TypeQuery::parse("https://ngsi-ld-test-suite/context#Building", &ctx).unwrap();
    assert!(building.matches(&["https://ngsi-ld-test-suite/context#Building".to_string()]));
    assert_eq!(TypeQuery::parse("Building,Vehicle", &ctx).unwrap().any_of().map(|v| v.len()), Some(2));
}

#[test]
fn tp_019_01_06_and_019_34_scope_queries() {
    let one = vec!["/Madrid/Gardens/ParqueNorte".to_string()];
    let many = vec!["/Madrid/Gardens/ParqueNorte".to_string(), "/CompanyA/OrganizationB/UnitC".to_string()];
    let n = |q: &str| {
        let sq = ScopeQuery::parse(q).unwrap();
        [&one, &many].iter().filter(|s| sq.matches(s)).count()
    };
    assert_eq!(n("/Madrid/+/ParqueNorte"), 2);
    assert_eq!(n("/CompanyA/#"), 1);
    assert_eq!(n("(/Madrid/Gardens/ParqueNorte;/CompanyA/OrganizationB/UnitC)|/Madrid/Gardens/ParqueNorte"), 2);
}

fn located(id: &str, geometry: Value) -> Entity {
    entity(id, json!({"location": {"type": "GeoProperty", "value": geometry}}))
}

fn geo_count(
    georel: &str,
    geometry: &str,
    coordinates: &str,
    geoproperty: Option<&str>,
    entities: &[Entity],
) -> Result<usize, String> {
    let gq = GeoQuery::parse(georel, geometry, coordinates, geoproperty, &suite_context()).map_err(|e| {
        assert_eq!(e.kind, ErrorKind::BadRequestData);
        e.detail
    })?;
    Ok(entities.iter().filter(|e| gq.matches(e)).count())
}

#[test]
fn tp_019_01_05_and_019_10_points() {
    let points = [
        located("urn:b:1", json!({"type": "Point", "coordinates": [13.3986, 52.5547]})),
        located("urn:b:2", json!({"type": "Point", "coordinates": [13.509818, 52.363457]})),
        located("urn:b:3", json!({"type": "Point", "coordinates": [13.215983, 52.470441]})),
    ];
    let berlin = "[[[13.1616211,52.5438124],[13.597641,52.4840224],[13.5948944,52.3402782],[13.142395,52.386428],[13.1616211,52.5438124]]]";
    for (georel, geometry, coordinates, expected) in [
        ("equals", "Point", "[13.3986, 52.5547]", 1),
        ("near;maxDistance==15000", "Point", "[13.388930, 52.534473]", 2),
        ("near;minDistance==15000", "Point", "[13.388930, 52.534473]", 1),
        ("within", "Polygon", berlin, 2),
        ("disjoint", "Polygon", berlin, 1),
        ("disjoint", "Point", "[13.3986, 52.5547]", 2),
        ("contains", "Point", "[13.3986, 52.5547]", 1),
        ("intersects", "Point", "[13.3986, 52.5547]", 1),
    ] {
        assert_eq!(geo_count(georel, geometry, coordinates, None, &points), Ok(expected), "{georel} {coordinates}");
    }
}

#[test]
fn tp_019_11_polygons() {
    let polygons = [
        located(
            "urn:b:1",
            json!({"type": "Polygon", "coordinates": [[[13.2865906, 52.5648645], [13.2879639, 52.5648645], [13.2797241, 52.4988679], [13.477478, 52.4712703], [13.5049438, 52.5373084], [13.2865906, 52.5648645]]]}),
        ),
        located(
            "urn:b:2",
            json!({"type": "Polygon", "coordinates": [[[13.315773, 52.4757209], [13.339119, 52.4443421], [13.3892441, 52.4669371], [13.315773, 52.4757209]]]}),
        ),
    ];
    for (georel, geometry, coordinates, expected) in [
        (
            "equals",
            "Polygon",
            "[[[13.2865906,52.5648645],[13.2879639,52.5648645],[13.2797241,52.4988679],[13.477478,52.4712703],[13.5049438,52.5373084],[13.2865906,52.5648645]]]",
            1,
        ),
        (
            "intersects",
            "Polygon",
            "[[[13.3456421,52.4794848],[13.3641815,52.4428773],[13.4177399,52.4730023],[13.3459854,52.479903],[13.3456421,52.4794848]]]",
            1,
        ),
        (
            "contains",
            "Polygon",
            "[[[13.3844376,52.5356966],[13.3844376,52.5356966],[13.381691,52.5123012],[13.4235764,52.5100027],[13.4331894,52.5273425],[13.3844376,52.5356966]]]",
            1,
        ),
        (
            "contains",
            "Polygon",
            "[[[13.1369019,52.5198225],[13.1365585,52.5200314],[13.131752,52.4980907],[13.1832504,52.5026887],[13.1369019,52.5198225]]]",
            0,
        ),
        (
            "disjoint",
            "Polygon",
            "[[[13.1369019,52.5198225],[13.1365585,52.5200314],[13.131752,52.4980907],[13.1832504,52.5026887],[13.1369019,52.5198225]]]",
            2,
        ),
        (
            "within",
            "Polygon",
            "[[[13.3023834,52.4903066],[13.3027267,52.4905156],[13.2745743,52.465632],[13.3343124,52.4185447],[13.4311295,52.47107],[13.3023834,52.4903066]]]",
            1,
        ),
        (
            "overlaps",
            "Polygon",
            "[[[13.3456421,52.4794848],[13.3641815,52.4428773],[13.4177399,52.4730023],[13.3459854,52.479903],[13.3456421,52.4794848]]]",
            1,
        ),
        ("contains", "Point", "[13.3442688,52.4650045]", 1),
    ] {
        assert_eq!(geo_count(georel, geometry, coordinates, None, &polygons), Ok(expected), "{georel} {coordinates}");
    }
}

#[test]
fn tp_019_30_geoquery_edges() {
    let hole = entity(
        "urn:b:hole",
        json!({
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5, 5]}},
            "observationSpace": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8, 40]}}
        }),
    );
    let probes = [
        hole,
        located("urn:b:shell", json!({"type": "Point", "coordinates": [2, 2]})),
        located("urn:b:highlat", json!({"type": "LineString", "coordinates": [[0.0, 85.6], [1.0, 85.0]]})),
        located("urn:b:east", json!({"type": "Point", "coordinates": [10.0, 60.009]})),
    ];
    let holed = "[[[0,0],[10,0],[10,10],[0,10],[0,0]],[[4,4],[6,4],[6,6],[4,6],[4,4]]]";
    for (georel, geometry, coordinates, geoproperty, expected) in [
        ("within", "Polygon", holed, None, Ok(1)),
        ("near;maxDistance==2000", "Point", "[8,40]", Some("observationSpace"), Ok(1)),
        ("near;maxDistance==2000", "Point", "[8,40]", None, Ok(0)),
        ("near;maxDistance==2000", "LineString", "[[0,60],[10,60]]", None, Ok(1)),
        ("near;maxDistance==2000", "LineString", "[[0,61],[10,61]]", None, Ok(0)),
        ("near;maxDistance==20000", "Point", "[0,85]", None, Ok(1)),
        ("near;maxDistance==5000", "Point", "[0,85]", None, Ok(0)),
    ] {
        assert_eq!(geo_count(georel, geometry, coordinates, geoproperty, &probes), expected, "{georel} {coordinates}");
    }
    for (georel, detail) in [
        ("near;maxDistance==0", "georel: maxDistance must be a positive number of metres, not '0' at 18"),
        ("near;maxDistance==-100", "georel: maxDistance must be a positive number of metres, not '-100' at 18"),
        (
            "near;maxDistance==5;minDistance==1",
            "georel: 'near' takes exactly one distance (maxDistance or minDistance) at 19",
        ),
        (
            "near",
            "georel: unexpected end at 4, expected ';maxDistance==<metres>' or ';minDistance==<metres>' after 'near'",
        ),
        (
            "touches",
            "georel: unknown geo-relationship 'touches' (expected near, within, contains, intersects, equals, disjoint or overlaps) at 0",
        ),
        ("near;maxDistance==inf", "georel: maxDistance must be a positive number of metres, not 'inf' at 18"),
        ("near;maxDistance==1e400", "georel: maxDistance 1e400 is out of range at 18"),
        (
            "invalid",
            "georel: unknown geo-relationship 'invalid' (expected near, within, contains, intersects, equals, disjoint or overlaps) at 0",
        ),
    ] {
        assert_eq!(geo_count(georel, "Point", "[8,40]", None, &probes), Err(detail.to_string()), "{georel}");
    }
}
