//! `Prefer: ngsi-ld=<major.minor>` (§4.3.6.8 of V1.9.1): a client that understands only an
//! earlier version of the API asks for payloads that version can read. Attribute types newer
//! than that version are reformatted as the kind it knew (Table 4.3.6.8-1: "reformat attribute
//! as Property"); the answer says `Preference-Applied: ngsi-ld=<version>`, with `203
//! Non-Authoritative Information` when the payload was altered.
//!
//! The amendment works on the rendered JSON of a successful answer, so that every entity
//! representation (retrieval, query, temporal) gets it in one place; only requests that carry
//! the preference pay for it. Attributes are found by their `type` member (normalized and
//! temporal representations); concise and keyValues representations carry no attribute types
//! and are left as they are.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use serde_json::{Map, Value};

/// An attribute type newer than the first version of the API, and what an earlier version
/// reads instead.
struct NewKind {
    kind: &'static str,
    /// The version (major, minor) that introduced it.
    since: (u32, u32),
    /// The member that holds its value.
    member: &'static str,
    older: &'static str,
    older_member: &'static str,
}

const fn new_kind(kind: &'static str, since: (u32, u32), member: &'static str) -> NewKind {
    NewKind { kind, since, member, older: "Property", older_member: "value" }
}

const INTRODUCED: [NewKind; 5] = [
    new_kind("LanguageProperty", (1, 4), "languageMap"),
    new_kind("VocabProperty", (1, 8), "vocab"),
    new_kind("JsonProperty", (1, 8), "json"),
    new_kind("ListProperty", (1, 8), "valueList"),
    NewKind {
        kind: "ListRelationship",
        since: (1, 8),
        member: "objectList",
        older: "Relationship",
        older_member: "object",
    },
];

/// The versions of the API there are: a preference for another one is ignored (RFC 7240 §2).
const KNOWN: std::ops::RangeInclusive<(u32, u32)> = (1, 0)..=(1, 9);

/// Answers larger than this are sent as they are: amending needs the whole body in memory.
const MAX_AMENDED_BYTES: usize = 64 << 20;

/// The version an `ngsi-ld=<major.minor>` preference names, if it is one there is.
fn preferred_version(request: &Request) -> Option<(u32, u32)> {
    request
        .headers()
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .filter_map(|p| p.trim().strip_prefix("ngsi-ld="))
        .filter_map(|v| {
            let (major, minor) = v.trim().trim_matches('"').split_once('.')?;
            Some((major.parse().ok()?, minor.parse().ok()?))
        })
        .find(|v| KNOWN.contains(v))
}

/// Middleware: applies a client's version preference to its JSON answer.
pub async fn amend(request: Request, next: Next) -> Response {
    let Some(version) = preferred_version(&request) else { return next.run(request).await };
    let response = next.run(request).await;
    let is_json =
        response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.contains("json"));
    if response.status() != StatusCode::OK || !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_AMENDED_BYTES).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let mut amended = false;
    let bytes = match serde_json::from_slice::<Value>(&bytes) {
        Ok(mut json) => {
            amended = downgrade(&mut json, version);
            if amended { serde_json::to_vec(&json).map_or(bytes, Into::into) } else { bytes }
        }
        Err(_) => bytes,
    };
    if amended {
        parts.status = StatusCode::NON_AUTHORITATIVE_INFORMATION;
    }
    if let Ok(applied) = HeaderValue::from_str(&format!("ngsi-ld={}.{}", version.0, version.1)) {
        parts.headers.insert("Preference-Applied", applied);
    }
    parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    Response::from_parts(parts, Body::from(bytes))
}

/// Reformats, in entities (or arrays of them), the attributes newer than `version`; returns
/// whether anything changed.
fn downgrade(json: &mut Value, version: (u32, u32)) -> bool {
    match json {
        Value::Array(items) => items.iter_mut().fold(false, |changed, item| downgrade(item, version) | changed),
        Value::Object(entity) => attributes_of(entity, version),
        _ => false,
    }
}

/// The attribute instances among an object's members (one object, or an array of instances).
fn attributes_of(object: &mut Map<String, Value>, version: (u32, u32)) -> bool {
    let mut changed = false;
    for (name, member) in object.iter_mut() {
        if matches!(name.as_str(), "@context" | "id" | "type") {
            continue;
        }
        match member {
            Value::Object(attr) => changed |= attribute(attr, version),
            Value::Array(instances) => {
                for instance in instances {
                    if let Value::Object(attr) = instance {
                        changed |= attribute(attr, version);
                    }
                }
            }
            _ => {}
        }
    }
    changed
}

/// One attribute instance and its sub-attributes. Values are never looked into: a value may
/// hold any JSON, `type` members included.
fn attribute(attr: &mut Map<String, Value>, version: (u32, u32)) -> bool {
    let Some(kind) = attr.get("type").and_then(Value::as_str).map(str::to_string) else { return false };
    let mut changed = false;
    if let Some(new) = INTRODUCED.iter().find(|n| n.kind == kind)
        && version < new.since
    {
        attr.insert("type".into(), Value::String(new.older.to_string()));
        if let Some(mut value) = attr.remove(new.member) {
            // A ListRelationship's items are `{"object": uri}`: a Relationship holds the URIs.
            if let Value::Array(items) = &mut value {
                for item in items.iter_mut().filter(|_| kind == "ListRelationship") {
                    if let Some(object) = item.get_mut("object").map(Value::take) {
                        *item = object;
                    }
                }
            }
            attr.insert(new.older_member.to_string(), value);
        }
        changed = true;
    }
    for (name, sub) in attr.iter_mut() {
        let is_value = matches!(
            name.as_str(),
            "value" | "object" | "languageMap" | "vocab" | "json" | "valueList" | "objectList" | "type"
        );
        if let (false, Value::Object(sub)) = (is_value, sub) {
            changed |= attribute(sub, version);
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn newer_kinds_become_older_ones_and_values_stay_untouched() {
        let mut entity = json!({
            "id": "urn:x", "type": "Building",
            "category": {"type": "VocabProperty", "vocab": "commercial",
                         "since": {"type": "JsonProperty", "json": {"type": "VocabProperty"}}},
            "name": {"type": "LanguageProperty", "languageMap": {"ko": "한밭"}},
            "owners": [{"type": "ListRelationship", "objectList": [{"object": "urn:a"}]}],
            "plain": {"type": "Property", "value": {"type": "VocabProperty", "vocab": "x"}},
        });
        assert!(downgrade(&mut entity, (1, 5)));
        assert_eq!(
            entity["category"],
            json!({"type": "Property", "value": "commercial",
            "since": {"type": "Property", "value": {"type": "VocabProperty"}}})
        );
        assert_eq!(entity["name"]["type"], "LanguageProperty", "1.5 knows LanguageProperty");
        assert_eq!(entity["owners"][0], json!({"type": "Relationship", "object": ["urn:a"]}));
        assert_eq!(entity["plain"]["value"]["type"], "VocabProperty", "a value is data, not an attribute");
        let mut again = entity.clone();
        assert!(downgrade(&mut again, (1, 3)));
        assert_eq!(again["name"], json!({"type": "Property", "value": {"ko": "한밭"}}));
        let mut native = json!([{"id": "urn:y", "type": "T", "v": {"type": "VocabProperty", "vocab": "a"}}]);
        assert!(!downgrade(&mut native, (1, 9)));
    }
}
