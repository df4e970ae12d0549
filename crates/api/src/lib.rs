//! The NGSI-LD HTTP binding (ETSI GS CIM 009 §6) over a [`Broker`].
//!
//! Each handler reads the request ([`request::Ngsi`]: tenant, parameters, @context, media types),
//! turns it into expanded model values with `hanbat-model`, calls the broker, and renders the
//! answer with the requester's @context ([`response`]). Handlers hold no state of their own.

pub mod batch;
pub mod contexts;
pub mod csource;
pub mod discovery;
pub mod distributed;
pub mod entities;
pub mod entity_maps;
pub mod identity;
pub mod iot;
pub mod params;
pub mod prefer;
pub mod projection;
pub mod query;
pub mod render;
pub mod request;
pub mod response;
pub mod snapshots;
pub mod subscriptions;
pub mod temporal;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hanbat_broker::Broker;
use hanbat_model::{ErrorKind, NgsiError, Result};
use http::{Method, StatusCode, header};
use parking_lot::RwLock;
use std::collections::HashSet;
use std::sync::Arc;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub broker: Arc<Broker>,
    /// Largest accepted request body, in bytes (larger: 413).
    pub max_body: usize,
    /// The subscription service; without it `/subscriptions` answers OperationNotSupported.
    pub notifier: Option<Arc<hanbat_notify::Notifier>>,
    /// The IoT agent; without it `/iot/...` answers OperationNotSupported.
    pub ingest: Option<Arc<hanbat_ingest::Ingest>>,
    /// The context source registrations; without them `/csourceRegistrations` and
    /// `/csourceSubscriptions` answer OperationNotSupported.
    pub csources: Option<Arc<hanbat_csource::CSources>>,
    /// Forwards requests to registered context sources (with `csources`).
    /// (An `Arc`: the state is cloned for every request.)
    pub forwarder: Option<Arc<hanbat_federation::Forwarder>>,
    /// Tenants known to exist, so that reads need not ask the store each time.
    known_tenants: Arc<RwLock<HashSet<String>>>,
    /// Identifies this broker process (context source identity, §5.15).
    pub instance: Arc<str>,
    pub started: std::time::Instant,
}

pub fn nonexistent_tenant(tenant: &str) -> NgsiError {
    NgsiError::new(ErrorKind::NonexistentTenant, format!("tenant '{tenant}' does not exist"))
}

impl AppState {
    pub fn new(broker: Arc<Broker>, max_body: usize) -> Self {
        Self {
            broker,
            max_body,
            notifier: None,
            ingest: None,
            csources: None,
            forwarder: None,
            known_tenants: Arc::default(),
            instance: uuid::Uuid::new_v4().to_string().into(),
            started: std::time::Instant::now(),
        }
    }

