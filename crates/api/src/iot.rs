//! `/iot/...`: the provisioning API of the built-in IoT agent, at the paths and with the bodies of
//! the FIWARE IoT Agent (`/iot/services`, `/iot/devices`, `/iot/about`). The provisioning
//! semantics live in `hanbat-ingest`; this module only does the HTTP binding (tenant, JSON body,
//! ProblemDetails) around [`hanbat_ingest::Ingest`], as `subscriptions` does for the notifier.

use crate::AppState;
use crate::request::Ngsi;
use crate::response::{self, ApiResult};
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use hanbat_ingest::Ingest;
use hanbat_model::{NgsiError, Result};
use http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

fn ingest(state: &AppState) -> Result<&Arc<Ingest>> {
    state.ingest.as_ref().ok_or_else(|| NgsiError::not_supported("device ingestion is not enabled on this broker"))
}

fn json_body(ngsi: &Ngsi) -> Result<Value> {
    if ngsi.body.is_empty() {
        return Err(NgsiError::invalid_request("the request has no body"));
    }
    serde_json::from_slice(&ngsi.body).map_err(|e| NgsiError::invalid_request(format!("the body is not JSON: {e}")))
}

/// `GET /iot/about`: version and ingestion counters.
pub async fn about(State(state): State<AppState>) -> ApiResult {
    Ok(response::plain_json(StatusCode::OK, &ingest(&state)?.about()))
}

/// `POST /iot/services`
pub async fn create_services(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    ingest(&state)?.create_services(&ngsi.tenant, json_body(&ngsi)?).await?;
    Ok(StatusCode::CREATED.into_response())
}

/// `GET /iot/services`
pub async fn list_services(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    let services = ingest(&state)?.services(&ngsi.tenant);
    Ok(response::plain_json(StatusCode::OK, &json!({"count": services.len(), "services": services})))
}

/// `DELETE /iot/services?apikey=…` (the IoT Agent names the group by query parameters).
pub async fn delete_service(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["apikey", "resource"])?;
    let apikey = ngsi
        .params
        .get("apikey")
        .ok_or_else(|| NgsiError::bad_data("DELETE /iot/services needs the apikey query parameter"))?;
    ingest(&state)?.delete_service(&ngsi.tenant, apikey).await?;
    Ok(response::no_content())
}

/// `POST /iot/devices`: one device or `{"devices": [...]}`.
pub async fn create_devices(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    ingest(&state)?.create_devices(&ngsi.tenant, json_body(&ngsi)?).await?;
    Ok(StatusCode::CREATED.into_response())
}

/// `GET /iot/devices`
pub async fn list_devices(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    let devices = ingest(&state)?.devices(&ngsi.tenant);
    Ok(response::plain_json(StatusCode::OK, &json!({"count": devices.len(), "devices": devices})))
}

/// `GET /iot/devices/{id}`
pub async fn device(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    let device = ingest(&state)?.device(&ngsi.tenant, &id)?;
    Ok(response::plain_json(StatusCode::OK, &json!(device)))
}

/// `PUT /iot/devices/{id}`: the members given replace the stored ones.
pub async fn update_device(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    ingest(&state)?.update_device(&ngsi.tenant, &id, json_body(&ngsi)?).await?;
    Ok(response::no_content())
}

/// `DELETE /iot/devices/{id}`
pub async fn delete_device(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    ingest(&state)?.delete_device(&ngsi.tenant, &id).await?;
    Ok(response::no_content())
}
