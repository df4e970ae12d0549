//! Query entities: `GET /entities` (§6.4.3.2) and `POST /entityOperations/query` (§6.23) with
//! every parameter — type expressions (§4.17), ids, `idPattern`, `attrs`/`pick`/`omit`, the
//! q-language (§4.9), `scopeQ` (§4.19), geo-queries (§4.10), `lang`, representations, counting
//! and pagination (§4.12, §4.13) — and their error paths.
//!
//! The expected answers are computed here, from the test's own data set ([`Fixture`]) with plain
//! Rust predicates and the test's own haversine, never taken from the broker.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed assertion

mod common;

use common::{TestBroker, assert_problem};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Centre of the fixture grid: Daejeon City Hall.
const CENTRE: (f64, f64) = (127.3845, 36.3504);
/// Mean Earth radius, metres (the sphere `near` is specified on).
const EARTH_RADIUS: f64 = 6_371_008.8;
const N: usize = 40;

/// Which fixtures a query should answer.
type Keep = Box<dyn Fn(&Fixture) -> bool>;

/// One entity of the data set, as the test knows it.
struct Fixture {
    i: usize,
    id: String,
    types: Vec<&'static str>,
    num: Option<i64>,
    accuracy: i64,
    num_observed: String,
    temp: f64,
    name: String,
    on: bool,
    seen: String,
    owner: String,
    city: &'static str,
    zip: String,
    lon: f64,
    lat: f64,
    has_area: bool,
    scopes: Vec<&'static str>,
}

fn fixture(i: usize) -> Fixture {
    let mut types = vec![["Sensor", "Lamp", "Bin"][i % 3]];
    if i % 5 == 4 && !types.contains(&"Lamp") {
        types.push("Lamp");
    }
    let mut scopes = match i % 3 {
        0 => vec!["/Daejeon/Yuseong"],
        1 => vec!["/Daejeon/Seo/Dunsan"],
        _ => vec![],
    };
    if i.is_multiple_of(5) {
        scopes.push("/Sejong");
    }
    // A 7 × 6 grid of points 200 m (east) by 250 m (north) apart around the centre.
    let (east, north) = ((i % 7) as f64 * 200.0 - 600.0, (i / 7) as f64 * 250.0 - 600.0);
    let (lon, lat) = offset(CENTRE, east, north);
    Fixture {
        i,
        id: format!("urn:ngsi-ld:Thing:{i:03}"),
        types,
        num: (i % 8 != 7).then_some(((i * 7) % 50) as i64),
        accuracy: (i % 5) as i64,
        num_observed: format!("2026-01-{:02}T10:00:00Z", 1 + i % 28),
        temp: 10.0 + i as f64 * 0.5,
        name: if i.is_multiple_of(4) { format!("park-{i:02}") } else { format!("station-{i:02}") },
        on: i.is_multiple_of(2),
        seen: format!("2026-03-{:02}T08:00:00Z", 1 + i % 28),
        owner: format!("urn:ngsi-ld:Person:{}", i % 4),
        city: if i.is_multiple_of(3) { "Sejong" } else { "Daejeon" },
        zip: format!("34{i:03}"),
        lon,
        lat,
        has_area: i.is_multiple_of(2),
        scopes,
    }
}

/// The point `east` and `north` metres from `from` (small distances: locally flat).
fn offset(from: (f64, f64), east: f64, north: f64) -> (f64, f64) {
    let per_degree = EARTH_RADIUS * std::f64::consts::PI / 180.0;
    let lat = from.1 + north / per_degree;
    (from.0 + east / (per_degree * from.1.to_radians().cos()), lat)
}

/// Great-circle distance in metres.
fn haversine(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, la2) = (a.1.to_radians(), b.1.to_radians());
    let (dla, dlo) = ((b.1 - a.1).to_radians(), (b.0 - a.0).to_radians());
    let h = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS * h.sqrt().asin()
}

fn square(lon: f64, lat: f64, half: f64) -> Value {
    json!({"type": "Polygon", "coordinates": [[
        [lon - half, lat - half], [lon + half, lat - half], [lon + half, lat + half], [lon - half, lat + half], [lon - half, lat - half]
    ]]})
}

impl Fixture {
    fn json(&self) -> Value {
        let mut e = json!({
            "id": self.id,
            "type": if self.types.len() == 1 { json!(self.types[0]) } else { json!(self.types) },
            "temp": {"type": "Property", "value": self.temp},
            "name": {"type": "Property", "value": self.name},
            "on": {"type": "Property", "value": self.on},
            "seen": {"type": "Property", "value": {"@type": "DateTime", "@value": self.seen}},
            "owner": {"type": "Relationship", "object": self.owner},
            "address": {"type": "Property", "value": {"city": self.city, "zip": {"code": self.zip}}},
            "label": {"type": "LanguageProperty", "languageMap": {"ko": format!("라벨 {}", self.i), "en": format!("label {}", self.i)}},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [self.lon, self.lat]}},
        });
        let o = e.as_object_mut().unwrap();
        if let Some(num) = self.num {
            o.insert(
                "num".into(),
                json!({"type": "Property", "value": num, "observedAt": self.num_observed,
                    "accuracy": {"type": "Property", "value": self.accuracy}}),
            );
        }
        if self.has_area {
            o.insert("area".into(), json!({"type": "GeoProperty", "value": square(self.lon, self.lat, 0.001)}));
        }
        if !self.scopes.is_empty() {
            o.insert("scope".into(), json!(self.scopes));
        }
        e
    }

    /// The members of this entity projected on `attrs`, sorted: id, type, scope (an entity
    /// member, not an attribute) and the named attributes it has.
    fn projected(&self, attrs: &[&str]) -> Vec<String> {
        let mut keys = vec!["id".to_string(), "type".to_string()];
        if !self.scopes.is_empty() {
            keys.push("scope".into());
        }
        for a in attrs {
            let has = match *a {
                "num" => self.num.is_some(),
                "area" => self.has_area,
                _ => true,
            };
            if has {
                keys.push(a.to_string());
            }
        }
        keys.sort();
        keys
    }

    fn has_type(&self, t: &str) -> bool {
        self.types.contains(&t)
    }
}

fn fixtures() -> Vec<Fixture> {
    (0..N).map(fixture).collect()
}

async fn load(b: &TestBroker, entities: &[Value]) {
    let r = b.post("/entityOperations/create", &Value::Array(entities.to_vec())).await;
    let status = r.status();
    assert_eq!(status, 201, "batch create: {}", r.text().await.unwrap_or_default());
}

async fn load_fixtures(b: &TestBroker) -> Vec<Fixture> {
    let all = fixtures();
    load(b, &all.iter().map(Fixture::json).collect::<Vec<_>>()).await;
    all
}

fn expected(all: &[Fixture], keep: impl Fn(&Fixture) -> bool) -> BTreeSet<String> {
    all.iter().filter(|f| keep(f)).map(|f| f.id.clone()).collect()
}

fn keys_of(entity: &Value) -> Vec<String> {
    let mut keys: Vec<String> = entity.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

fn ids_of(body: &Value) -> BTreeSet<String> {
    let list = body.as_array().unwrap_or_else(|| panic!("not an array: {body}"));
    let ids: BTreeSet<String> = list.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), list.len(), "an entity twice: {body}");
    ids
}

/// `GET /entities?{query}&limit=1000`, the ids answered.
async fn get_ids(b: &TestBroker, query: &str) -> BTreeSet<String> {
    ids_of(&b.get_json(&format!("/entities?{query}&limit=1000")).await)
}

/// `POST /entityOperations/query?limit=1000`, the ids answered.
async fn post_ids(b: &TestBroker, query: &Value) -> BTreeSet<String> {
    let r = b.post("/entityOperations/query?limit=1000", query).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "query {query}: {text}");
    ids_of(&serde_json::from_str(&text).unwrap())
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (c as char).to_string(),
            _ => format!("%{c:02X}"),
        })
        .collect()
}

