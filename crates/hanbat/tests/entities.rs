//! Entities: create, retrieve, replace, merge, delete (§5.6.1, §5.6.6, §5.6.17, §5.6.18, §5.7.1)
//! and the input rules of §4.5–§4.7 they enforce.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed assertion

mod common;

use common::{TestBroker, assert_problem};
use reqwest::Method;
use serde_json::{Value, json};

async fn create(b: &TestBroker, entity: Value) {
    let r = b.post("/entities", &entity).await;
    let status = r.status();
    assert_eq!(status, 201, "create {entity}: {}", r.text().await.unwrap_or_default());
}

async fn refused(b: &TestBroker, entity: Value) {
    let r = b.post("/entities", &entity).await;
    assert_problem(r, 400, "BadRequestData").await;
}

async fn create_and_retrieve(b: &TestBroker) {
    let r = b
        .post(
            "/entities",
            &json!({"id": "urn:ngsi-ld:Car:1", "type": "Car", "speed": {"type": "Property", "value": 5}}),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], "/ngsi-ld/v1/entities/urn:ngsi-ld:Car:1");
    let e = b.get_json("/entities/urn:ngsi-ld:Car:1").await;
    assert_eq!(e["speed"], json!({"type": "Property", "value": 5}));
    let r = b.post("/entities", &json!({"id": "urn:ngsi-ld:Car:1", "type": "Car"})).await;
    assert_problem(r, 409, "AlreadyExists").await;
    assert_problem(b.get("/entities/urn:ngsi-ld:Car:404").await, 404, "ResourceNotFound").await;
    assert_problem(b.get("/entities/not-a-uri").await, 400, "BadRequestData").await;
}

/// §4.5.1: ids are URIs without invisible code points; names follow §4.6.2; core
/// non-reified terms are not attribute names.
async fn ids_and_names(b: &TestBroker) {
    for id in
        ["urn:ngsi-ld:Car:A\u{200B}B", "urn:ngsi-ld:Car:A\u{202E}B", "urn:ngsi-ld:Car:A\u{FEFF}B", "urn:ngsi-ld:null"]
    {
        refused(b, json!({"id": id, "type": "Car"})).await;
    }
    create(b, json!({"id": "urn:ngsi-ld:Ciudad:Par\u{ED}s", "type": "Ciudad"})).await;
    refused(b, json!({"id": "urn:ngsi-ld:Car:2", "type": "9Car"})).await;
    refused(b, json!({"id": "urn:ngsi-ld:Car:2", "type": "Car", "my attr": 1})).await;
    for reserved in ["datasetId", "instanceId", "observedAt"] {
        refused(b, json!({"id": "urn:ngsi-ld:Car:2", "type": "Car", reserved: {"type": "Property", "value": 1}})).await;
    }
    create(b, json!({"id": "urn:ngsi-ld:Škola:1", "type": "Škola", "výška_1": 7})).await;
    assert_eq!(b.get_json("/entities/urn:ngsi-ld:Škola:1").await["výška_1"]["value"], 7);
}

