//! Geo-queries from arbitrary text, as four lines: georel, geometry type, coordinates (JSON),
//! and the coordinates of an entity's geometry of the same type. Parsing never panics, failures
//! are BadRequestData, and matching any entity geometry never panics.

#![no_main]

use hanbat_model::jsonld::core_context;
use hanbat_model::{AttrValue, Attribute, Entity, ErrorKind};
use hanbat_query::GeoQuery;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.splitn(4, '\n');
    let (georel, geometry, coordinates) =
        (lines.next().unwrap_or(""), lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    let target: Value = serde_json::from_str(lines.next().unwrap_or("")).unwrap_or(Value::Null);
    match GeoQuery::parse(georel, geometry, coordinates, None, &core_context()) {
        Ok(q) => {
            let _ = q.search_bbox();
            let mut entity = Entity::new("urn:ngsi-ld:T:1", Vec::new());
            let value = AttrValue::GeoProperty(json!({"type": geometry, "coordinates": target}));
            entity.attrs.insert("https://uri.etsi.org/ngsi-ld/location".into(), vec![Attribute::new(value)]);
            let _ = q.matches(&entity);
        }
        Err(e) => assert_eq!(e.kind, ErrorKind::BadRequestData),
    }
});
