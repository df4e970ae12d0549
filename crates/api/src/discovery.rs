//! Discovery of what a tenant holds: `/types`, `/types/{type}`, `/attributes`,
//! `/attributes/{attrId}` (§5.7.5–5.7.10, §6.25–6.28 of V1.8). Answered from the per-type
//! attribute counters the store keeps in step with every write, never by scanning entities.

use crate::AppState;
use crate::request::{Accept, Ngsi};
use crate::response::{self, ApiResult};
use axum::extract::{Path, State};
use hanbat_model::NgsiError;
use hanbat_store::TypeAttrCount;
use http::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Per type: entity count, and per attribute its kinds and how many entities have it.
#[derive(Default)]
struct TypeSummary {
    entities: u64,
    attrs: BTreeMap<String, (BTreeSet<String>, u64)>,
}

fn summarize(counts: Vec<TypeAttrCount>) -> BTreeMap<String, TypeSummary> {
    let mut types: BTreeMap<String, TypeSummary> = BTreeMap::new();
    for c in counts {
        let summary = types.entry(c.entity_type).or_default();
        match c.attr {
            None => summary.entities = c.entities,
            Some(attr) => {
                let slot = summary.attrs.entry(attr).or_default();
                slot.0.insert(c.kind);
                slot.1 = slot.1.max(c.entities);
            }
        }
    }
    types
}

fn list_id(kind: &str) -> String {
    format!("urn:ngsi-ld:{kind}:{}", uuid::Uuid::new_v4())
}

/// `GET /types`
pub async fn types(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["details", "local"])?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd])?;
    let rc = ngsi.context(&state).await?;
    state.require_tenant(&ngsi.tenant).await?;
    let types = summarize(state.broker.store.type_attr_counts(&ngsi.tenant).await?);
    let body = if ngsi.params.flag("details")? {
        Value::Array(
            types
                .iter()
                .map(|(t, s)| {
                    json!({
                        "id": t,
                        "type": "EntityType",
                        "typeName": rc.ctx.compact(t),
                        "attributeNames": s.attrs.keys().map(|a| rc.ctx.compact(a)).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
    } else {
        json!({
            "id": list_id("EntityTypeList"),
            "type": "EntityTypeList",
            "typeList": types.keys().map(|t| rc.ctx.compact(t)).collect::<Vec<_>>(),
        })
    };
    Ok(response::body(&rc, accept, StatusCode::OK, body, false))
}

/// `GET /types/{type}`
pub async fn type_info(State(state): State<AppState>, Path(type_name): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["local"])?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd])?;
    let rc = ngsi.context(&state).await?;
    state.require_tenant(&ngsi.tenant).await?;
    let iri = rc.ctx.expand(&type_name);
    let types = summarize(state.broker.store.type_attr_counts(&ngsi.tenant).await?);
    let summary = types.get(&iri).ok_or_else(|| NgsiError::not_found(format!("no entity has type '{type_name}'")))?;
    let body = json!({
        "id": iri,
        "type": "EntityTypeInfo",
        "typeName": rc.ctx.compact(&iri),
        "entityCount": summary.entities,
        "attributeDetails": summary.attrs.iter().map(|(a, (kinds, _))| json!({
            "id": a,
            "type": "Attribute",
            "attributeName": rc.ctx.compact(a),
            "attributeTypes": kinds.iter().collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    Ok(response::body(&rc, accept, StatusCode::OK, body, false))
}

/// Per attribute across types: kinds, entity count, types having it.
fn by_attribute(types: &BTreeMap<String, TypeSummary>) -> BTreeMap<&str, (BTreeSet<&str>, u64, BTreeSet<&str>)> {
    let mut attrs: BTreeMap<&str, (BTreeSet<&str>, u64, BTreeSet<&str>)> = BTreeMap::new();
    for (t, summary) in types {
        for (a, (kinds, n)) in &summary.attrs {
            let slot = attrs.entry(a.as_str()).or_default();
            slot.0.extend(kinds.iter().map(String::as_str));
            slot.1 += n;
            slot.2.insert(t.as_str());
        }
    }
    attrs
}

fn attribute_json(
    rc_ctx: &hanbat_model::Context,
    attr: &str,
    kinds: &BTreeSet<&str>,
    count: u64,
    types: &BTreeSet<&str>,
) -> Value {
    json!({
        "id": attr,
        "type": "Attribute",
        "attributeName": rc_ctx.compact(attr),
        "attributeCount": count,
        "attributeTypes": kinds.iter().collect::<Vec<_>>(),
        "typeNames": types.iter().map(|t| rc_ctx.compact(t)).collect::<Vec<_>>(),
    })
}

/// `GET /attributes`
pub async fn attributes(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["details", "local"])?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd])?;
    let rc = ngsi.context(&state).await?;
    state.require_tenant(&ngsi.tenant).await?;
    let types = summarize(state.broker.store.type_attr_counts(&ngsi.tenant).await?);
    let attrs = by_attribute(&types);
    let body = if ngsi.params.flag("details")? {
        Value::Array(attrs.iter().map(|(a, (kinds, n, ts))| attribute_json(&rc.ctx, a, kinds, *n, ts)).collect())
    } else {
        json!({
            "id": list_id("AttributeList"),
            "type": "AttributeList",
            "attributeList": attrs.keys().map(|a| rc.ctx.compact(a)).collect::<Vec<_>>(),
        })
    };
    Ok(response::body(&rc, accept, StatusCode::OK, body, false))
}

/// `GET /attributes/{attrId}`
pub async fn attribute(State(state): State<AppState>, Path(attr): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["local"])?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd])?;
    let rc = ngsi.context(&state).await?;
    state.require_tenant(&ngsi.tenant).await?;
    let iri = rc.ctx.expand(&attr);
    let types = summarize(state.broker.store.type_attr_counts(&ngsi.tenant).await?);
    let attrs = by_attribute(&types);
    let (kinds, n, ts) =
        attrs.get(iri.as_str()).ok_or_else(|| NgsiError::not_found(format!("no entity has attribute '{attr}'")))?;
    Ok(response::body(&rc, accept, StatusCode::OK, attribute_json(&rc.ctx, &iri, kinds, *n, ts), false))
}