/// §4.5.2–§4.5.24 and §4.6–§4.7: members each attribute kind may and may not carry.
async fn attribute_kind_rules(b: &TestBroker) {
    let with = |attrs: Value| {
        let mut e = json!({"id": "urn:ngsi-ld:Car:3", "type": "Car"});
        e.as_object_mut().unwrap().extend(attrs.as_object().unwrap().clone());
        e
    };
    for bad in [
        json!({"p": {"type": "Property", "value": 1, "previousValue": 0}}),
        json!({"p": {"type": "Property", "value": 1, "entityIdSealed": "urn:a"}}),
        json!({"p": {"type": "Property", "value": 1, "@context": {"p": "https://evil.example/p"}}}),
        json!({"r": {"type": "Relationship", "object": "urn:a", "unitCode": "MTR"}}),
        json!({"j": {"type": "JsonProperty", "json": 5}}),
        json!({"j": {"type": "JsonProperty", "json": {"a": 1}, "unitCode": "MTR"}}),
        json!({"l": {"type": "LanguageProperty", "languageMap": {"en": 5}}}),
        json!({"l": {"type": "LanguageProperty", "languageMap": {"en": "x"}, "valueType": "xsd:string"}}),
        json!({"l": {"type": "LanguageProperty", "languageMap": {"@none": "urn:ngsi-ld:null"}}}),
        json!({"o": {"type": "ListRelationship", "objectList": ["not a uri"]}}),
        json!({"location": {"type": "Property", "value": 7}}),
        json!({"location": {"type": "GeoProperty", "value": {"type": "GeometryCollection", "geometries": []}}}),
        json!({"location": {"type": "GeoProperty", "value": "not a geometry"}}),
        json!({"p": {"type": "Property", "value": 3, "observedAt": "2026-08-10T12:00:00+02:00"}}),
        json!({"p": {"type": "Property", "value": {"country": "urn:ngsi-ld:null"}}}),
        json!({"p": {"type": "Property", "value": null}}),
        json!({"p": [{"type": "Property", "value": 1}, {"type": "Property", "value": 2, "datasetId": "@none"}]}),
    ] {
        refused(b, with(bad)).await;
    }
    assert_problem(b.get("/entities/urn:ngsi-ld:Car:3").await, 404, "ResourceNotFound").await;
    create(
        b,
        with(json!({
            "location": {"type": "GeoProperty", "value": "{\"type\": \"Point\", \"coordinates\": [127.38, 36.35]}"},
            "route": {"type": "ListRelationship", "objectList": ["urn:ngsi-ld:Road:1", {"object": "urn:ngsi-ld:Road:2"}]},
            "speed": [{"type": "Property", "value": 55, "datasetId": "@none"}, {"type": "Property", "value": 11, "datasetId": "urn:ngsi-ld:Dataset:gps"}],
            "tickets": {"json": {"speed": 3, "type": "raw"}},
            "ngsildproof": {"type": "Property", "value": {"type": "DataIntegrityProof"}, "entityIdSealed": "urn:ngsi-ld:Car:3", "entityTypeSealed": "Car"}
        })),
    )
    .await;
    let e = b.get_json("/entities/urn:ngsi-ld:Car:3").await;
    assert_eq!(e["location"]["value"], json!({"type": "Point", "coordinates": [127.38, 36.35]}));
    assert_eq!(e["route"]["objectList"], json!([{"object": "urn:ngsi-ld:Road:1"}, {"object": "urn:ngsi-ld:Road:2"}]));
    let default: Vec<&Value> = e["speed"].as_array().unwrap().iter().filter(|i| i.get("datasetId").is_none()).collect();
    assert_eq!(default[0]["value"], 55);
    assert_eq!(e["tickets"], json!({"type": "JsonProperty", "json": {"speed": 3, "type": "raw"}}));
    assert_eq!(e["ngsildproof"]["entityIdSealed"], "urn:ngsi-ld:Car:3");
    assert_eq!(e["ngsildproof"]["entityTypeSealed"], "Car");
    let kv = b.get_json("/entities/urn:ngsi-ld:Car:3?options=keyValues").await;
    assert_eq!(kv["speed"], json!({"dataset": {"@none": 55, "urn:ngsi-ld:Dataset:gps": 11}}));
    assert_eq!(kv["tickets"], json!({"json": {"speed": 3, "type": "raw"}}));
    assert_eq!(kv["route"], json!(["urn:ngsi-ld:Road:1", "urn:ngsi-ld:Road:2"]));
}

