//! `GET /info/sourceIdentity` (§5.15.1, §6.33 of V1.9): who this context source is, for loop
//! detection in distributed operations (`Via`) and registrations.

use crate::AppState;
use crate::request::{Accept, Ngsi};
use crate::response::{self, ApiResult};
use axum::extract::State;
use hanbat_model::Timestamp;
use http::StatusCode;
use serde_json::json;

/// `GET /info/sourceIdentity`
pub async fn source_identity(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    ngsi.accept(&[Accept::Json, Accept::JsonLd])?;
    let uptime = state.started.elapsed();
    let body = json!({
        "id": format!("urn:ngsi-ld:ContextSourceIdentity:{}", state.instance),
        "type": "ContextSourceIdentity",
        "contextSourceAlias": alias(&state.instance, &ngsi.tenant),
        "contextSourceUptime": format!("PT{}.{:03}S", uptime.as_secs(), uptime.subsec_millis()),
        "contextSourceTimeAt": Timestamp::now().canonical(),
    });
    Ok(response::plain_json(StatusCode::OK, &body))
}

/// The alias of one tenant of this broker (Table 5.2.40-1: in multi-tenancy it identifies the
/// tenant), stable for the broker's lifetime so that peers can store it.
fn alias(instance: &str, tenant: &str) -> String {
    if tenant.is_empty() {
        format!("urn:ngsi-ld:ContextSource:{instance}")
    } else {
        let escaped: String =
            tenant.chars().map(|c| if c.is_ascii_alphanumeric() || "-._".contains(c) { c } else { '_' }).collect();
        format!("urn:ngsi-ld:ContextSource:{instance}:{escaped}")
    }
}
