use super::*;
use hanbat_model::jsonld::ContextBuilder;
use hanbat_model::parse::{Mode, entity as parse_entity};
use hanbat_model::{ErrorKind, Timestamp};
use serde_json::{Value as Json, json};

const DC: &str = "https://uri.etsi.org/ngsi-ld/default-context/";

fn ctx() -> Context {
    let mut b = ContextBuilder::from_core();
    let user =
        json!({"schema": "https://schema.org/", "brand": "schema:brand", "Vehicle": "https://example.org/Vehicle"});
    b.apply_object(user.as_object().unwrap(), false).unwrap();
    b.build()
}

fn entity(json: Json) -> Entity {
    let mut e = parse_entity(json.as_object().unwrap().clone(), &ctx(), Mode::Entity).unwrap();
    e.stamp_created(&Timestamp::parse("2024-05-01T12:00:00Z").unwrap());
    e
}

fn q(text: &str) -> Query {
    Query::parse(text, &ctx()).unwrap_or_else(|e| panic!("{text}: {}", e.detail))
}

fn err(text: &str) -> String {
    let e = Query::parse(text, &ctx()).expect_err(text);
    assert_eq!(e.kind, ErrorKind::BadRequestData);
    e.detail
}

/// Asserts which of the queries match the entity.
fn check(e: &Entity, cases: &[(&str, bool)]) {
    for (text, expected) in cases {
        assert_eq!(q(text).matches(e), *expected, "{text}");
    }
}

fn vehicle() -> Entity {
    entity(json!({
        "id": "urn:ngsi-ld:Vehicle:1",
        "type": "Vehicle",
        "speed": {"type": "Property", "value": 80, "unitCode": "KMH", "observedAt": "2024-05-01T10:00:00Z",
                  "accuracy": {"type": "Property", "value": 0.5,
                               "source": {"type": "Property", "value": "gps"}}},
        "temperature": {"type": "Property", "value": -3.5e0},
        "brandName": {"type": "Property", "value": "Mercedes"},
        "brand": {"type": "Property", "value": "schema"},
        "almostFull": {"type": "Property", "value": false},
        "tags": {"type": "Property", "value": ["red", "fast", 7]},
        "isParked": {"type": "Relationship", "object": "urn:ngsi-ld:OffStreetParking:Downtown1"},
        "owners": {"type": "Relationship", "object": ["urn:ngsi-ld:Person:A", "urn:ngsi-ld:Person:B"]},
        "route": {"type": "ListRelationship", "objectList": ["urn:ngsi-ld:Stop:1", {"object": "urn:ngsi-ld:Stop:2"}]},
        "name": {"type": "LanguageProperty", "languageMap": {"fr": "rouge", "en": "red", "de": ["rot", "rote"]}},
        "category": {"type": "VocabProperty", "vocab": "lamp"},
        "ranks": {"type": "ListProperty", "valueList": [3, 1, 2]},
        "config": {"type": "JsonProperty", "json": {"id": "85a6cc52", "value": "Overstay 60 minutes"}},
        "address": {"type": "Property", "value": {"city": "Berlin", "zip": {"code": 10115}, "lines": ["a", "b"]}},
        "serviced": {"type": "Property", "value": {"@type": "DateTime", "@value": "2023-12-24T12:00:00Z"}},
        "lastSeen": {"type": "Property", "value": "2024-04-30T23:00:00+09:00"},
        "opens": {"type": "Property", "value": "08:30:00"},
        "built": {"type": "Property", "value": "2019-06-01"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [127.38, 36.35]}}
    }))
}