    /// Serves `/subscriptions` with `notifier`.
    pub fn with_notifier(mut self, notifier: Arc<hanbat_notify::Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Serves `/iot/...` (device provisioning, ingestion counters) with `ingest`.
    pub fn with_ingest(mut self, ingest: Arc<hanbat_ingest::Ingest>) -> Self {
        self.ingest = Some(ingest);
        self
    }

    /// Serves `/csourceRegistrations` and `/csourceSubscriptions` with `csources`.
    pub fn with_csources(mut self, csources: Arc<hanbat_csource::CSources>) -> Self {
        self.csources = Some(csources);
        self.forwarder = Some(Arc::new(hanbat_federation::Forwarder::new(&self.instance[..8])));
        self
    }

    pub async fn tenant_exists(&self, tenant: &str) -> Result<bool> {
        if tenant.is_empty() || self.known_tenants.read().contains(tenant) {
            return Ok(true);
        }
        let exists = self.broker.store.tenant_exists(tenant).await?;
        if exists {
            self.tenant_seen(tenant);
        }
        Ok(exists)
    }

    /// Operations on existing data in an unknown tenant fail with `NonexistentTenant` (§6.3.14).
    pub async fn require_tenant(&self, tenant: &str) -> Result<()> {
        if self.tenant_exists(tenant).await? { Ok(()) } else { Err(nonexistent_tenant(tenant)) }
    }

    pub fn tenant_seen(&self, tenant: &str) {
        if !tenant.is_empty() && !self.known_tenants.read().contains(tenant) {
            self.known_tenants.write().insert(tenant.to_string());
        }
    }
}

/// The service to serve: [`router`] behind path normalisation, so that `/entities/` and
/// `/entities` are the same resource (clients, the ETSI suite among them, send both).
pub type App = tower_http::normalize_path::NormalizePath<Router>;

pub fn app(state: AppState) -> App {
    app_with(state, Router::new())
}

/// [`app`] with more routes beside the NGSI-LD API (the dashboard), under the same path
/// normalisation. `extra` must have no fallback: unknown paths keep the API's 404.
pub fn app_with(state: AppState, extra: Router) -> App {
    use tower::Layer;
    tower_http::normalize_path::NormalizePathLayer::trim_trailing_slash().layer(router(state).merge(extra))
}

/// The NGSI-LD API, mounted at `/ngsi-ld/v1`, and the IoT agent's provisioning API at `/iot`.
pub fn router(state: AppState) -> Router {
    let max_body = state.max_body;
    let api = Router::new()
        .route(
            "/entities",
            get(query::query)
                .post(entities::create)
                .delete(entities::purge)
                .put(entities::missing_id)
                .patch(entities::missing_id),
        )
        .route(
            "/entities/{id}",
            get(entities::retrieve).put(entities::replace).patch(entities::merge).delete(entities::delete),
        )
        .route("/entities/{id}/attrs", post(entities::append).patch(entities::update))
        .route(
            "/entities/{id}/attrs/{attr}",
            axum::routing::patch(entities::patch_attr).put(entities::replace_attr).delete(entities::delete_attr),
        )
        .route("/entityOperations/create", post(batch::create))
        .route("/entityOperations/upsert", post(batch::upsert))
        .route("/entityOperations/update", post(batch::update))
        .route("/entityOperations/delete", post(batch::delete))
        .route("/entityOperations/merge", post(batch::merge))
        .route("/entityOperations/query", post(query::query_post))
        .route("/entityMaps", get(entity_maps::create_for_query))
        .route("/entityMaps/{id}", get(entity_maps::retrieve).patch(entity_maps::update).delete(entity_maps::delete))
        .route("/temporal/entityMaps", get(entity_maps::create_for_temporal_query))
        .route("/snapshots", get(snapshots::list).post(snapshots::create).delete(snapshots::purge))
        .route("/snapshots/{id}", get(snapshots::retrieve).patch(snapshots::update).delete(snapshots::delete))
        .route("/snapshots/{id}/clone", post(snapshots::clone))
        .route("/types", get(discovery::types))
        .route("/types/{type}", get(discovery::type_info))
        .route("/attributes", get(discovery::attributes))
        .route("/attributes/{attr}", get(discovery::attribute))
        .route("/info/sourceIdentity", get(identity::source_identity))
        .route("/temporal/entities", get(temporal::query).post(temporal::create))
        .route("/temporal/entities/{id}", get(temporal::retrieve).delete(temporal::delete))
        .route("/temporal/entities/{id}/attrs", post(temporal::add_attrs))
        .route("/temporal/entities/{id}/attrs/{attr}", axum::routing::delete(temporal::delete_attr))
        .route(
            "/temporal/entities/{id}/attrs/{attr}/{instance}",
            axum::routing::patch(temporal::patch_instance).delete(temporal::delete_instance),
        )
        .route("/temporal/entityOperations/query", post(temporal::query_post))
        .route("/subscriptions", get(subscriptions::query).post(subscriptions::create))
        .route(
            "/subscriptions/{id}",
            get(subscriptions::retrieve).patch(subscriptions::update).delete(subscriptions::delete),
        )
        .route("/csourceRegistrations", get(csource::query).post(csource::create))
        .route("/csourceRegistrations/{id}", get(csource::retrieve).patch(csource::update).delete(csource::delete))
        .route("/csourceSubscriptions", get(csource::subscriptions).post(csource::subscribe))
        .route(
            "/csourceSubscriptions/{id}",
            get(csource::subscription).patch(csource::update_subscription).delete(csource::unsubscribe),
        )
        .route("/jsonldContexts", get(contexts::list).post(contexts::add))
        .route("/jsonldContexts/{id}", get(contexts::serve).delete(contexts::delete))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    // The IoT Agent's provisioning paths, at the root as IoT Agent clients expect them.
    let iot = Router::new()
        .route("/about", get(iot::about))
        .route("/services", get(iot::list_services).post(iot::create_services).delete(iot::delete_service))
        .route("/devices", get(iot::list_devices).post(iot::create_devices))
        .route("/devices/{id}", get(iot::device).put(iot::update_device).delete(iot::delete_device))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    Router::new()
        .nest("/ngsi-ld/v1", api)
        .nest("/iot", iot)
        .fallback(not_found)
        .layer(middleware::from_fn(prefer::amend))
        .layer(middleware::from_fn_with_state(state, snapshots::scope))
        .layer(middleware::from_fn(echo_tenant))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(require_length))
}

async fn not_found(method: Method, uri: http::Uri) -> Response {
    response::ApiError(NgsiError::not_found(format!("no resource at {method} {}", uri.path()))).into_response()
}

async fn method_not_allowed(method: Method, uri: http::Uri) -> Response {
    response::ApiError(NgsiError::new(
        ErrorKind::MethodNotAllowed,
        format!("{method} is not allowed on {}", uri.path()),
    ))
    .into_response()
}

/// §6.3.4: POST, PATCH and PUT need a `Content-Length`; without one the answer is a bare 411,
/// decided before anything else (tenant, body).
async fn require_length(request: Request, next: Next) -> Response {
    let needs_length = matches!(*request.method(), Method::POST | Method::PATCH | Method::PUT);
    if needs_length && !request.headers().contains_key(header::CONTENT_LENGTH) {
        return StatusCode::LENGTH_REQUIRED.into_response();
    }
    next.run(request).await
}

/// Echoes the `NGSILD-Tenant` header of the request in the response (§6.3.14).
async fn echo_tenant(request: Request, next: Next) -> Response {
    let tenant = request.headers().get(request::TENANT_HEADER).cloned();
    let mut response = next.run(request).await;
    if let Some(t) = tenant {
        response.headers_mut().insert(request::TENANT_HEADER, t);
    }
    response
}