/// §5.6.17 / §5.5.12: merge deletes with the NGSI-LD null (per datasetId, per kind) and merges
/// compound values key by key.
async fn merge_nulls_and_compound_values(b: &TestBroker) {
    create(
        b,
        json!({"id": "urn:ngsi-ld:Building:1", "type": "Building",
            "address": {"type": "Property", "value": {"street": "Daehak-ro", "city": "Daejeon", "country": "KR"}},
            "name": [{"type": "Property", "value": "A", "datasetId": "urn:ngsi-ld:Dataset:01"}, {"type": "Property", "value": "B", "datasetId": "urn:ngsi-ld:Dataset:02"}],
            "street": {"type": "LanguageProperty", "languageMap": {"ko": "대학로", "en": "Daehak-ro"}}}),
    )
    .await;
    let r = b
        .patch(
            "/entities/urn:ngsi-ld:Building:1",
            &json!({"address": {"type": "Property", "value": {"street": "Gyeryong-ro", "country": "urn:ngsi-ld:null"}},
                "name": {"type": "Property", "value": "urn:ngsi-ld:null", "datasetId": "urn:ngsi-ld:Dataset:01"},
                "street": {"type": "LanguageProperty", "languageMap": {"@none": "urn:ngsi-ld:null"}}}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let e = b.get_json("/entities/urn:ngsi-ld:Building:1").await;
    assert_eq!(e["address"]["value"], json!({"street": "Gyeryong-ro", "city": "Daejeon"}));
    assert_eq!(e["name"]["datasetId"], "urn:ngsi-ld:Dataset:02");
    assert!(e.get("street").is_none());
    let r = b.patch("/entities/urn:ngsi-ld:Building:1", &json!({"address": {"type": "Property", "value": null}})).await;
    assert_problem(r, 400, "BadRequestData").await;
    for method in [Method::PATCH, Method::PUT] {
        let r = b.send(method, "/entities", &json!({"type": "Building"})).await;
        assert_problem(r, 400, "BadRequestData").await;
    }
}

/// §4.17: the `type` selector gates the operation on an entity.
async fn type_selector_gates_delete(b: &TestBroker) {
    create(b, json!({"id": "urn:ngsi-ld:Thing:1", "type": "Building"})).await;
    assert_problem(b.delete("/entities/urn:ngsi-ld:Thing:1?type=Vehicle").await, 404, "ResourceNotFound").await;
    b.get_json("/entities/urn:ngsi-ld:Thing:1").await;
    assert_eq!(b.delete("/entities/urn:ngsi-ld:Thing:1?type=Building").await.status(), 204);
    assert_problem(b.get("/entities/urn:ngsi-ld:Thing:1?type=Building").await, 404, "ResourceNotFound").await;
}

/// §5.7.1: representations, `lang`, pick/omit and their errors.
async fn retrieval_views(b: &TestBroker) {
    create(
        b,
        json!({"id": "urn:ngsi-ld:Place:1", "type": "Place",
            "street": {"type": "LanguageProperty", "languageMap": {"fr": "Grand Place", "nl": "Grote Markt"}},
            "name": "Plaza", "rank": 3}),
    )
    .await;
    let e = b.get_json("/entities/urn:ngsi-ld:Place:1?lang=nl-BE").await;
    assert_eq!(e["street"], json!({"type": "Property", "value": "Grote Markt", "lang": "nl"}));
    let e = b.get_json("/entities/urn:ngsi-ld:Place:1?lang=*&options=keyValues").await;
    assert_eq!(e["street"], "Grand Place");
    let e = b.get_json("/entities/urn:ngsi-ld:Place:1?format=keyValues&options=normalized").await;
    assert_eq!(e["rank"], 3);
    let e = b.get_json("/entities/urn:ngsi-ld:Place:1?pick=id,name|rank").await;
    assert_eq!(
        e,
        json!({"id": "urn:ngsi-ld:Place:1", "name": {"type": "Property", "value": "Plaza"}, "rank": {"type": "Property", "value": 3}})
    );
    assert_problem(b.get("/entities/urn:ngsi-ld:Place:1?pick=unknown").await, 404, "ResourceNotFound").await;
    assert_problem(b.get("/entities/urn:ngsi-ld:Place:1?attrs=unknown").await, 404, "ResourceNotFound").await;
    for bad in [
        "pick=id,,name",
        "pick=a||b",
        "pick=id,locatedAt{name",
        "pick=owner{name}",
        "pick=name&omit=name",
        "joinLevel=0&join=inline",
    ] {
        assert_problem(b.get(&format!("/entities/urn:ngsi-ld:Place:1?{bad}")).await, 400, "BadRequestData").await;
    }
    for bad in ["format=fancy", "options=keyValues,invalid"] {
        assert_problem(b.get(&format!("/entities/urn:ngsi-ld:Place:1?{bad}")).await, 400, "InvalidRequest").await;
    }
    let r = b
        .request(Method::GET, "/entities/urn:ngsi-ld:Place:1?geometryProperty=location")
        .header("Accept", "application/ld+json")
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "BadRequestData").await;
}

/// §6.3.4: the Accept header is weighed per RFC 9110, ties going to the list order json,
/// ld+json, geo+json; §6.3.6: GeoJSON carries its @context unless `Prefer: body=json`.
async fn accept_precedence_and_geojson_context(b: &TestBroker) {
    create(b, json!({"id": "urn:ngsi-ld:Lamp:1", "type": "Lamp", "location": {"type": "Point", "coordinates": [127.38, 36.35]}})).await;
    for (accept, expected) in [
        ("application/ld+json, application/json", "application/json"),
        ("application/geo+json, application/json", "application/json"),
        ("application/json;q=0.1, application/ld+json;q=0.9", "application/ld+json"),
        ("application/json;q=0, */*", "application/ld+json"),
        ("*/*;q=0.9, application/ld+json;q=0.8", "application/json"),
        ("application/ld+json;q=notanumber", "application/ld+json"),
    ] {
        let r = b.request(Method::GET, "/entities/urn:ngsi-ld:Lamp:1").header("Accept", accept).send().await.unwrap();
        assert_eq!(r.headers()["content-type"], expected, "Accept: {accept}");
    }
    let r = b.request(Method::GET, "/entities/urn:ngsi-ld:Lamp:1").header("Accept", "text/html").send().await.unwrap();
    assert_problem(r, 406, "NotAcceptable").await;
    let geo = |prefer: Option<&str>| {
        let mut req = b.request(Method::GET, "/entities?type=Lamp").header("Accept", "application/geo+json");
        if let Some(p) = prefer {
            req = req.header("Prefer", p);
        }
        req.send()
    };
    let r = geo(None).await.unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "FeatureCollection");
    assert!(body.get("@context").is_some());
    let r = geo(Some("body=json")).await.unwrap();
    assert!(r.headers().contains_key("link"));
    let body: Value = r.json().await.unwrap();
    assert!(body.get("@context").is_none());
}

