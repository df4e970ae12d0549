//! `q`, `type` and `scopeQ` from arbitrary text: parsing never panics, failures are
//! BadRequestData, and whatever parses evaluates and prints back to the same query.

#![no_main]

use hanbat_model::jsonld::core_context;
use hanbat_model::{Attribute, Entity, ErrorKind};
use hanbat_query::{Query, ScopeQuery, TypeQuery};
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use std::collections::HashMap;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let ctx = core_context();
    match Query::parse(text, &ctx) {
        Ok(q) => {
            let mut entity =
                Entity::new("urn:ngsi-ld:T:1", vec!["https://uri.etsi.org/ngsi-ld/default-context/T".into()]);
            for (name, value) in [("a", json!(1)), ("b", json!(["x", 2.5])), ("c", json!({"k": {"l": "v"}}))] {
                entity.attrs.insert(
                    format!("https://uri.etsi.org/ngsi-ld/default-context/{name}"),
                    vec![Attribute::property(value)],
                );
            }
            entity.attrs.insert(
                "https://uri.etsi.org/ngsi-ld/default-context/r".into(),
                vec![Attribute::relationship("urn:ngsi-ld:T:1")],
            );
            let links: HashMap<String, Entity> = [(entity.id.clone(), entity.clone())].into();
            let _ = q.matches(&entity);
            let _ = q.matches_with(&entity, &links);
            let printed = q.to_string();
            let again = Query::parse(&printed, &ctx).expect("a printed query parses");
            assert_eq!(again, q, "{text:?} printed as {printed:?}");
        }
        Err(e) => assert_eq!(e.kind, ErrorKind::BadRequestData),
    }
    if let Ok(t) = TypeQuery::parse(text, &ctx) {
        let _ = t.matches(&["https://uri.etsi.org/ngsi-ld/default-context/T".into()]);
    }
    if let Ok(s) = ScopeQuery::parse(text) {
        let _ = s.matches(&["/a/b".into()]);
    }
});