#[test]
fn numbers() {
    check(
        &vehicle(),
        &[
            ("speed==80", true),
            ("speed==80.0", true),
            ("speed==8e1", true),
            ("speed!=80", false),
            ("speed!=81", true),
            ("speed>79.5", true),
            ("speed>80", false),
            ("speed>=80", true),
            ("speed<80", false),
            ("speed<=80", true),
            ("speed==70..90", true),
            ("speed==80..80", true),
            ("speed==81..90", false),
            ("speed!=81..90", true),
            ("speed!=70..90", false),
            ("speed==1,2,80", true),
            ("speed!=1,2,80", false),
            ("speed!=1,2,3", true),
            ("temperature<-3", true),
            ("temperature==-3.5", true),
            ("temperature==-4..-3", true),
            ("speed==\"80\"", false),
            ("speed!=\"80\"", true),
            ("speed>\"a\"", false),
            ("speed==true", false),
        ],
    );
}

#[test]
fn strings_booleans_and_escapes() {
    let e = entity(json!({
        "id": "urn:x:1", "type": "T",
        "text": {"type": "Property", "value": "say \"hi\"\\ été 𝄞"},
        "name": {"type": "Property", "value": "Eiffel Tower"},
        "flag": {"type": "Property", "value": true}
    }));
    check(
        &e,
        &[
            (r#"text=="say \"hi\"\\ \u00e9t\u00E9 \ud834\udd1e""#, true),
            (r#"text=="say \"hi\"\\ été 𝄞""#, true),
            (r#"name=="Eiffel Tower""#, true),
            (r#"name>"Eiffel""#, true),
            (r#"name<"F""#, true),
            (r#"name=="Eiffel Tower","Pisa Tower""#, true),
            (r#"name == "Pisa Tower" , "Eiffel Tower""#, true),
            (r#"name=="A".."F""#, true),
            (r#"name=="a".."z""#, false),
            ("flag==true", true),
            ("flag!=false", true),
            ("flag==false", false),
            ("flag==\"true\"", false),
            ("name==Eiffel", false),
        ],
    );
}

#[test]
fn dates_times_and_metadata() {
    check(
        &vehicle(),
        &[
            ("speed.observedAt>=2024-05-01T00:00:00Z", true),
            ("speed.observedAt>2024-05-01", true),
            ("speed.observedAt==2024-05-01T19:00:00+09:00", true),
            ("speed.observedAt<\"2024-05-01T10:00:01Z\"", true),
            ("speed.observedAt==2024-05-01T10:00:00.000Z", true),
            ("speed.unitCode==\"KMH\"", true),
            ("speed.unitCode==KMH", true),
            ("speed.createdAt==2024-05-01T12:00:00Z", true),
            ("speed.modifiedAt<2024-05-02", true),
            ("brandName.observedAt", false),
            ("!brandName.observedAt", true),
            ("createdAt==2024-05-01T12:00:00Z", true),
            ("modifiedAt>\"2020-01-01T00:00:00Z\"", true),
            ("modifiedAt<2020-01-01", false),
            ("serviced>2023-12-24T11:59:59Z", true),
            ("serviced==2023-12-24", false),
            ("serviced<2024-01-01", true),
            ("lastSeen==2024-04-30T14:00:00Z", true),
            ("lastSeen>2024-04-30", true),
            ("lastSeen==\"2024-04-30T23:00:00+09:00\"", true),
            ("built==2019-06-01", true),
            ("built<2019-06-01T00:00:01Z", true),
            ("built>\"2019\"", true),
            ("opens>08:00:00", true),
            ("opens<=08:30:00Z", true),
            ("opens==08:00:00..09:00:00", true),
            ("opens>2024-01-01", false),
            ("speed>2024-01-01", false),
        ],
    );
}

#[test]
fn relationships_compare_only_for_equality() {
    check(
        &vehicle(),
        &[
            ("isParked==urn:ngsi-ld:OffStreetParking:Downtown1", true),
            ("isParked==\"urn:ngsi-ld:OffStreetParking:Downtown1\"", true),
            ("isParked==urn:ngsi-ld:OffStreetParking:Other,urn:ngsi-ld:OffStreetParking:Downtown1", true),
            ("isParked!=urn:ngsi-ld:OffStreetParking:Downtown1", false),
            ("isParked!=urn:ngsi-ld:OffStreetParking:Other", true),
            ("isParked>\"urn:a\"", false),
            ("isParked~=\"Downtown\"", false),
            ("isParked!~=\"Uptown\"", false),
            ("owners==urn:ngsi-ld:Person:B", true),
            ("owners!=urn:ngsi-ld:Person:B", false),
            ("owners!=urn:ngsi-ld:Person:C", true),
            ("route==urn:ngsi-ld:Stop:2", true),
            ("route==urn:ngsi-ld:Stop:3", false),
            ("route>\"urn:a\"", false),
        ],
    );
}

#[test]
fn language_vocab_list_and_json_properties() {
    check(
        &vehicle(),
        &[
            ("name==\"red\"", true),
            ("name==\"rote\"", true),
            ("name[en]==\"red\"", true),
            ("name[EN]==\"red\"", true),
            ("name[en]==\"rouge\"", false),
            ("name[*]==\"rouge\"", true),
            ("name[*]!=\"red\"", false),
            ("name[en]!=\"black\"", true),
            ("name[fr]~=\"^rou\"", true),
            ("name[de]==\"rot\"", true),
            ("name[it]", false),
            ("!name[it]", true),
            ("name[en]", true),
            ("name[en.x]", false),
            ("category==lamp", false),
            (&format!("category=={DC}lamp"), true),
            (&format!("category==\"{DC}lamp\""), true),
            ("category[x]", false),
            ("ranks==2", true),
            ("ranks>2", true),
            ("ranks>3", false),
            ("ranks!=4", true),
            ("ranks!=1", false),
            ("config[value]==\"Overstay 60 minutes\"", true),
            ("config[id]~=\"^85\"", true),
            ("config[missing]", false),
            ("location[type]==\"Point\"", true),
        ],
    );
}

#[test]
fn expand_values_expands_query_values_of_listed_attributes() {
    let e = vehicle();
    let options = QueryOptions::with_expand_values("category, other");
    let parsed = Query::parse_with("category==lamp", &ctx(), &options).unwrap();
    assert!(parsed.matches(&e));
    assert_eq!(parsed.to_string(), format!("category=={DC}lamp"));
    assert!(Query::parse_with("category==\"lamp\",desk", &ctx(), &options).unwrap().matches(&e));
    assert!(!Query::parse_with("category!=lamp", &ctx(), &options).unwrap().matches(&e));
    // Only the listed attributes' values are expanded.
    assert!(Query::parse_with("brandName==Mercedes", &ctx(), &options).unwrap().matches(&e));
}

#[test]
fn arrays_match_by_element() {
    check(
        &vehicle(),
        &[
            ("tags==\"red\"", true),
            ("tags==\"blue\",\"fast\"", true),
            ("tags!=\"red\"", false),
            ("tags!=\"blue\"", true),
            ("tags==7", true),
            ("tags>6", true),
            ("tags~=\"^f\"", true),
            ("tags!~=\"^x\"", true),
            ("tags!~=\"^r\"", false),
        ],
    );
}

#[test]
fn patterns() {
    check(
        &vehicle(),
        &[
            ("brandName~=\"^Merc\"", true),
            ("brandName~=^Merc", true),
            ("brandName~=(?i)^merc", true),
            ("brandName~=^(Merc|BMW)", true),
            ("brandName~=\"^BMW\"", false),
            ("brandName!~=\"^BMW\"", true),
            ("brandName!~=\"^Merc\"", false),
            ("brandName~=ced;speed==80", true),
            ("brandName~=BMW|speed==80", true),
            ("(brandName~=BMW)|speed==80", true),
            (r#"brandName~="\w+des$""#, true),
            (r#"brandName~="\"""#, false),
            ("speed~=\"8\"", false),
            ("speed!~=\"8\"", false),
            ("address~=\"Berlin\"", false),
            ("missing!~=\"x\"", false),
        ],
    );
}

#[test]
fn sub_attributes_compound_values_and_existence() {
    check(
        &vehicle(),
        &[
            ("speed.accuracy==0.5", true),
            ("speed.accuracy<1", true),
            ("speed.accuracy.source==\"gps\"", true),
            ("speed.accuracy.source", true),
            ("speed.accuracy.missing", false),
            ("!speed.accuracy.missing", true),
            ("speed.missing.source", false),
            ("address[city]==\"Berlin\"", true),
            ("address[city]!=\"Paris\"", true),
            ("address[zip.code]==10115", true),
            ("address[zip.code]>10000", true),
            ("address[postcode]==\"Berlin\"", false),
            ("address[postcode]!=\"Berlin\"", false),
            ("address[city]", true),
            ("address[postcode]", false),
            ("!address[postcode]", true),
            ("address[lines]==\"b\"", true),
            ("address[lines.0]", false),
            ("address==\"Berlin\"", false),
            ("address!=\"Berlin\"", true),
            ("address", true),
            ("!address", false),
            ("nothing", false),
            ("!nothing", true),
            ("nothing!=1", false),
            ("speed[x]", false),
        ],
    );
}

#[test]
fn multi_instance_attributes_match_if_any_instance_does() {
    let e = entity(json!({
        "id": "urn:x:1", "type": "T",
        "speed": [
            {"type": "Property", "value": 50},
            {"type": "Property", "value": 90, "datasetId": "urn:ngsi-ld:Dataset:radar",
             "observedAt": "2024-01-01T00:00:00Z"}
        ]
    }));
    check(
        &e,
        &[
            ("speed==50", true),
            ("speed==90", true),
            ("speed>80", true),
            ("speed<60", true),
            ("speed!=50", true),
            ("speed!=50,90", false),
            ("speed.datasetId==urn:ngsi-ld:Dataset:radar", true),
            ("speed.datasetId==urn:ngsi-ld:Dataset:other", false),
            ("speed.observedAt", true),
            ("speed==50;speed==90", true),
        ],
    );
}

#[test]
fn precedence_and_grouping() {
    let e = vehicle();
    // `;` binds tighter than `|`.
    check(
        &e,
        &[
            ("speed==1|speed==80;brandName==\"x\"", false),
            ("speed==80|speed==1;brandName==\"x\"", true),
            ("(speed==80|speed==1);brandName==\"x\"", false),
            ("((speed>50|rpm>3000);brandName==\"Mercedes\")", true),
            ("(temperature>=20;temperature<=25)|speed<=80", true),
            ("!heading;speed>25", true),
            ("speed>25|heading>100", true),
            ("( speed > 50 ; brandName != \"BMW\" )", true),
        ],
    );
    let parsed = q("a;(b;c);(d|(e|f))");
    let Expr::And(items) = parsed.expr() else { panic!("{parsed:?}") };
    assert_eq!(items.len(), 4);
    assert!(matches!(&items[3], Expr::Or(inner) if inner.len() == 3));
    assert_eq!(parsed.to_string(), "a;b;c;(d|e|f)");
}

#[test]
fn names_are_expanded_at_parse_time() {
    let parsed = q("brand==\"x\";schema:color==\"y\";speed");
    let iris: Vec<&str> = parsed.attributes();
    assert_eq!(iris, ["https://schema.org/brand", "https://schema.org/color", &format!("{DC}speed")]);
    assert!(q("brand==\"schema\"").matches(&vehicle()));
    let Expr::And(items) = parsed.expr() else { panic!() };
    let Expr::Term(Term { path: Path::Attribute(p), .. }) = &items[0] else { panic!() };
    assert_eq!((p.attr.text.as_str(), p.attr.iri.as_str()), ("brand", "https://schema.org/brand"));
    // Compound-value keys are never expanded.
    let Expr::Term(Term { path: Path::Attribute(p), .. }) = q("address[brand]").into_expr() else { panic!() };
    assert_eq!(p.keys, ["brand"]);
}

#[test]
fn mismatched_types_never_match_nor_fail() {
    let e = vehicle();
    for attr in
        ["speed", "brandName", "almostFull", "tags", "isParked", "name", "category", "ranks", "config", "address"]
    {
        for op_value in ["==true", ">2024-01-01", "<12:00:00", "==\"zz\"", ">=-1e300", "~=\"^$\"", "==x..y"] {
            let text = format!("{attr}{op_value}");
            if let Ok(parsed) = Query::parse(&text, &ctx()) {
                let _ = parsed.matches(&e);
            }
        }
    }
}

fn linked_entities() -> (Entity, HashMap<String, Entity>) {
    let building = entity(json!({
        "id": "urn:ngsi-ld:Building:1", "type": "Building",
        "managedBy": {"type": "Relationship", "object": "urn:ngsi-ld:Building:2"},
        "owner": {"type": "Relationship", "object": ["urn:ngsi-ld:Person:missing", "urn:ngsi-ld:Person:1"]},
    }));
    let target = entity(json!({
        "id": "urn:ngsi-ld:Building:2", "type": "Building",
        "name": {"type": "Property", "value": "Pisa Tower"},
    }));
    let person = entity(json!({
        "id": "urn:ngsi-ld:Person:1", "type": "Person",
        "works": {"type": "Relationship", "object": "urn:ngsi-ld:Building:2"},
    }));
    let links = [target, person].into_iter().map(|e| (e.id.clone(), e)).collect();
    (building, links)
}

#[test]
fn linked_entity_paths() {
    let (building, links) = linked_entities();
    for (text, expected) in [
        ("managedBy{name}==\"Pisa Tower\"", true),
        ("managedBy{Building:name}==\"Pisa Tower\"", true),
        ("managedBy{Vehicle,Building:name}==\"Pisa Tower\"", true),
        ("managedBy{Vehicle:name}==\"Pisa Tower\"", false),
        ("managedBy{name}==\"Eiffel Tower\"", false),
        ("managedBy{name}", true),
        ("!managedBy{name}", false),
        ("managedBy{height}", false),
        ("!managedBy{height}", true),
        ("owner{works{name}}==\"Pisa Tower\"", true),
        ("owner{Person:works{Building:name}}~=\"^Pisa\"", true),
        ("owner{works{Vehicle:name}}", false),
        ("name{x}", false),
    ] {
        let parsed = q(text);
        assert_eq!(parsed.matches_with(&building, &links), expected, "{text}");
    }
    // Without a resolver linked terms see nothing.
    assert!(!q("managedBy{name}").matches(&building));
    assert!(q("!managedBy{name}").matches(&building));
    assert_eq!(q("managedBy{name}==1;speed>1").link_depth(), 1);
    assert_eq!(q("owner{works{name}}==\"x\"|a").link_depth(), 2);
    assert_eq!(q("a==1").link_depth(), 0);
    assert_eq!(q("owner{works{name}}").attributes(), [format!("{DC}owner")]);
}

#[test]
fn planner_helpers() {
    let parsed = q("speed>50;(a==1|b==2);speed<=90.5;temperature==10..20;tags==3;x!=1;speed.accuracy>1;speed==\"a\"");
    let conjuncts: Vec<_> = parsed.conjuncts().collect();
    assert_eq!(conjuncts.len(), 8);
    let ranges: Vec<_> = parsed
        .conjuncts()
        .filter_map(|c| match c {
            Expr::Term(t) => t.numeric_range(),
            _ => None,
        })
        .collect();
    let speed = format!("{DC}speed");
    let temperature = format!("{DC}temperature");
    let tags = format!("{DC}tags");
    assert_eq!(
        ranges,
        [
            NumericRange { attr: &speed, lower: Bound::Excluded(50.0), upper: Bound::Unbounded },
            NumericRange { attr: &speed, lower: Bound::Unbounded, upper: Bound::Included(90.5) },
            NumericRange { attr: &temperature, lower: Bound::Included(10.0), upper: Bound::Included(20.0) },
            NumericRange { attr: &tags, lower: Bound::Included(3.0), upper: Bound::Included(3.0) },
        ]
    );
    assert_eq!(q("a").conjuncts().count(), 1);
    assert_eq!(parsed.terms().count(), 9);
    // Only entity members: the "too wide" check of §5.7.2.4 needs to know.
    assert!(q("modifiedAt>\"2020-01-01T00:00:00Z\"").attributes().is_empty());
}

#[test]
fn display_round_trips() {
    for text in [
        "speed>50;brandName!=\"Mercedes\"",
        "(speed>50|rpm>3000);brandName==\"Mercedes\"",
        "a|b;c|d",
        "!a;b",
        "temperature.observedAt>=2017-12-24T12:00:00Z",
        "sensor.rawdata[airquality.particulate]==40",
        "x==\"a\\\"b\\\\c\\n\",1,-2.5e-3,true,false,2024-01-01,12:00:00,urn:a:b",
        "x!=1..2",
        "x==\"a\"..\"b\"",
        "x~=\"^a\\\"b\\\\d+\"",
        "x!~=\"(?i)x\"",
        "managedBy{Building,Vehicle:name.sub[k]}==\"x\"",
        "owner{works{name}}",
        "createdAt>2020-01-01",
        "speed.unitCode==\"KMH\"",
    ] {
        let first = q(text);
        let printed = first.to_string();
        let second = q(&printed);
        assert_eq!(first, second, "{text} → {printed}");
    }
}

#[test]
fn errors_name_parameter_position_and_problem() {
    for (text, detail) in [
        ("", "q: empty query at 0"),
        ("   ", "q: empty query at 0"),
        ("(a==1))", "q: unexpected ')' at 6, expected ';', '|' or the end of the query"),
        ("(brandName==\"x\";speed>1", "q: unclosed '(' at 0"),
        ("speed>", "q: unexpected end at 6, expected a value after '>'"),
        ("speed>;a", "q: unexpected ';' at 6, expected a value after '>'"),
        ("==5", "q: unexpected '=' at 0, expected an attribute name"),
        ("a==1;", "q: unexpected end at 5, expected an attribute name"),
        ("a==1||b", "q: unexpected '|' at 5, expected an attribute name"),
        ("a=1", "q: unexpected '=' at 1, expected ';', '|' or the end of the query"),
        ("a==1 b==2", "q: unexpected 'b' at 5, expected ';', '|' or the end of the query"),
        ("airQualityLevel>4..5", "q: a range can only follow '==' or '!=', not '>' at 17"),
        ("a<1,2", "q: a list of values can only follow '==' or '!=', not '<' at 3"),
        ("a>true", "q: '>' needs a number, a quoted string, a date, a date-time or a time, not true at 2"),
        ("a>=urn:x", "q: '>=' needs a number, a quoted string, a date, a date-time or a time, not urn:x at 3"),
        ("a==1..\"b\"", "q: the bounds of the range 1..\"b\" are of different types at 3"),
        ("a==5..1", "q: the range 5..1 is empty: its minimum is above its maximum at 3"),
        ("a==x..y", "q: a range bound must be a number, a quoted string, a date, a date-time or a time, not x at 3"),
        ("a==1,2..3", "q: a list of values cannot contain a range at 6"),
        ("a==1..2,3", "q: a list of values cannot contain a range at 7"),
        ("a==1e400", "q: the number 1e400 is out of range at 3"),
        ("a==2024-13-01", "q: '2024-13-01' is not a valid date at 3"),
        ("a>2024-01-01T25:00:00Z", "q: '2024-01-01T25:00:00Z' is not a valid date-time at 2"),
        ("a<25:00", "q: '25:00' is not a valid time at 2"),
        ("a==\"abc", "q: unterminated string at 3"),
        ("a==\"a\\qb\"", "q: invalid escape '\\q' in a string at 5"),
        ("a==\"\\u12\"", "q: '\\u' must be followed by 4 hexadecimal digits at 4"),
        ("a==\"\\ud834\"", "q: unpaired UTF-16 surrogate in a string at 4"),
        ("a==\"tab\there\"", "q: control character in a string (escape it) at 7"),
        ("a~=", "q: expected a regular expression after '~=' at 3"),
        ("a~=\"(x\"", "q: invalid regular expression: unclosed group at 3"),
        (
            "a~=\"x**\"",
            "q: invalid regular expression: a repetition operator cannot follow another one (at character 2 of the pattern) at 3",
        ),
        ("a~=\"abc", "q: unterminated pattern at 3"),
        ("!a==1", "q: '!attr' tests non-existence and cannot be followed by '==' at 2"),
        ("!!a", "q: unexpected '!' at 1, expected an attribute name"),
        ("a.", "q: unexpected end at 2, expected a sub-attribute name after '.'"),
        ("a[", "q: unexpected end at 2, expected a member name inside '[ ]'"),
        ("a[b", "q: unclosed '[' at 1"),
        ("a[b.]", "q: unexpected ']' at 4, expected a member name inside '[ ]'"),
        ("a[b]c", "q: unexpected 'c' at 4, expected ';', '|' or the end of the query"),
        ("a[b].c==1", "q: unexpected '.' after the trailing path at 4"),
        ("a[b][c]", "q: unexpected '[' after the trailing path at 4"),
        ("a.observedAt.x", "q: a metadata member (observedAt, unitCode, …) ends the path at 12"),
        ("a.observedAt[x]", "q: a metadata member has no compound value to address with '[' at 12"),
        ("observedAt>2020-01-01", "q: 'observedAt' must follow an attribute name, as in speed.observedAt at 0"),
        ("createdAt.x", "q: unexpected '.' at 9, expected an operator: 'createdAt' is a date-time of the entity"),
        ("id==urn:x:1", "q: 'id' is not an attribute (select entities by id, idPattern and type instead) at 0"),
        ("a.type==1", "q: 'type' is not an attribute (select entities by id, idPattern and type instead) at 2"),
        ("rel{", "q: unexpected end at 4, expected an attribute name"),
        ("rel{name", "q: unclosed '{' at 3"),
        ("rel{name]", "q: unexpected ']' at 8, expected '}'"),
        ("rel{T,:name}", "q: unexpected ':' at 6, expected an entity type name after ','"),
        ("rel{T,U name}", "q: unexpected ' ' at 7, expected ':' after the entity types of a linked path"),
        ("rel{name}.x", "q: unexpected '.' at 9, expected an operator after '}'"),
        ("observedAt{name}", "q: 'observedAt' is not a relationship at 0"),
        ("a==", "q: unexpected end at 3, expected a value after '=='"),
        ("a==1,", "q: unexpected end at 5, expected a value after '=='"),
        ("a===1", "q: unexpected '=' at 3, expected a value after '=='"),
    ] {
        assert_eq!(err(text), detail, "{text}");
    }
    let deep = format!("{}a{}", "(".repeat(40), ")".repeat(40));
    assert_eq!(err(&deep), "q: nesting deeper than 32 levels at 32");
    let deep_links = format!("{}a{}", "r{".repeat(40), "}".repeat(40));
    assert!(err(&deep_links).starts_with("q: nesting deeper than 32 levels at "));
    // Positions count characters, not bytes.
    assert_eq!(err("온도>"), "q: unexpected end at 3, expected a value after '>'");
}

#[test]
fn whitespace_is_allowed_between_tokens_only() {
    assert!(q(" speed == 80 ; ( brandName == \"Mercedes\" | x ) ").matches(&vehicle()));
    assert_eq!(err("brandName==Eiffel Tower"), "q: unexpected 'T' at 18, expected ';', '|' or the end of the query");
}