/// Pages and counts stay exact when the store evaluates part of the query itself and the rest
/// after reading: 300 entities (more than one read batch), a `q` filter matching a third of
/// them, pages in creation order and by id.
async fn paging_with_filters(b: &TestBroker) {
    // Created in an order that differs from id order.
    let entities: Vec<Value> = (0..300)
        .map(|i| json!({"id": format!("urn:ngsi-ld:P:{:03}", (i * 7) % 300), "type": "P", "group": {"type": "Property", "value": i % 3}}))
        .collect();
    for chunk in entities.chunks(100) {
        let r = b.post("/entityOperations/create", &json!(chunk)).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let ids = |body: Value| -> Vec<String> {
        body.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
    };
    let r = b.get("/entities?type=P&q=group==1&offset=60&limit=20&count=true").await;
    assert_eq!(r.headers()["NGSILD-Results-Count"], "100");
    let expected: Vec<String> = (0..300)
        .filter(|i| i % 3 == 1)
        .skip(60)
        .take(20)
        .map(|i| format!("urn:ngsi-ld:P:{:03}", (i * 7) % 300))
        .collect();
    assert_eq!(ids(r.json().await.unwrap()), expected);
    let by_id = b.get_json("/entities?type=P&q=group==1&orderBy=id&offset=90&limit=20").await;
    let mut sorted: Vec<String> =
        (0..300).filter(|i| i % 3 == 1).map(|i| format!("urn:ngsi-ld:P:{:03}", (i * 7) % 300)).collect();
    sorted.sort();
    assert_eq!(ids(by_id), sorted[90..].to_vec());
}

/// Geo-queries (§4.10): the store may prefilter by bounding box, never changing the answer.
async fn geo_queries(b: &TestBroker) {
    let point = |id: &str, lon: f64, lat: f64| json!({"id": id, "type": "G", "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}});
    let square = json!({"id": "urn:ngsi-ld:G:area", "type": "G", "location": {"type": "GeoProperty", "value": {
        "type": "Polygon", "coordinates": [[[127.30, 36.30], [127.32, 36.30], [127.32, 36.32], [127.30, 36.32], [127.30, 36.30]]]}}});
    let batch = json!([
        point("urn:ngsi-ld:G:city-hall", 127.3845, 36.3504),
        point("urn:ngsi-ld:G:near-hall", 127.3900, 36.3550),
        point("urn:ngsi-ld:G:far", 127.4500, 36.4500),
        square,
        {"id": "urn:ngsi-ld:G:nowhere", "type": "G"},
    ]);
    assert_eq!(b.post("/entityOperations/create", &batch).await.status(), 201);
    let ids = |body: Value| -> Vec<String> {
        let mut ids: Vec<String> =
            body.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
        ids.sort();
        ids
    };
    let near = b
        .get_json("/entities?type=G&georel=near;maxDistance==1000&geometry=Point&coordinates=[127.3845,36.3504]")
        .await;
    assert_eq!(ids(near), ["urn:ngsi-ld:G:city-hall", "urn:ngsi-ld:G:near-hall"]);
    let within = b
        .get_json("/entities?type=G&georel=within&geometry=Polygon&coordinates=[[[127.38,36.34],[127.40,36.34],[127.40,36.36],[127.38,36.36],[127.38,36.34]]]")
        .await;
    assert_eq!(ids(within), ["urn:ngsi-ld:G:city-hall", "urn:ngsi-ld:G:near-hall"]);
    let hits = b.get_json("/entities?type=G&georel=intersects&geometry=Point&coordinates=[127.31,36.31]").await;
    assert_eq!(ids(hits), ["urn:ngsi-ld:G:area"]);
    let disjoint = b.get_json("/entities?type=G&georel=disjoint&geometry=Point&coordinates=[127.31,36.31]").await;
    assert_eq!(ids(disjoint), ["urn:ngsi-ld:G:city-hall", "urn:ngsi-ld:G:far", "urn:ngsi-ld:G:near-hall"]);
    // Moving an entity moves it in and out of answers.
    let r = b.patch("/entities/urn:ngsi-ld:G:far/attrs", &json!({"location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [127.3846, 36.3505]}}})).await;
    assert_eq!(r.status(), 204);
    let near = b
        .get_json("/entities?type=G&georel=near;maxDistance==1000&geometry=Point&coordinates=[127.3845,36.3504]")
        .await;
    assert_eq!(ids(near), ["urn:ngsi-ld:G:city-hall", "urn:ngsi-ld:G:far", "urn:ngsi-ld:G:near-hall"]);
}

store_tests! {
    paging_with_filters,
    geo_queries,
    create_and_retrieve,
    ids_and_names,
    attribute_kind_rules,
    merge_nulls_and_compound_values,
    type_selector_gates_delete,
    retrieval_views,
    accept_precedence_and_geojson_context,
}

/// Header names go out in title case (`Location`, `Content-Type`), as Orion-LD sends them: HTTP
/// makes them case-insensitive, but some clients look them up case-sensitively (the ETSI suite
/// tests `'Location' in headers`). Read off the raw HTTP/1.1 response, which a client library
/// would normalise.
#[tokio::test]
async fn header_names_are_title_case() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = TestBroker::embedded().await;
    let body = r#"{"id":"urn:ngsi-ld:Thing:case","type":"Thing"}"#;
    let request = format!(
        "POST /ngsi-ld/v1/entities HTTP/1.1\r\nHost: hanbat\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(b.origin.trim_start_matches("http://")).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(response.contains("\r\nLocation: /ngsi-ld/v1/entities/urn:ngsi-ld:Thing:case\r\n"), "{response}");
}

/// `Prefer: ngsi-ld=<version>` (§4.3.6.8 of V1.9.1): attribute types newer than the version are
/// reformatted as Property (203 and `Preference-Applied`); the native version changes nothing.
#[tokio::test]
async fn prefer_an_earlier_version() {
    let b = TestBroker::embedded().await;
    create(
        &b,
        json!({"id": "urn:ngsi-ld:Building:prefer", "type": "Building",
               "category": {"type": "VocabProperty", "vocab": "commercial"},
               "name": {"type": "LanguageProperty", "languageMap": {"ko": "한밭", "en": "Hanbat"}}}),
    )
    .await;
    let get = |prefer: &'static str| {
        b.request(Method::GET, "/entities/urn:ngsi-ld:Building:prefer").header("Prefer", prefer).send()
    };
    let r = get("ngsi-ld=1.5").await.unwrap();
    assert_eq!(r.status(), 203);
    assert_eq!(r.headers()["preference-applied"], "ngsi-ld=1.5");
    let old: Value = r.json().await.unwrap();
    assert_eq!(old["category"], json!({"type": "Property", "value": "commercial"}), "{old}");
    assert_eq!(old["name"]["type"], "LanguageProperty", "1.5 knows LanguageProperty");
    let r = get("ngsi-ld=1.3").await.unwrap();
    let older: Value = r.json().await.unwrap();
    assert_eq!(older["name"], json!({"type": "Property", "value": {"ko": "한밭", "en": "Hanbat"}}), "{older}");

    let r = get("ngsi-ld=1.9").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["preference-applied"], "ngsi-ld=1.9");
    assert_eq!(r.json::<Value>().await.unwrap()["category"]["type"], "VocabProperty");
    // A version there is not, or no preference: nothing applied.
    let r = get("ngsi-ld=7.1").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("preference-applied").is_none());
    let listed =
        b.request(Method::GET, "/entities?type=Building").header("Prefer", "ngsi-ld=1.5").send().await.unwrap();
    assert_eq!(listed.status(), 203);
    assert_eq!(listed.json::<Value>().await.unwrap()[0]["category"]["type"], "Property");
}