/// §4.17, §6.4.3.2: `type` names and expressions, `id` lists, `idPattern`, `attrs` as a filter
/// and as a projection, `pick` and `omit`.
async fn selectors_and_projection(b: &TestBroker) {
    let all = load_fixtures(b).await;
    let cases: Vec<(&str, Keep)> = vec![
        ("type=Sensor", Box::new(|f| f.has_type("Sensor"))),
        ("type=Sensor,Bin", Box::new(|f| f.has_type("Sensor") || f.has_type("Bin"))),
        ("type=Sensor;Lamp", Box::new(|f| f.has_type("Sensor") && f.has_type("Lamp"))),
        ("type=(Sensor;Lamp)|Bin", Box::new(|f| (f.has_type("Sensor") && f.has_type("Lamp")) || f.has_type("Bin"))),
        ("type=Nothing", Box::new(|_| false)),
        ("type=Lamp&idPattern=.*:0[12][0-9]$", Box::new(|f| f.has_type("Lamp") && (10..30).contains(&f.i))),
        ("attrs=area", Box::new(|f| f.has_area)),
        ("attrs=area,num", Box::new(|f| f.has_area || f.num.is_some())),
        ("type=Bin&attrs=area", Box::new(|f| f.has_type("Bin") && f.has_area)),
    ];
    for (query, keep) in &cases {
        assert_eq!(get_ids(b, &enc_query(query)).await, expected(&all, keep), "{query}");
    }
    let picked = ["urn:ngsi-ld:Thing:003", "urn:ngsi-ld:Thing:004", "urn:ngsi-ld:Thing:017", "urn:ngsi-ld:Nope:1"];
    let ids = get_ids(b, &format!("type=Sensor,Lamp&id={}", picked.join(","))).await;
    assert_eq!(
        ids,
        expected(&all, |f| picked.contains(&f.id.as_str()) && (f.has_type("Sensor") || f.has_type("Lamp")))
    );
    // The same selectors in a Query body.
    let body = json!({"type": "Query", "entities": [{"type": "(Sensor;Lamp)|Bin"}]});
    assert_eq!(
        post_ids(b, &body).await,
        expected(&all, |f| (f.has_type("Sensor") && f.has_type("Lamp")) || f.has_type("Bin"))
    );
    let body = json!({"type": "Query", "entities": [{"type": "Sensor", "idPattern": "^urn:ngsi-ld:Thing:00"}, {"type": "Bin", "id": ["urn:ngsi-ld:Thing:038"]}]});
    assert_eq!(
        post_ids(b, &body).await,
        expected(&all, |f| (f.has_type("Sensor") && f.i < 10) || (f.has_type("Bin") && f.i == 38))
    );
    let body = json!({"type": "Query", "attrs": ["area"], "entities": [{"type": "Lamp"}]});
    assert_eq!(post_ids(b, &body).await, expected(&all, |f| f.has_type("Lamp") && f.has_area));

    // attrs projects: only the named attributes come back (plus id and type).
    let list = b.get_json("/entities?type=Sensor&attrs=num,name&limit=1000").await;
    for e in list.as_array().unwrap() {
        let f = &all[e["id"].as_str().unwrap()[18..].parse::<usize>().unwrap()];
        if let Some(num) = f.num {
            assert_eq!(e["num"]["value"], num);
            assert_eq!(e["num"]["accuracy"]["value"], f.accuracy);
        }
        assert_eq!(keys_of(e), f.projected(&["num", "name"]), "{e}");
        assert_eq!(e["name"]["value"], f.name);
    }
    // pick and omit (§4.21): entity members and attributes.
    let list = b.get_json("/entities?type=Bin&pick=id,temp&limit=1000").await;
    for e in list.as_array().unwrap() {
        let f = &all[e["id"].as_str().unwrap()[18..].parse::<usize>().unwrap()];
        assert_eq!(e, &json!({"id": f.id, "temp": {"type": "Property", "value": f.temp}}));
    }
    let list =
        b.get_json("/entities?type=Bin&omit=type,temp,label,address,location,area,seen,owner,num&limit=1000").await;
    for e in list.as_array().unwrap() {
        let f = &all[e["id"].as_str().unwrap()[18..].parse::<usize>().unwrap()];
        let mut want = json!({"id": f.id, "name": {"type": "Property", "value": f.name}, "on": {"type": "Property", "value": f.on}});
        if !f.scopes.is_empty() {
            want["scope"] = json!(if f.scopes.len() == 1 { json!(f.scopes[0]) } else { json!(f.scopes) });
        }
        assert_eq!(e, &want);
    }
    let body = json!({"type": "Query", "entities": [{"type": "Bin"}], "pick": ["id", "on"]});
    let r = b.post("/entityOperations/query?limit=1000", &body).await;
    let list: Value = r.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), expected(&all, |f| f.has_type("Bin")).len());
    assert!(
        list.as_array().unwrap().iter().all(|e| e.as_object().unwrap().len() == 2 && e["on"]["value"].is_boolean())
    );
}

/// Percent-encodes the values of `k=v&k=v` (type expressions hold `;`, `|`, parentheses).
fn enc_query(query: &str) -> String {
    query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => format!("{k}={}", enc(v)),
            None => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// §4.9: every operator and value kind of the q-language, over GET and POST.
async fn q_language(b: &TestBroker) {
    let all = load_fixtures(b).await;
    let num = |f: &Fixture| f.num;
    let cases: Vec<(&str, Keep)> = vec![
        ("num==14", Box::new(move |f| num(f) == Some(14))),
        ("num!=14", Box::new(move |f| num(f).is_some_and(|n| n != 14))),
        ("num>20", Box::new(move |f| num(f).is_some_and(|n| n > 20))),
        ("num>=21", Box::new(move |f| num(f).is_some_and(|n| n >= 21))),
        ("num<5", Box::new(move |f| num(f).is_some_and(|n| n < 5))),
        ("num<=7", Box::new(move |f| num(f).is_some_and(|n| n <= 7))),
        ("num==1,7,14,99", Box::new(move |f| num(f).is_some_and(|n| [1, 7, 14, 99].contains(&n)))),
        ("num==10..20", Box::new(move |f| num(f).is_some_and(|n| (10..=20).contains(&n)))),
        ("num!=10..20", Box::new(move |f| num(f).is_some_and(|n| !(10..=20).contains(&n)))),
        ("num!=1,7,14", Box::new(move |f| num(f).is_some_and(|n| ![1, 7, 14].contains(&n)))),
        ("temp>20.5", Box::new(|f| f.temp > 20.5)),
        ("temp<=12.5", Box::new(|f| f.temp <= 12.5)),
        ("temp==11.5", Box::new(|f| f.temp == 11.5)),
        (r#"name=="park-04""#, Box::new(|f| f.name == "park-04")),
        (r#"name!="park-04""#, Box::new(|f| f.name != "park-04")),
        (r#"name=="park-04","station-05""#, Box::new(|f| f.name == "park-04" || f.name == "station-05")),
        (r#"name>"station-30""#, Box::new(|f| f.name.as_str() > "station-30")),
        (r#"name=="park-00".."park-12""#, Box::new(|f| ("park-00"..="park-12").contains(&f.name.as_str()))),
        (r#"name~="^park-""#, Box::new(|f| f.name.starts_with("park-"))),
        (r#"name!~="^park-""#, Box::new(|f| !f.name.starts_with("park-"))),
        (r#"name~="(?i)^STATION-1""#, Box::new(|f| f.name.starts_with("station-1"))),
        ("on==true", Box::new(|f| f.on)),
        ("on==false", Box::new(|f| !f.on)),
        ("on!=true", Box::new(|f| !f.on)),
        ("seen>2026-03-20T00:00:00Z", Box::new(|f| f.seen.as_str() > "2026-03-20T00:00:00Z")),
        (
            "seen==2026-03-05T00:00:00Z..2026-03-10T23:00:00Z",
            Box::new(|f| ("2026-03-05T00:00:00Z"..="2026-03-10T23:00:00Z").contains(&f.seen.as_str())),
        ),
        ("owner==urn:ngsi-ld:Person:1", Box::new(|f| f.owner == "urn:ngsi-ld:Person:1")),
        (r#"owner=="urn:ngsi-ld:Person:2""#, Box::new(|f| f.owner == "urn:ngsi-ld:Person:2")),
        ("owner!=urn:ngsi-ld:Person:1", Box::new(|f| f.owner != "urn:ngsi-ld:Person:1")),
        ("num.accuracy==3", Box::new(move |f| num(f).is_some() && f.accuracy == 3)),
        ("num.accuracy>=3", Box::new(move |f| num(f).is_some() && f.accuracy >= 3)),
        (
            "num.observedAt>=2026-01-20T00:00:00Z",
            Box::new(|f| f.num.is_some() && f.num_observed.as_str() >= "2026-01-20"),
        ),
        (r#"address[city]=="Sejong""#, Box::new(|f| f.city == "Sejong")),
        (r#"address[zip.code]=="34012""#, Box::new(|f| f.zip == "34012")),
        (r#"address[zip.code]~="^3401""#, Box::new(|f| f.zip.starts_with("3401"))),
        ("num", Box::new(move |f| num(f).is_some())),
        ("!num", Box::new(move |f| num(f).is_none())),
        ("area", Box::new(|f| f.has_area)),
        ("!area;!num", Box::new(move |f| !f.has_area && num(f).is_none())),
        ("num.accuracy", Box::new(move |f| num(f).is_some())),
        ("num>10;on==true", Box::new(move |f| num(f).is_some_and(|n| n > 10) && f.on)),
        ("num<5|num>45", Box::new(move |f| num(f).is_some_and(|n| !(5..=45).contains(&n)))),
        (
            "num<5|num>45;on==true",
            Box::new(move |f| num(f).is_some_and(|n| n < 5) || (num(f).is_some_and(|n| n > 45) && f.on)),
        ),
        ("(num<5|num>45);on==true", Box::new(move |f| num(f).is_some_and(|n| !(5..=45).contains(&n)) && f.on)),
        (
            r#"((temp>15;temp<25)|(name~="park"));(!num|on==false)"#,
            Box::new(move |f| {
                ((f.temp > 15.0 && f.temp < 25.0) || f.name.contains("park")) && (num(f).is_none() || !f.on)
            }),
        ),
        ("createdAt>2000-01-01T00:00:00Z;num>40", Box::new(move |f| num(f).is_some_and(|n| n > 40))),
    ];
    for (q, keep) in &cases {
        let want = expected(&all, keep);
        // Every query needs a narrowing; q over attributes is one, so type is left out.
        assert_eq!(get_ids(b, &format!("q={}", enc(q))).await, want, "q={q}");
        assert_eq!(post_ids(b, &json!({"type": "Query", "q": q})).await, want, "POST q={q}");
    }
    // q together with a type: the conjunction.
    assert_eq!(
        get_ids(b, &format!("type=Lamp&q={}", enc("num>=10;on==false"))).await,
        expected(&all, |f| f.has_type("Lamp") && f.num.is_some_and(|n| n >= 10) && !f.on)
    );
}

/// §4.19: scope queries, alone and with a type, over GET and POST.
async fn scope_queries(b: &TestBroker) {
    let all = load_fixtures(b).await;
    let has = |f: &Fixture, s: &str| f.scopes.contains(&s);
    let cases: Vec<(&str, Keep)> = vec![
        ("/Sejong", Box::new(move |f| has(f, "/Sejong"))),
        ("/Daejeon/#", Box::new(|f| f.scopes.iter().any(|s| s.starts_with("/Daejeon/")))),
        ("/Daejeon/+", Box::new(move |f| has(f, "/Daejeon/Yuseong"))),
        ("/Daejeon/+/Dunsan", Box::new(move |f| has(f, "/Daejeon/Seo/Dunsan"))),
        ("/Daejeon", Box::new(|_| false)),
        ("/#", Box::new(|f| !f.scopes.is_empty())),
        ("/Sejong;/Daejeon/#", Box::new(move |f| has(f, "/Sejong") && f.scopes.len() > 1)),
        ("/Sejong,/Daejeon/Yuseong", Box::new(move |f| has(f, "/Sejong") || has(f, "/Daejeon/Yuseong"))),
        ("/Sejong|/Daejeon/Seo/Dunsan", Box::new(move |f| has(f, "/Sejong") || has(f, "/Daejeon/Seo/Dunsan"))),
    ];
    for (scope_q, keep) in &cases {
        let want = expected(&all, keep);
        assert_eq!(get_ids(b, &format!("scopeQ={}", enc(scope_q))).await, want, "scopeQ={scope_q}");
        assert_eq!(post_ids(b, &json!({"type": "Query", "scopeQ": scope_q})).await, want, "POST scopeQ={scope_q}");
    }
    assert_eq!(
        get_ids(b, &format!("type=Sensor&scopeQ={}", enc("/Daejeon/#"))).await,
        expected(&all, |f| f.has_type("Sensor") && f.scopes.iter().any(|s| s.starts_with("/Daejeon/")))
    );
}

/// §4.10 `near`: metres on the sphere, `maxDistance` and `minDistance`, on `location` and on
/// another GeoProperty.
async fn geo_near(b: &TestBroker) {
    let all = load_fixtures(b).await;
    // Probes due north and due east of a point outside the grid.
    let probe_centre = (127.30, 36.20);
    let mut probes = Vec::new();
    for (name, east, north) in [("n400", 0.0, 400.0), ("n600", 0.0, 600.0), ("e400", 400.0, 0.0), ("e600", 600.0, 0.0)]
    {
        let (lon, lat) = offset(probe_centre, east, north);
        probes.push(json!({"id": format!("urn:ngsi-ld:Probe:{name}"), "type": "Probe",
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}}));
    }
    load(b, &probes).await;
    let around = |rel: &str| {
        format!(
            "type=Probe&georel={}&geometry=Point&coordinates={}",
            enc(rel),
            enc(&format!("[{},{}]", probe_centre.0, probe_centre.1))
        )
    };
    let set = |ids: &[&str]| ids.iter().map(|s| format!("urn:ngsi-ld:Probe:{s}")).collect::<BTreeSet<_>>();
    assert_eq!(get_ids(b, &around("near;maxDistance==500")).await, set(&["n400", "e400"]));
    assert_eq!(get_ids(b, &around("near;minDistance==500")).await, set(&["n600", "e600"]));
    assert_eq!(get_ids(b, &around("near;maxDistance==599")).await, set(&["n400", "e400"]));
    assert_eq!(get_ids(b, &around("near;maxDistance==601")).await, set(&["n400", "e400", "n600", "e600"]));
    assert_eq!(get_ids(b, &around("near;maxDistance==100")).await, set(&[]));

    // The grid, against the test's own haversine, from a few reference points.
    for (reference, metres) in [(CENTRE, 500.0), (CENTRE, 1000.0), (offset(CENTRE, 350.0, -120.0), 700.0)] {
        let coords = format!("[{},{}]", reference.0, reference.1);
        for (rel, keep) in
            [(format!("near;maxDistance=={metres}"), true), (format!("near;minDistance=={metres}"), false)]
        {
            let want = expected(&all, |f| (haversine(reference, (f.lon, f.lat)) <= metres) == keep);
            let got = get_ids(
                b,
                &format!("type=Sensor,Lamp,Bin&georel={}&geometry=Point&coordinates={}", enc(&rel), enc(&coords)),
            )
            .await;
            assert_eq!(got, want, "{rel} around {coords}");
            let body = json!({"type": "Query", "entities": [{"type": "Sensor,Lamp,Bin"}],
                "geoQ": {"georel": rel, "geometry": "Point", "coordinates": [reference.0, reference.1]}});
            assert_eq!(post_ids(b, &body).await, want, "POST {rel} around {coords}");
        }
    }
    // geoproperty: the areas are squares of ±0.001° around the points, so closer to the
    // reference than the points; a LineString reference measures from its closest point.
    let reference = offset(CENTRE, 0.0, 1000.0);
    let got = get_ids(
        b,
        &format!(
            "georel={}&geometry=Point&coordinates={}&geoproperty=area",
            enc("near;maxDistance==400"),
            enc(&format!("[{},{}]", reference.0, reference.1))
        ),
    )
    .await;
    let half = 0.001;
    let want = expected(&all, |f| {
        // Closest point of the square to the reference (the square is small: clamp per axis).
        let closest = (reference.0.clamp(f.lon - half, f.lon + half), reference.1.clamp(f.lat - half, f.lat + half));
        f.has_area && haversine(reference, closest) <= 400.0
    });
    assert!(!want.is_empty());
    assert_eq!(got, want);
    // A LineString reference running west–east through the centre: distance to the line is
    // the north–south offset for points between its ends.
    let (w, e) = (offset(CENTRE, -2000.0, 0.0), offset(CENTRE, 2000.0, 0.0));
    let got = get_ids(
        b,
        &format!(
            "type=Sensor,Lamp,Bin&georel={}&geometry=LineString&coordinates={}",
            enc("near;maxDistance==300"),
            enc(&format!("[[{},{}],[{},{}]]", w.0, w.1, e.0, e.1))
        ),
    )
    .await;
    assert_eq!(got, expected(&all, |f| haversine((f.lon, CENTRE.1), (f.lon, f.lat)) <= 300.0));
}

/// A shape entity of the geo-relation tests.
fn shape(name: &str, geometry: Value) -> Value {
    json!({"id": format!("urn:ngsi-ld:Shape:{name}"), "type": "Shape",
        "location": {"type": "GeoProperty", "value": geometry},
        "footprint": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [100.0, 10.0]}}})
}

fn rect(x0: f64, y0: f64, x1: f64, y1: f64) -> Value {
    json!([[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]])
}

/// §4.10: within, contains, intersects, equals, disjoint, overlaps on every geometry type, as
/// the entity's geometry and as the reference. Expectations come from the construction: the
/// box B = [127.0, 127.5] × [36.0, 36.5] and shapes placed inside, across or outside it.
async fn geo_relations(b: &TestBroker) {
    let shapes = [
        shape("point_in", json!({"type": "Point", "coordinates": [127.1, 36.1]})),
        shape("point_out", json!({"type": "Point", "coordinates": [128.1, 36.1]})),
        shape("multipoint_in", json!({"type": "MultiPoint", "coordinates": [[127.2, 36.2], [127.3, 36.3]]})),
        shape("multipoint_across", json!({"type": "MultiPoint", "coordinates": [[127.2, 36.2], [127.9, 36.9]]})),
        shape(
            "line_in",
            json!({"type": "LineString", "coordinates": [[127.05, 36.05], [127.1, 36.1], [127.15, 36.15]]}),
        ),
        shape("line_across", json!({"type": "LineString", "coordinates": [[127.4, 36.4], [127.7, 36.7]]})),
        shape(
            "multiline_out",
            json!({"type": "MultiLineString", "coordinates": [[[128.5, 36.5], [128.6, 36.6]], [[128.7, 36.5], [128.8, 36.6]]]}),
        ),
        shape(
            "multiline_in",
            json!({"type": "MultiLineString", "coordinates": [[[127.1, 36.3], [127.2, 36.3]], [[127.1, 36.4], [127.2, 36.4]]]}),
        ),
        shape("poly_in", json!({"type": "Polygon", "coordinates": rect(127.1, 36.1, 127.2, 36.2)})),
        shape("poly_across", json!({"type": "Polygon", "coordinates": rect(127.4, 36.4, 127.7, 36.7)})),
        shape("poly_big", json!({"type": "Polygon", "coordinates": rect(126.9, 35.9, 127.6, 36.6)})),
        shape("poly_out", json!({"type": "Polygon", "coordinates": rect(128.0, 36.0, 128.2, 36.2)})),
        shape(
            "multipoly_in",
            json!({"type": "MultiPolygon", "coordinates": [rect(127.01, 36.01, 127.04, 36.04), rect(127.3, 36.3, 127.4, 36.4)]}),
        ),
        shape(
            "multipoly_across",
            json!({"type": "MultiPolygon", "coordinates": [rect(127.01, 36.41, 127.04, 36.44), rect(128.3, 36.3, 128.4, 36.4)]}),
        ),
    ];
    load(b, &shapes).await;
    let set = |names: &[&str]| names.iter().map(|s| format!("urn:ngsi-ld:Shape:{s}")).collect::<BTreeSet<_>>();
    let every: Vec<&str> =
        shapes.iter().map(|s| s["id"].as_str().unwrap().trim_start_matches("urn:ngsi-ld:Shape:")).collect();
    let except = |names: &[&str]| set(&every.iter().copied().filter(|n| !names.contains(n)).collect::<Vec<_>>());
    let b_box = rect(127.0, 36.0, 127.5, 36.5);
    let intersecting = [
        "point_in",
        "multipoint_in",
        "multipoint_across",
        "line_in",
        "line_across",
        "multiline_in",
        "poly_in",
        "poly_across",
        "poly_big",
        "multipoly_in",
        "multipoly_across",
    ];
    let cases: Vec<(&str, &str, Value, BTreeSet<String>)> = vec![
        (
            "within",
            "Polygon",
            b_box.clone(),
            set(&["point_in", "multipoint_in", "line_in", "multiline_in", "poly_in", "multipoly_in"]),
        ),
        ("contains", "Polygon", b_box.clone(), set(&["poly_big"])),
        ("intersects", "Polygon", b_box.clone(), set(&intersecting)),
        ("disjoint", "Polygon", b_box.clone(), except(&intersecting)),
        ("overlaps", "Polygon", b_box.clone(), set(&["poly_across", "multipoly_across"])),
        ("equals", "Polygon", rect(127.1, 36.1, 127.2, 36.2), set(&["poly_in"])),
        // Point references.
        ("equals", "Point", json!([127.1, 36.1]), set(&["point_in"])),
        ("contains", "Point", json!([127.15, 36.15]), set(&["poly_in", "poly_big"])),
        ("intersects", "Point", json!([127.35, 36.35]), set(&["poly_big", "multipoly_in"])),
        ("within", "Point", json!([127.1, 36.1]), set(&["point_in"])),
        // MultiPoint, LineString, MultiLineString, MultiPolygon references.
        ("equals", "MultiPoint", json!([[127.2, 36.2], [127.3, 36.3]]), set(&["multipoint_in"])),
        (
            "intersects",
            "MultiPoint",
            json!([[128.1, 36.1], [127.02, 36.02]]),
            set(&["point_out", "poly_out", "multipoly_in", "poly_big"]),
        ),
        (
            "intersects",
            "LineString",
            json!([[127.17, 35.0], [127.17, 37.0]]),
            set(&["multiline_in", "poly_in", "poly_big"]),
        ),
        ("contains", "LineString", json!([[127.12, 36.12], [127.18, 36.18]]), set(&["poly_in", "poly_big"])),
        ("equals", "LineString", json!([[127.05, 36.05], [127.1, 36.1], [127.15, 36.15]]), set(&["line_in"])),
        (
            "overlaps",
            "LineString",
            // Shares one segment of line_in exactly (decimal degrees are not exactly collinear in
            // binary, so the common part is an identical segment) and leaves it on both sides.
            json!([[127.0, 36.12], [127.1, 36.1], [127.15, 36.15], [127.2, 36.1]]),
            set(&["line_in"]),
        ),
        (
            "intersects",
            "MultiLineString",
            json!([[[128.55, 36.5], [128.55, 36.7]], [[127.45, 36.0], [127.45, 36.2]]]),
            set(&["multiline_out", "poly_big"]),
        ),
        (
            "within",
            "MultiPolygon",
            json!([rect(127.0, 36.0, 127.25, 36.25), rect(128.0, 36.0, 129.0, 37.0)]),
            set(&["point_in", "line_in", "poly_in", "point_out", "multiline_out", "poly_out"]),
        ),
    ];
    for (georel, geometry, coordinates, want) in &cases {
        let query =
            format!("type=Shape&georel={georel}&geometry={geometry}&coordinates={}", enc(&coordinates.to_string()));
        assert_eq!(get_ids(b, &query).await, *want, "{georel} {geometry} {coordinates}");
        let body = json!({"type": "Query", "entities": [{"type": "Shape"}],
            "geoQ": {"georel": georel, "geometry": geometry, "coordinates": coordinates}});
        assert_eq!(post_ids(b, &body).await, *want, "POST {georel} {geometry} {coordinates}");
    }
    // Another GeoProperty: every footprint is the same far-away point.
    let query = format!("type=Shape&georel=within&geometry=Polygon&coordinates={}", enc(&b_box.to_string()));
    assert_eq!(get_ids(b, &format!("{query}&geoproperty=footprint")).await, BTreeSet::new());
    let far = rect(99.0, 9.0, 101.0, 11.0).to_string();
    let query = format!("type=Shape&georel=within&geometry=Polygon&coordinates={}&geoproperty=footprint", enc(&far));
    assert_eq!(get_ids(b, &query).await, set(&every));
    // Without the GeoProperty, an entity matches no relation, disjoint included.
    load(b, &[json!({"id": "urn:ngsi-ld:Shape:none", "type": "Shape"})]).await;
    let query = format!("type=Shape&georel=disjoint&geometry=Polygon&coordinates={}", enc(&b_box.to_string()));
    assert_eq!(get_ids(b, &query).await, except(&intersecting));
}

/// Representations of a query's answer (§4.5.3, §4.5.9, §6.3.7): keyValues/simplified,
/// concise, sysAttrs, `lang`, and GeoJSON with `geometryProperty`.
async fn representations(b: &TestBroker) {
    let all = load_fixtures(b).await;
    let want = expected(&all, |f| f.has_type("Bin"));
    let by_id = |id: &str| &all[id[18..].parse::<usize>().unwrap()];
    for query in ["options=keyValues", "format=simplified", "format=keyValues", "options=simplified"] {
        let list = b.get_json(&format!("/entities?type=Bin&{query}&limit=1000")).await;
        assert_eq!(ids_of(&list), want);
        for e in list.as_array().unwrap() {
            let f = by_id(e["id"].as_str().unwrap());
            assert_eq!(e["temp"], f.temp, "{query}: {e}");
            assert_eq!(e["name"], f.name.as_str());
            assert_eq!(e["owner"], f.owner.as_str());
            assert_eq!(e["location"], json!({"type": "Point", "coordinates": [f.lon, f.lat]}));
            assert_eq!(e["address"]["zip"]["code"], f.zip.as_str());
        }
    }
    let list = b.get_json("/entities?type=Bin&options=concise&limit=1000").await;
    for e in list.as_array().unwrap() {
        let f = by_id(e["id"].as_str().unwrap());
        assert_eq!(e["name"], f.name.as_str(), "{e}");
        assert_eq!(e["owner"], json!({"object": f.owner}));
        if let Some(num) = f.num {
            assert_eq!(e["num"], json!({"value": num, "observedAt": f.num_observed, "accuracy": f.accuracy}));
        }
    }
    let list = b.get_json("/entities?type=Bin&options=sysAttrs&limit=1000").await;
    for e in list.as_array().unwrap() {
        for member in [&e["createdAt"], &e["modifiedAt"], &e["temp"]["createdAt"], &e["temp"]["modifiedAt"]] {
            assert!(member.as_str().is_some_and(|t| t.starts_with("20") && t.ends_with('Z')), "{e}");
        }
    }
    let list = b.get_json("/entities?type=Bin&limit=1000").await;
    assert!(list[0].get("createdAt").is_none());
    // lang: a LanguageProperty becomes a Property in the best language (§4.15).
    let list = b.get_json("/entities?type=Bin&lang=en&limit=1000").await;
    for e in list.as_array().unwrap() {
        let f = by_id(e["id"].as_str().unwrap());
        assert_eq!(e["label"], json!({"type": "Property", "value": format!("label {}", f.i), "lang": "en"}));
    }
    let list = b.get_json("/entities?type=Bin&lang=ko&options=keyValues&limit=1000").await;
    for e in list.as_array().unwrap() {
        assert_eq!(e["label"], format!("라벨 {}", by_id(e["id"].as_str().unwrap()).i));
    }
    let body = json!({"type": "Query", "entities": [{"type": "Bin"}], "lang": "en"});
    let list: Value = b.post("/entityOperations/query?options=keyValues&limit=1000", &body).await.json().await.unwrap();
    for e in list.as_array().unwrap() {
        assert_eq!(e["label"], format!("label {}", by_id(e["id"].as_str().unwrap()).i));
    }
    // GeoJSON: a FeatureCollection; geometry from location, or from geometryProperty.
    for (extra, property) in [("", "location"), ("&geometryProperty=area", "area")] {
        let r = b
            .request(Method::GET, &format!("/entities?type=Bin&limit=1000{extra}"))
            .header("Accept", "application/geo+json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/geo+json");
        let fc: Value = r.json().await.unwrap();
        assert_eq!(fc["type"], "FeatureCollection");
        let features = fc["features"].as_array().unwrap();
        assert_eq!(features.iter().map(|f| f["id"].as_str().unwrap().to_string()).collect::<BTreeSet<_>>(), want);
        for feature in features {
            let f = by_id(feature["id"].as_str().unwrap());
            assert_eq!(feature["type"], "Feature");
            let geometry = match property {
                "area" if f.has_area => square(f.lon, f.lat, 0.001),
                "area" => Value::Null,
                _ => json!({"type": "Point", "coordinates": [f.lon, f.lat]}),
            };
            assert_eq!(feature["geometry"], geometry, "{feature}");
            assert_eq!(feature["properties"]["name"]["value"], f.name.as_str());
        }
    }
    let r = b
        .request(Method::GET, "/entities?type=Bin&options=keyValues&limit=1000")
        .header("Accept", "application/geo+json")
        .send()
        .await
        .unwrap();
    let fc: Value = r.json().await.unwrap();
    assert!(fc["features"].as_array().unwrap().iter().all(|f| f["properties"]["temp"].is_number()));
    let r =
        b.post("/entityOperations/query?limit=1000", &json!({"type": "Query", "entities": [{"type": "Bin"}]})).await;
    assert_eq!(r.status(), 200);
}

/// §4.12, §4.13, §6.4.3.2: count, limit (default, maximum, 0), offset, `Link` headers.
async fn count_and_pagination(b: &TestBroker) {
    let all = load_fixtures(b).await;
    let r = b.get("/entities?type=Sensor,Lamp,Bin&count=true").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["NGSILD-Results-Count"], N.to_string().as_str());
    // The default page is 20 (docs/decisions.md).
    let list: Value = r.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 20);
    let q = enc("num>20");
    let want = expected(&all, |f| f.num.is_some_and(|n| n > 20));
    let r = b.get(&format!("/entities?q={q}&count=true&limit=0")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["NGSILD-Results-Count"], want.len().to_string().as_str());
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
    let r = b.post("/entityOperations/query?count=true&limit=0", &json!({"type": "Query", "q": "num>20"})).await;
    assert_eq!(r.headers()["NGSILD-Results-Count"], want.len().to_string().as_str());
    let r = b.get(&format!("/entities?q={q}&options=count&limit=3")).await;
    assert_eq!(r.headers()["NGSILD-Results-Count"], want.len().to_string().as_str());
    let r = b.get(&format!("/entities?q={q}&limit=3")).await;
    assert!(r.headers().get("NGSILD-Results-Count").is_none());
    // Errors.
    for bad in ["limit=1001", "limit=0", "limit=-1", "limit=abc", "offset=-1", "offset=x", "count=maybe"] {
        assert_problem(b.get(&format!("/entities?type=Sensor&{bad}")).await, 400, "BadRequestData").await;
    }
    assert_eq!(b.get("/entities?type=Sensor&limit=1000").await.status(), 200);
    assert_problem(
        b.post("/entityOperations/query?limit=5000", &json!({"type": "Query", "q": "num"})).await,
        400,
        "BadRequestData",
    )
    .await;
    // Pages in order, without overlap, following the `next` links to the end.
    let limit = 7;
    let mut seen = Vec::new();
    let mut path = format!("/ngsi-ld/v1/entities?q={q}&limit={limit}");
    let mut pages = 0;
    loop {
        let r = b.http.get(format!("{}{path}", b.origin)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let links: Vec<String> = r.headers().get_all("link").iter().map(|v| v.to_str().unwrap().to_string()).collect();
        let page: Value = r.json().await.unwrap();
        let ids: Vec<String> = page.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().into()).collect();
        assert!(ids.len() <= limit);
        if pages > 0 {
            assert!(links.iter().any(|l| l.contains(r#"rel="prev""#)), "{links:?}");
        }
        seen.extend(ids);
        pages += 1;
        let next = links.iter().find(|l| l.contains(r#"rel="next""#));
        match next {
            Some(l) => path = l[1..l.find('>').unwrap()].to_string(),
            None => break,
        }
        assert!(pages <= want.len(), "pagination does not end");
    }
    assert_eq!(seen.len(), want.len());
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), want);
    assert_eq!(pages, want.len().div_ceil(limit));
    // offset/limit windows of the full ordered answer.
    let full: Vec<String> = b
        .get_json(&format!("/entities?q={q}&limit=1000"))
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().into())
        .collect();
    for (offset, limit) in [(0, 5), (5, 5), (12, 100), (want.len() - 1, 3), (want.len(), 3), (500, 3)] {
        let page = b.get_json(&format!("/entities?q={q}&offset={offset}&limit={limit}")).await;
        let ids: Vec<String> = page.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().into()).collect();
        let window: Vec<String> = full.iter().skip(offset).take(limit).cloned().collect();
        assert_eq!(ids, window, "offset={offset} limit={limit}");
    }
    // orderBy=id orders by id.
    let page = b.get_json(&format!("/entities?q={q}&orderBy=id;desc&limit=4")).await;
    let ids: Vec<String> = page.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().into()).collect();
    assert_eq!(ids, want.iter().rev().take(4).cloned().collect::<Vec<_>>());
}

/// `local=true` narrows a query by itself (§4.17, §5.7.2.4); without any narrowing a query is
/// refused as too wide; names expand with the requester's @context (Link header).
async fn local_and_user_context(b: &TestBroker) {
    let all = load_fixtures(b).await;
    assert_eq!(get_ids(b, "local=true").await, expected(&all, |_| true));
    assert_eq!(get_ids(b, "local=true&type=*").await, expected(&all, |_| true));
    assert_eq!(
        get_ids(b, &format!("local=true&q={}", enc("num<3"))).await,
        expected(&all, |f| f.num.is_some_and(|n| n < 3))
    );
    assert_problem(b.get("/entities").await, 400, "BadRequestData").await;
    assert_problem(b.get("/entities?id=urn:ngsi-ld:Thing:001").await, 400, "BadRequestData").await;

    // A user @context hosted by the broker, mapping the short names to other IRIs.
    let document = json!({"@context": {"Car": "https://example.org/v/Car", "speed": "https://example.org/v/speed",
        "brand": "https://example.org/v/brand", "spot": "https://example.org/v/spot"}});
    let r = b
        .request(Method::POST, "/jsonldContexts")
        .header("Content-Type", "application/json")
        .body(document.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let url = format!("{}{}", b.origin, r.headers()["location"].to_str().unwrap());
    let link = format!(r#"<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json""#);
    let cars: Vec<Value> = (0..6)
        .map(|i| {
            json!({"id": format!("urn:ngsi-ld:Car:{i}"), "type": "Car",
                "speed": {"type": "Property", "value": i * 10},
                "brand": {"type": "Property", "value": if i % 2 == 0 { "Hyundai" } else { "Kia" }},
                "spot": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [127.0 + i as f64 * 0.01, 36.0]}}})
        })
        .collect();
    let r = b
        .request(Method::POST, "/entityOperations/create")
        .header("Content-Type", "application/json")
        .header("Link", &link)
        .body(Value::Array(cars).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let with_context = |path: &str| b.request(Method::GET, path).header("Link", &link).send();
    let query = format!(
        "/entities?type=Car&q={}&attrs=speed,brand&georel=within&geometry=Polygon&geoproperty=spot&coordinates={}&limit=1000",
        enc(r#"speed>=20;brand=="Hyundai""#),
        enc(&rect(126.9, 35.9, 127.035, 36.1).to_string())
    );
    let r = with_context(&query).await.unwrap();
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    // speed ≥ 20, even i, longitude ≤ 127.035: i = 2 only.
    assert_eq!(ids_of(&list), ["urn:ngsi-ld:Car:2".to_string()].into());
    assert_eq!(list[0]["type"], "Car");
    assert_eq!(list[0]["speed"]["value"], 20);
    assert!(list[0].get("spot").is_none());
    // Without the context, the names expand with the core vocabulary: other IRIs, no match.
    assert_eq!(get_ids(b, "type=Car").await, BTreeSet::new());
    let list = b.get_json(&format!("/entities?type={}&limit=1000", enc("https://example.org/v/Car"))).await;
    assert_eq!(list.as_array().unwrap().len(), 6);
    assert_eq!(list[0]["https://example.org/v/speed"]["type"], "Property");
    // The Query body, with its context given inline.
    let body = json!({"type": "Query", "entities": [{"type": "Car"}], "q": "speed<20",
        "@context": [url, common::CORE]});
    let r = b
        .request(Method::POST, "/entityOperations/query?limit=1000")
        .header("Content-Type", "application/ld+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        ids_of(&r.json().await.unwrap()),
        ["urn:ngsi-ld:Car:0".to_string(), "urn:ngsi-ld:Car:1".to_string()].into()
    );
}

/// Everything at once: type expression, q, geo-query, attrs and pagination.
async fn combined(b: &TestBroker) {
    let all = load_fixtures(b).await;
    let coords = format!("[{},{}]", CENTRE.0, CENTRE.1);
    // attrs=num,area filters on "num or area", which num>=5 implies.
    let keep = |f: &Fixture| {
        (f.has_type("Sensor") || f.has_type("Lamp"))
            && f.num.is_some_and(|n| n >= 5)
            && haversine(CENTRE, (f.lon, f.lat)) <= 900.0
    };
    let want = expected(&all, keep);
    assert!(want.len() >= 3, "the combination should select a few: {want:?}");
    let base = format!(
        "/entities?type={}&q={}&georel={}&geometry=Point&coordinates={}&attrs=num,area&count=true",
        enc("Sensor|Lamp"),
        enc("num>=5"),
        enc("near;maxDistance==900"),
        enc(&coords)
    );
    let mut got = BTreeSet::new();
    for offset in (0..want.len()).step_by(2) {
        let r = b.get(&format!("{base}&limit=2&offset={offset}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["NGSILD-Results-Count"], want.len().to_string().as_str());
        let page: Value = r.json().await.unwrap();
        for e in page.as_array().unwrap() {
            let f = &all[e["id"].as_str().unwrap()[18..].parse::<usize>().unwrap()];
            assert_eq!(keys_of(e), f.projected(&["num", "area"]), "{e}");
            assert!(got.insert(e["id"].as_str().unwrap().to_string()));
        }
    }
    assert_eq!(got, want);
    let body = json!({"type": "Query", "entities": [{"type": "Sensor|Lamp"}], "q": "num>=5", "attrs": ["num", "area"],
        "geoQ": {"georel": "near;maxDistance==900", "geometry": "Point", "coordinates": [CENTRE.0, CENTRE.1]}});
    assert_eq!(post_ids(b, &body).await, want);
}

/// The position in a message `… at N …`.
fn position_in(detail: &str) -> Option<usize> {
    let at = detail.find(" at ")?;
    detail[at + 4..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Malformed q, scopeQ, type, idPattern, georel, geometry and coordinates: 400 BadRequestData
/// naming the parameter and the position; regular expressions that would blow up are refused.
async fn malformed_queries(b: &TestBroker) {
    load_fixtures(b).await;
    // (parameter, value, position of the fault: the offending character, or the end)
    let cases: Vec<(&str, &str, usize)> = vec![
        ("q", "num==1;(on==true))", 17),
        // An unclosed parenthesis is reported where it opens.
        ("q", "(num==1", 0),
        ("q", "num>", 4),
        ("q", "num>>3", 4),
        ("q", "num==1;;on==true", 7),
        ("q", "num===1", 5),
        ("q", r#"name=="unterminated"#, 6),
        ("q", "num==1..", 8),
        ("q", "|num==1", 0),
        ("q", "num[", 4),
        ("scopeQ", "/Daejeon//Seo", 9),
        ("scopeQ", "/Daejeon;", 9),
        ("scopeQ", "(/Daejeon", 0),
    ];
    for (param, value, at) in &cases {
        let r = b.get(&format!("/entities?type=Sensor&{param}={}", enc(value))).await;
        let body = assert_problem(r, 400, "BadRequestData").await;
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.starts_with(&format!("{param}: ")), "{param}={value}: {detail}");
        assert_eq!(position_in(detail), Some(*at), "{param}={value}: {detail}");
    }
    let r = b.post("/entityOperations/query", &json!({"type": "Query", "q": "num==1;(on==true))"})).await;
    let body = assert_problem(r, 400, "BadRequestData").await;
    assert_eq!(position_in(body["detail"].as_str().unwrap()), Some(17), "{body}");
    // Type expressions and id patterns.
    for bad in [
        "type=(Sensor",
        "type=Sensor;;Bin",
        "type=Sensor%7C",
        "idPattern=(unclosed&type=Sensor",
        "id=not%20a%20uri&type=Sensor",
    ] {
        assert_problem(b.get(&format!("/entities?{bad}")).await, 400, "BadRequestData").await;
    }
    // Geo-queries.
    let geo = |georel: &str, geometry: &str, coordinates: &str| {
        format!("/entities?type=Sensor&georel={}&geometry={geometry}&coordinates={}", enc(georel), enc(coordinates))
    };
    for path in [
        geo("near;maxDistance==500", "Circle", "[127.1,36.1]"),
        geo("near;maxDistance==500", "Point", "[127.1,"),
        geo("near;maxDistance==500", "Point", "[127.1]"),
        geo("near;maxDistance==500", "Point", "[127.1,96.1]"),
        geo("near;maxDistance==500", "Point", "[227.1,36.1]"),
        geo("near;maxDistance==500", "Point", "127.1,36.1"),
        geo("near", "Point", "[127.1,36.1]"),
        geo("near;maxDistance==-5", "Point", "[127.1,36.1]"),
        geo("near;maxDistance==abc", "Point", "[127.1,36.1]"),
        geo("near;distance==5", "Point", "[127.1,36.1]"),
        geo("inside", "Polygon", "[[[127,36],[128,36],[128,37],[127,36]]]"),
        geo("within", "Polygon", "[[[127,36],[128,36],[128,37],[127,37]]]"),
        geo("within", "Polygon", "[[[127,36],[128,36],[127,36]]]"),
        geo("within", "LineString", "[[127,36]]"),
        geo("within", "Point", "[[127,36]]"),
        "/entities?type=Sensor&georel=within&geometry=Point".to_string(),
        "/entities?type=Sensor&geometry=Point&coordinates=%5B127,36%5D".to_string(),
        format!("{}&geoproperty={}", geo("within", "Point", "[127,36]"), enc("bad name")),
    ] {
        assert_problem(b.get(&path).await, 400, "BadRequestData").await;
    }
    let r = b.get(&geo("near;maxDistance==500", "Point", "[127.1,3x6.1]")).await;
    let body = assert_problem(r, 400, "BadRequestData").await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.starts_with("coordinates: ") && position_in(detail) == Some(8), "{detail}");
    let r = b.get(&geo("near;maxDistance==500;minDistance==3", "Point", "[127.1,36.1]")).await;
    let body = assert_problem(r, 400, "BadRequestData").await;
    assert!(body["detail"].as_str().unwrap().starts_with("georel: "), "{body}");
    for geo_q in [
        json!({"georel": "within", "geometry": "Polygon"}),
        json!({"georel": "within", "geometry": "Polygon", "coordinates": "[[[127,36],[128,36],[127,36]]]"}),
        json!({"georel": "near;maxDistance==1", "geometry": "Point", "coordinates": [500, 1]}),
        json!("near"),
    ] {
        let r = b.post("/entityOperations/query", &json!({"type": "Query", "geoQ": geo_q})).await;
        assert_problem(r, 400, "BadRequestData").await;
    }
    for body in [
        json!({"type": "Query", "scopeQ": "/a//b"}),
        json!({"type": "Query", "q": 5}),
        json!({"type": "Query", "entities": []}),
        json!({"type": "Query", "entities": [{"id": "urn:ngsi-ld:Thing:001"}]}),
        json!({"type": "NotAQuery", "q": "num"}),
        json!({"type": "Query", "entities": [{"type": "Sensor"}], "attrs": []}),
    ] {
        let r = b.post("/entityOperations/query", &body).await;
        assert_problem(r, 400, "BadRequestData").await;
    }
    // Regular expressions: backtracking-prone patterns run in linear time, oversized programs
    // are refused before they are built.
    let evil = format!("{}!", "a".repeat(5000));
    load(b, &[json!({"id": "urn:ngsi-ld:Thing:evil", "type": "Sensor", "name": {"type": "Property", "value": evil}})])
        .await;
    let started = std::time::Instant::now();
    // None of them matches a name of the data set (they end in digits, or '!', and hold no 'b'
    // nor an upper-case letter).
    for pattern in ["(a+)+$", "(a|aa)+$", "(a*)*b", "^(([a-z])+.)+[A-Z]([a-z])+$"] {
        let ids = get_ids(b, &format!("type=Sensor&q={}", enc(&format!("name~=\"{pattern}\"")))).await;
        assert_eq!(ids, BTreeSet::new(), "{pattern}");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "regexes took {:?}", started.elapsed());
    for pattern in ["a{1000}{1000}", "((((((((((a{100}){100}){100}))))))))", "(unclosed"] {
        let r = b.get(&format!("/entities?type=Sensor&q={}", enc(&format!("name~=\"{pattern}\"")))).await;
        let body = assert_problem(r, 400, "BadRequestData").await;
        assert!(body["detail"].as_str().unwrap().starts_with("q: "), "{body}");
        let r = b.get(&format!("/entities?type=Sensor&idPattern={}", enc(pattern))).await;
        assert_problem(r, 400, "BadRequestData").await;
    }
}

/// What the store's indexes must not lose (ARCHITECTURE.md, plan choices): numbers in arrays,
/// in JSON-LD value objects and in several instances, ranges that only hold of different
/// elements, values changed, entities moved and deleted — with and without `count=true`.
async fn indexed_values_follow_writes(b: &TestBroker) {
    let entity = |id: &str, level: Value, spot: (f64, f64)| {
        json!({"id": format!("urn:ngsi-ld:Gauge:{id}"), "type": "Gauge", "level": level,
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [spot.0, spot.1]}}})
    };
    let p = |v: Value| json!({"type": "Property", "value": v});
    load(
        b,
        &[
            entity("scalar", p(json!(4)), (127.0, 36.0)),
            entity("array", p(json!([1, 9])), (127.1, 36.0)),
            entity("object", p(json!({"@value": 7, "@type": "xsd:integer"})), (127.2, 36.0)),
            entity(
                "instances",
                json!([{"type": "Property", "value": 2}, {"type": "Property", "value": 8, "datasetId": "urn:ngsi-ld:Dataset:b"}]),
                (127.3, 36.0),
            ),
            entity("list", json!({"type": "ListProperty", "valueList": [3, 6]}), (127.4, 36.0)),
            entity("text", p(json!("5")), (127.5, 36.0)),
            entity("huge", p(json!(9_007_199_254_740_993_u64)), (127.6, 36.0)),
        ],
    )
    .await;
    let ids = |names: &[&str]| names.iter().map(|n| format!("urn:ngsi-ld:Gauge:{n}")).collect::<BTreeSet<_>>();
    let check = |q: &'static str, want: BTreeSet<String>| async move {
        assert_eq!(get_ids(b, &format!("type=Gauge&q={}", enc(q))).await, want, "q={q}");
        assert_eq!(get_ids(b, &format!("q={}", enc(q))).await, want, "q={q} without type");
        for query in [format!("type=Gauge&q={}", enc(q)), format!("q={}", enc(q))] {
            let r = b.get(&format!("/entities?{query}&count=true&limit=0")).await;
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["NGSILD-Results-Count"], want.len().to_string().as_str(), "count {query}");
        }
    };
    check("level>5;level<3", ids(&["array", "instances"])).await;
    // Each term may hold of another element: [1, 9] has one ≥ 4 and one ≤ 4.
    check("level>=4;level<=4", ids(&["scalar", "array", "instances", "list"])).await;
    check("level>=4;level<=4;level!=1", ids(&["scalar", "instances", "list"])).await;
    check("level==7", ids(&["object"])).await;
    check("level==6", ids(&["list"])).await;
    check("level>9000000000000000", ids(&["huge"])).await;
    check("level<100", ids(&["scalar", "array", "object", "instances", "list"])).await;
    check("level>100;level>=9007199254740993", ids(&["huge"])).await;
    // Changes: a new value, a removed attribute, a moved location, a deleted entity.
    assert_eq!(b.patch("/entities/urn:ngsi-ld:Gauge:scalar/attrs", &json!({"level": 50})).await.status(), 204);
    assert_eq!(b.delete("/entities/urn:ngsi-ld:Gauge:list/attrs/level").await.status(), 204);
    assert_eq!(b.delete("/entities/urn:ngsi-ld:Gauge:object").await.status(), 204);
    let moved = json!({"location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [128.0, 37.0]}}});
    assert_eq!(b.patch("/entities/urn:ngsi-ld:Gauge:array/attrs", &moved).await.status(), 204);
    check("level<100", ids(&["scalar", "array", "instances"])).await;
    check("level==50", ids(&["scalar"])).await;
    check("level==4", ids(&[])).await;
    // The same numbers again: a re-created entity, and an attribute that keeps its value but
    // becomes single-valued (its other instance deleted), so that ranges intersect on it.
    let r = b.post("/entities", &entity("object", p(json!(7)), (129.0, 38.0))).await;
    assert_eq!(r.status(), 201);
    let r = b.delete("/entities/urn:ngsi-ld:Gauge:instances/attrs/level?datasetId=urn:ngsi-ld:Dataset:b").await;
    assert_eq!(r.status(), 204);
    check("level==7", ids(&["object"])).await;
    check("level==2", ids(&["instances"])).await;
    check("level>1;level<3", ids(&["array", "instances"])).await;
    check("level==8", ids(&[])).await;
    let box_around = |x0: f64, y0: f64, x1: f64, y1: f64| {
        format!("type=Gauge&georel=within&geometry=Polygon&coordinates={}", enc(&rect(x0, y0, x1, y1).to_string()))
    };
    assert_eq!(get_ids(b, &box_around(126.95, 35.95, 127.15, 36.05)).await, ids(&["scalar"]));
    assert_eq!(get_ids(b, &box_around(127.95, 36.95, 128.05, 37.05)).await, ids(&["array"]));
    let near = format!(
        "type=Gauge&georel={}&geometry=Point&coordinates={}",
        enc("near;maxDistance==2000"),
        enc("[127.2,36.0]")
    );
    assert_eq!(get_ids(b, &near).await, ids(&[]));
    // Another tenant sees none of it.
    let r = b
        .request(Method::GET, &format!("/entities?q={}", enc("level<100")))
        .header("NGSILD-Tenant", "elsewhere")
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "NonexistentTenant").await;
}

/// The ids of `GET /entities?{query}` in the order answered.
async fn ordered_ids(b: &TestBroker, query: &str) -> Vec<String> {
    let body = b.get_json(&format!("/entities?{query}")).await;
    body.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
}

/// `orderBy` (§4.23 of V1.9.1): attribute values (numbers before strings, absent last in either
/// direction), several keys, pages cut after sorting, distance from `orderFrom`, `collation`;
/// and `q` on linked entities, which the broker finishes like ordering.
async fn ordering_and_linked_queries(b: &TestBroker) {
    let rooms: Vec<Value> = [("a", json!(3), "Zebra", [127.38, 36.35]), ("b", json!(1), "Ähre", [127.40, 36.36]),
        ("c", json!("x"), "apple", [127.50, 36.45]), ("d", Value::Null, "Banana", [127.39, 36.35])]
        .iter()
        .map(|(n, rank, name, at)| {
            let mut e = json!({"id": format!("urn:ngsi-ld:Room:o-{n}"), "type": "Room",
                "name": {"type": "Property", "value": name},
                "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": at}},
                "inBuilding": {"type": "Relationship", "object": format!("urn:ngsi-ld:Building:o-{}", if *n == "a" { "x" } else { "y" })}});
            if !rank.is_null() {
                e["rank"] = json!({"type": "Property", "value": rank});
            }
            e
        })
        .collect();
    let buildings = [
        json!({"id": "urn:ngsi-ld:Building:o-x", "type": "Building", "floors": {"type": "Property", "value": 12}}),
        json!({"id": "urn:ngsi-ld:Building:o-y", "type": "Building", "floors": {"type": "Property", "value": 2}}),
    ];
    load(b, &[rooms, buildings.to_vec()].concat()).await;
    let id = |n: &str| format!("urn:ngsi-ld:Room:o-{n}");

    assert_eq!(ordered_ids(b, "type=Room&orderBy=rank").await, [id("b"), id("a"), id("c"), id("d")]);
    assert_eq!(ordered_ids(b, "type=Room&orderBy=rank;desc").await, [id("c"), id("a"), id("b"), id("d")]);
    assert_eq!(ordered_ids(b, "type=Room&orderBy=rank&limit=2&offset=1").await, [id("a"), id("c")]);
    assert_eq!(ordered_ids(b, "type=Room&orderBy=type,id;desc").await, [id("d"), id("c"), id("b"), id("a")]);
    // Code point order puts "Zebra" before "apple" and "Ähre" last; a collation does not.
    assert_eq!(ordered_ids(b, "type=Room&orderBy=name").await, [id("d"), id("a"), id("c"), id("b")]);
    assert_eq!(ordered_ids(b, "type=Room&orderBy=name&collation=de").await, [id("b"), id("c"), id("d"), id("a")]);
    let near =
        ordered_ids(b, &format!("type=Room&orderBy=location;dist-asc&orderFrom={}", enc("[127.38,36.35]"))).await;
    assert_eq!(near, [id("a"), id("d"), id("b"), id("c")]);
    let r = b.get("/entities?type=Room&orderBy=location;dist-asc").await;
    assert_problem(r, 400, "BadRequestData").await;
    let r = b.get("/entities?type=Room&orderBy=name&collation=!!").await;
    assert_problem(r, 400, "BadRequestData").await;
    let r = b.get("/entities?type=Room&orderBy=name;sideways").await;
    assert_problem(r, 400, "BadRequestData").await;

    let tall = get_ids(b, &format!("type=Room&join=inline&q={}", enc("inBuilding{floors}>10"))).await;
    assert_eq!(tall, BTreeSet::from([id("a")]));
    let hinted = get_ids(b, &format!("type=Room&join=flat&q={}", enc("inBuilding{Vehicle:floors}>1"))).await;
    assert!(hinted.is_empty(), "a type hint that no target has: {hinted:?}");
}

store_tests!(
    selectors_and_projection,
    q_language,
    scope_queries,
    geo_near,
    geo_relations,
    representations,
    count_and_pagination,
    local_and_user_context,
    combined,
    malformed_queries,
    indexed_values_follow_writes,
    ordering_and_linked_queries,
);
