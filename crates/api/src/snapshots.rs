//! Snapshots (§5.16, §5.2.41, §6.36–6.38 of V1.9.1): a frozen copy of what some queries
//! matched, which the `NGSILD-Snapshot` header (§6.3.22) then addresses instead of the live data.
//!
//! A snapshot's entities live in a tenant of their own, named so that no client can address it
//! with `NGSILD-Tenant` ([`data_tenant`]), and every entity operation runs on it unchanged: the
//! [`scope`] middleware swaps the request's tenant for the snapshot's. Orion-LD does the same
//! (one tenant database per snapshot). The snapshot itself is a document of its owner tenant
//! ([`DocKind::Snapshot`]), read from the store on every use, so every node of a cluster sees it.
//!
//! Creating one answers at once with `snapshotStatus: preparing`; the queries run in the
//! background, like a `POST /entityOperations/query` including the registered context sources
//! (§5.16.1.4 defers to §5.7.2.4), and copy what they match ([`WriteOp::Copy`], keeping the
//! entities' system times). The status then becomes `success` (every query matched something),
//! `partial`, `empty` or `failure`, with one `resultStatus` per query in
//! `snapshotQueriesDetails`.
//!
//! Lifetime: `snapshotLifetime` from creation, else one hour (Orion-LD's default); an expired
//! snapshot reads as absent and the sweeper ([`spawn_sweeper`], every minute) deletes it with
//! its data.

use crate::AppState;
use crate::params::Params;
use crate::query::{self, RENDER_OPTIONS};
use crate::render::View;
use crate::request::{Ngsi, RequestContext};
use crate::response::{self, ApiError, ApiResult};
use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hanbat_broker::MAX_IN_MEMORY;
use hanbat_model::time::format_micros;
use hanbat_model::{Attribute, Entity, NgsiError, Result, Timestamp, parse};
use hanbat_query::Query;
use hanbat_store::{DocKind, EntityQuery, HistoryOp, Page, WriteOp};
use hanbat_temporal::IsoDuration;
use http::{HeaderValue, StatusCode};
use serde_json::{Map, Value, json};
use std::time::Duration;

/// The header that scopes a request to a snapshot (§6.3.22).
pub const HEADER: &str = "NGSILD-Snapshot";

const COLLECTION: &str = "/ngsi-ld/v1/snapshots";

/// Lifetime of a snapshot that does not ask for one: Orion-LD's hour.
const DEFAULT_LIFETIME_MICROS: i64 = 3_600_000_000;

const DEFAULT_PRIORITY: i64 = 5;

/// Entities copied per write transaction.
const COPY_BATCH: usize = 500;

/// `lastUsedAt` is rewritten at most this often: a read through a snapshot must not cost a
/// durable write each time.
const TOUCH_EVERY_MICROS: i64 = 10_000_000;

/// How often expired snapshots are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Members a client may change (§5.16.4); the others are fixed at creation or the broker's.
const MUTABLE: [&str; 4] = ["snapshotPriority", "snapshotLifetime", "endpoint", "receiverInfo"];

/// Members the broker maintains: whatever a client sends for them is replaced.
const SYSTEM: [&str; 7] = [
    "snapshotStatus",
    "snapshotQueriesDetails",
    "snapshotTemporalQueriesDetails",
    "createdAt",
    "modifiedAt",
    "lastUsedAt",
    "expiresAt",
];

/// The members a purge's `q` may test (§5.16.7.4: members of the Snapshot data type only).
const QUERYABLE: [&str; 5] = ["snapshotPriority", "snapshotStatus", "snapshotLifetime", "lastUsedAt", "expiresAt"];

/// The paths the header may scope: entity data, live and historical, and its discovery.
const SCOPED_PATHS: [&str; 6] = [
    "/ngsi-ld/v1/entities",
    "/ngsi-ld/v1/entityOperations/",
    "/ngsi-ld/v1/entityMaps",
    "/ngsi-ld/v1/temporal/",
    "/ngsi-ld/v1/types",
    "/ngsi-ld/v1/attributes",
];

/// The tenant that holds a snapshot's entities. The control characters make it a name the
/// `NGSILD-Tenant` header cannot carry, so only the snapshot's owner reaches it, through
/// `NGSILD-Snapshot`.
pub fn data_tenant(owner: &str, id: &str) -> String {
    format!("\u{1}snapshot\u{1}{owner}\u{1}{id}")
}

/// The tenant a request through a snapshot runs on, put in the request's extensions by
/// [`scope`] and read by the [`Ngsi`] extractor.
#[derive(Clone)]
pub struct ScopedTenant(pub String);

/// A snapshot as stored: its representation, with the broker's members in place.
struct Snapshot(Map<String, Value>);

impl Snapshot {
    fn id(&self) -> &str {
        self.0.get("id").and_then(Value::as_str).unwrap_or_default()
    }

    fn micros(&self, member: &str) -> Option<i64> {
        let text = self.0.get(member)?.as_str()?;
        Timestamp::parse_utc(text).ok().map(|t| t.micros())
    }

    fn expired(&self, now: i64) -> bool {
        self.micros("expiresAt").is_some_and(|at| at <= now)
    }

    fn location(&self) -> String {
        format!("{COLLECTION}/{}", self.id())
    }

    /// The snapshot as a pseudo-entity, for a purge's `q`: each queryable member a Property.
    fn as_entity(&self, ctx: &hanbat_model::Context) -> Entity {
        let mut entity = Entity { id: self.id().to_string(), types: vec![ctx.expand("Snapshot")], ..Entity::default() };
        for member in QUERYABLE {
            if let Some(value) = self.0.get(member) {
                entity.attrs.insert(ctx.expand(member), vec![Attribute::property(value.clone())]);
            }
        }
        entity.created_at = self.micros("createdAt").map(Timestamp::from_micros);
        entity.modified_at = self.micros("modifiedAt").map(Timestamp::from_micros);
        entity
    }
}

fn not_found(id: &str) -> NgsiError {
    NgsiError::not_found(format!("snapshot '{id}' does not exist or has expired"))
}

fn snapshot_id(id: &str) -> Result<&str> {
    if parse::is_uri(id) {
        Ok(id)
    } else {
        Err(NgsiError::bad_data(format!("'{id}' is not a valid snapshot id: it must be a URI")))
    }
}

/// A live snapshot of the tenant: an expired one reads as absent (the sweeper deletes it).
async fn load(state: &AppState, tenant: &str, id: &str) -> Result<Option<Snapshot>> {
    let Some(Value::Object(doc)) = state.broker.store.get_doc(tenant, DocKind::Snapshot, id).await? else {
        return Ok(None);
    };
    let snapshot = Snapshot(doc);
    Ok((!snapshot.expired(Timestamp::now().micros())).then_some(snapshot))
}

async fn save(state: &AppState, tenant: &str, snapshot: &Snapshot) -> Result<()> {
    let doc = Value::Object(snapshot.0.clone());
    state.broker.store.put_doc(tenant, DocKind::Snapshot, snapshot.id(), &doc).await
}

/// Serialises this process's read-modify-writes of snapshots, so that a background fill that
/// records its outcome, an update and a `lastUsedAt` touch never write back a stale copy over
/// one another. (Between nodes of a cluster such races remain possible.)
static MODIFYING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Applies `change` to a live snapshot and saves it; `None` when there is none.
async fn modify(
    state: &AppState,
    tenant: &str,
    id: &str,
    change: impl FnOnce(&mut Snapshot) -> Result<()>,
) -> Result<Option<Snapshot>> {
    let _serialised = MODIFYING.lock().await;
    let Some(mut snapshot) = load(state, tenant, id).await? else { return Ok(None) };
    change(&mut snapshot)?;
    save(state, tenant, &snapshot).await?;
    Ok(Some(snapshot))
}

/// Deletes the snapshot and, in the background, its data.
async fn remove(state: &AppState, tenant: &str, id: &str) -> Result<()> {
    {
        let _serialised = MODIFYING.lock().await;
        state.broker.store.delete_doc(tenant, DocKind::Snapshot, id).await?;
    }
    let state = state.clone();
    let data = data_tenant(tenant, id);
    tokio::spawn(async move {
        if let Err(e) = drop_data(&state, &data).await {
            tracing::warn!(error = %e.detail, "deleting a snapshot's data failed");
        }
    });
    Ok(())
}

/// Deletes every entity of a snapshot's tenant and its history.
async fn drop_data(state: &AppState, data: &str) -> Result<()> {
    let store = &state.broker.store;
    loop {
        let page = store.query(data, &EntityQuery { limit: COPY_BATCH, ..EntityQuery::default() }).await?;
        if page.entities.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = page.entities.into_iter().map(|e| e.id).collect();
        store.write(data, ids.iter().map(|id| WriteOp::Delete { id: id.clone() }).collect()).await?;
        for id in ids {
            store.write_history(data, HistoryOp::DeleteEntity { id }).await?;
        }
    }
}

/// Copies `entities` into a snapshot's tenant; an entity already there (another query, or a
/// context source, got it first) keeps its first copy.
async fn copy(state: &AppState, data: &str, entities: Vec<Entity>) -> Result<()> {
    let mut entities = entities.into_iter().peekable();
    while entities.peek().is_some() {
        let batch: Vec<WriteOp> = entities.by_ref().take(COPY_BATCH).map(WriteOp::Copy).collect();
        state.broker.store.write(data, batch).await?;
    }
    Ok(())
}

/// `snapshotLifetime` checked: a positive ISO 8601 duration.
fn lifetime(value: &Value) -> Result<IsoDuration> {
    let text = value.as_str().ok_or_else(|| {
        NgsiError::bad_data(format!("snapshotLifetime must be an ISO 8601 duration such as PT1H, not {value}"))
    })?;
    let duration =
        IsoDuration::parse(text).map_err(|e| NgsiError::bad_data(format!("snapshotLifetime: {}", e.detail)))?;
    if duration.is_zero() {
        return Err(NgsiError::bad_data("snapshotLifetime must be longer than zero"));
    }
    Ok(duration)
}

/// Checks the members a client may set (creation, update, clone).
fn check_settable(body: &Map<String, Value>) -> Result<()> {
    if let Some(p) = body.get("snapshotPriority") {
        // Orion-LD's range; the spec leaves it to the broker.
        if !p.as_i64().is_some_and(|p| (1..=10).contains(&p)) {
            return Err(NgsiError::bad_data(format!("snapshotPriority must be an integer from 1 to 10, not {p}")));
        }
    }
    if let Some(l) = body.get("snapshotLifetime") {
        lifetime(l)?;
    }
    if let Some(endpoint) = body.get("endpoint") {
        let uri = endpoint.get("uri").and_then(Value::as_str);
        if !uri.is_some_and(parse::is_uri) {
            return Err(NgsiError::bad_data(format!("endpoint must be an Endpoint with a uri, not {endpoint}")));
        }
    }
    if let Some(info) = body.get("receiverInfo") {
        let pairs = info.as_array().is_some_and(|items| {
            items
                .iter()
                .all(|kv| kv.get("key").is_some_and(Value::is_string) && kv.get("value").is_some_and(Value::is_string))
        });
        if !pairs {
            return Err(NgsiError::bad_data("receiverInfo must be an array of {\"key\", \"value\"} string pairs"));
        }
    }
    Ok(())
}

/// Sets `expiresAt` from `snapshotLifetime` (or the default), counted from creation.
fn set_expiry(snapshot: &mut Snapshot, created: i64) -> Result<()> {
    let expires = match snapshot.0.get("snapshotLifetime") {
        Some(l) => lifetime(l)?.add_to(created),
        None => created + DEFAULT_LIFETIME_MICROS,
    };
    snapshot.0.insert("expiresAt".into(), json!(format_micros(expires)));
    Ok(())
}

/// The entity queries of `snapshotQueries`, checked (§5.2.41: a Query each, without temporalQ).
fn entity_queries(
    body: &Map<String, Value>,
    ctx: &hanbat_model::Context,
) -> Result<Vec<(Map<String, Value>, EntityQuery)>> {
    let Some(queries) = body.get("snapshotQueries") else { return Ok(Vec::new()) };
    let Some(queries) = queries.as_array().filter(|q| !q.is_empty()) else {
        return Err(NgsiError::bad_data("snapshotQueries must be a non-empty array of Query objects"));
    };
    queries
        .iter()
        .map(|q| {
            let Value::Object(q) = q else {
                return Err(NgsiError::bad_data(format!("each of snapshotQueries must be a Query object, not {q}")));
            };
            Ok((q.clone(), query::query_from_body(q, ctx)?))
        })
        .collect()
}

/// `POST /snapshots` (§5.16.1, §6.36.3.1)
pub async fn create(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    let (rc, mut body) = ngsi.object_body(&state).await?;
    if body.get("type").and_then(Value::as_str) != Some("Snapshot") {
        return Err(NgsiError::bad_data("a snapshot must have \"type\": \"Snapshot\"").into());
    }
    if body.contains_key("snapshotTemporalQueries") {
        return Err(NgsiError::not_supported(
            "snapshotTemporalQueries (snapshots of history) are not supported; snapshotQueries are",
        )
        .into());
    }
    let queries = entity_queries(&body, &rc.ctx)?;
    if queries.is_empty() {
        return Err(
            NgsiError::bad_data("a snapshot needs snapshotQueries: the queries whose results it freezes").into()
        );
    }
    check_settable(&body)?;
    let id = match body.get("id") {
        None => format!("urn:ngsi-ld:Snapshot:{}", uuid::Uuid::new_v4()),
        Some(Value::String(id)) => snapshot_id(id)?.to_string(),
        Some(other) => return Err(NgsiError::bad_data(format!("a snapshot id must be a URI, not {other}")).into()),
    };
    if load(&state, &ngsi.tenant, &id).await?.is_some() {
        return Err(NgsiError::already_exists(format!("snapshot '{id}' already exists")).into());
    }
    for member in SYSTEM {
        body.remove(member);
    }
    body.insert("id".into(), json!(id));
    body.entry("snapshotPriority").or_insert(json!(DEFAULT_PRIORITY));
    let now = Timestamp::now().micros();
    let mut snapshot = Snapshot(body);
    stamp_new(&mut snapshot, now)?;
    save(&state, &ngsi.tenant, &snapshot).await?;
    let location = snapshot.location();
    let task = Fill { state: state.clone(), ngsi: ngsi.clone(), rc, id: id.clone() };
    tokio::spawn(task.run(queries));
    Ok(response::created(&location))
}

/// The broker's members of a new snapshot (created, cloned): times, expiry, `preparing`.
fn stamp_new(snapshot: &mut Snapshot, now: i64) -> Result<()> {
    for member in ["createdAt", "modifiedAt", "lastUsedAt"] {
        snapshot.0.insert(member.into(), json!(format_micros(now)));
    }
    snapshot.0.insert("snapshotStatus".into(), json!("preparing"));
    set_expiry(snapshot, now)
}

/// The background part of a creation: runs each query, copies what it matches.
struct Fill {
    state: AppState,
    /// The creating request: tenant, @context and the headers forwarded to context sources.
    ngsi: Ngsi,
    rc: RequestContext,
    id: String,
}

impl Fill {
    async fn run(self, queries: Vec<(Map<String, Value>, EntityQuery)>) {
        let data = data_tenant(&self.ngsi.tenant, &self.id);
        let mut details = Vec::new();
        for (body, query) in &queries {
            let status = match self.capture(&data, body, query).await {
                Ok(0) => json!({"resultStatus": "empty"}),
                Ok(_) => json!({"resultStatus": "success"}),
                Err(e) => {
                    tracing::warn!(snapshot = %self.id, error = %e.detail, "a snapshot query failed");
                    json!({"resultStatus": "failure", "problemDetails": e.to_problem_details()})
                }
            };
            details.push(status);
        }
        let count = |s: &str| details.iter().filter(|d| d["resultStatus"] == s).count();
        let status = match (count("success"), count("empty"), count("failure")) {
            (s, 0, 0) if s > 0 => "success",
            (s, _, _) if s > 0 => "partial",
            (0, e, 0) if e > 0 => "empty",
            _ => "failure",
        };
        if let Err(e) = self.finish(status, details).await {
            tracing::warn!(snapshot = %self.id, error = %e.detail, "recording a snapshot's status failed");
        }
    }

    /// Copies what one query matches, here and at the context sources; returns how many.
    async fn capture(&self, data: &str, body: &Map<String, Value>, query: &EntityQuery) -> Result<usize> {
        let all = EntityQuery { offset: 0, limit: MAX_IN_MEMORY + 1, count: false, ..query.clone() };
        let mut page: Page = self.state.broker.query(&self.ngsi.tenant, &all).await?;
        let (ngsi, params) = self.forwarded_request(body);
        let view = View::from_params(&params, &self.rc.ctx, RENDER_OPTIONS)?;
        let warnings = query::with_sources(&self.state, &ngsi, &params, &self.rc, query, &view, &mut page).await?;
        if !warnings.is_empty() && page.entities.is_empty() {
            return Err(NgsiError::internal(warnings.join("; ")));
        }
        if page.entities.len() > MAX_IN_MEMORY {
            return Err(NgsiError::bad_data(format!(
                "the query matches more than {MAX_IN_MEMORY} entities: too many for one snapshot query; narrow it"
            )));
        }
        let matched = page.entities.len();
        copy(&self.state, data, page.entities).await?;
        Ok(matched)
    }

    /// The query as a `GET /entities` request, which is how context sources are asked (the
    /// suite's registrations offer `queryEntity`): the selection as URI parameters when one
    /// selector says it exactly, else only the types, the broker filtering what comes back.
    fn forwarded_request(&self, body: &Map<String, Value>) -> (Ngsi, Params) {
        let mut params = Params::default();
        let selectors: Vec<&Map<String, Value>> =
            body.get("entities").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_object).collect();
        let types: Vec<&str> = selectors.iter().filter_map(|s| s.get("type").and_then(Value::as_str)).collect();
        if !types.is_empty() {
            params.set("type", types.join(","));
        }
        if let [only] = selectors.as_slice() {
            match only.get("id") {
                Some(Value::String(id)) => params.set("id", id.clone()),
                Some(Value::Array(ids)) => {
                    params.set("id", ids.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
                }
                _ => {
                    if let Some(p) = only.get("idPattern").and_then(Value::as_str) {
                        params.set("idPattern", p.to_string());
                    }
                }
            }
        }
        for member in ["q", "scopeQ"] {
            if let Some(v) = body.get(member).and_then(Value::as_str) {
                params.set(member, v.to_string());
            }
        }
        if let Some(geo) = body.get("geoQ").and_then(Value::as_object) {
            for member in ["georel", "geometry", "geoproperty"] {
                if let Some(v) = geo.get(member).and_then(Value::as_str) {
                    params.set(member, v.to_string());
                }
            }
            if let Some(c) = geo.get("coordinates") {
                params.set("coordinates", c.as_str().map_or_else(|| c.to_string(), str::to_string));
            }
        }
        let mut ngsi = self.ngsi.clone();
        ngsi.method = http::Method::GET;
        ngsi.params = params.clone();
        ngsi.body = Default::default();
        (ngsi, params)
    }

    /// Records the outcome, unless the snapshot was deleted meanwhile (then its data goes too).
    async fn finish(&self, status: &str, details: Vec<Value>) -> Result<()> {
        let tenant = &self.ngsi.tenant;
        let recorded = modify(&self.state, tenant, &self.id, |snapshot| {
            snapshot.0.insert("snapshotStatus".into(), json!(status));
            snapshot.0.insert("snapshotQueriesDetails".into(), Value::Array(details));
            Ok(())
        })
        .await?;
        if recorded.is_none() {
            drop_data(&self.state, &data_tenant(tenant, &self.id)).await?;
        }
        Ok(())
    }
}

/// `GET /snapshots/{id}` (§5.16.3)
pub async fn retrieve(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    let id = snapshot_id(&id)?;
    let snapshot = load(&state, &ngsi.tenant, id).await?.ok_or_else(|| not_found(id))?;
    Ok(response::plain_json(StatusCode::OK, &Value::Object(snapshot.0)))
}

/// `GET /snapshots`: the tenant's live snapshots, paged.
pub async fn list(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["limit", "offset"])?;
    let (limit, offset) = query::page(&state, &ngsi.params)?;
    let now = Timestamp::now().micros();
    let mut snapshots: Vec<Snapshot> = state
        .broker
        .store
        .list_docs(Some(&ngsi.tenant), DocKind::Snapshot)
        .await?
        .into_iter()
        .filter_map(|(_, _, doc)| match doc {
            Value::Object(o) => Some(Snapshot(o)),
            _ => None,
        })
        .filter(|s| !s.expired(now))
        .collect();
    snapshots.sort_by(|a, b| a.id().cmp(b.id()));
    let page: Vec<Value> = snapshots.into_iter().skip(offset).take(limit).map(|s| Value::Object(s.0)).collect();
    Ok(response::plain_json(StatusCode::OK, &Value::Array(page)))
}

/// `PATCH /snapshots/{id}` (§5.16.4): only [`MUTABLE`] members; answers with the snapshot.
pub async fn update(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    let id = snapshot_id(&id)?;
    let (_, body) = ngsi.object_body(&state).await?;
    if let Some(fixed) = body.keys().find(|k| !MUTABLE.contains(&k.as_str()) && k.as_str() != "type") {
        return Err(NgsiError::bad_data(format!(
            "{fixed} cannot be changed: an update may set only {}",
            MUTABLE.join(", ")
        ))
        .into());
    }
    check_settable(&body)?;
    let lifetime_changed = body.contains_key("snapshotLifetime");
    let updated = modify(&state, &ngsi.tenant, id, |snapshot| {
        for (k, v) in body.into_iter().filter(|(k, _)| k != "type") {
            snapshot.0.insert(k, v);
        }
        if lifetime_changed {
            let created = snapshot.micros("createdAt").unwrap_or_else(|| Timestamp::now().micros());
            set_expiry(snapshot, created)?;
        }
        snapshot.0.insert("modifiedAt".into(), json!(format_micros(Timestamp::now().micros())));
        Ok(())
    })
    .await?
    .ok_or_else(|| not_found(id))?;
    Ok(response::plain_json(StatusCode::OK, &Value::Object(updated.0)))
}

/// `DELETE /snapshots/{id}` (§5.16.5)
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    let id = snapshot_id(&id)?;
    load(&state, &ngsi.tenant, id).await?.ok_or_else(|| not_found(id))?;
    remove(&state, &ngsi.tenant, id).await?;
    Ok(response::no_content())
}

/// `DELETE /snapshots?q=…` (§5.16.7): deletes the tenant's snapshots whose members match `q`
/// (all of them without one). `q` may test the Snapshot's own members only (§5.16.7.4).
pub async fn purge(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["q"])?;
    let rc = ngsi.context(&state).await?;
    let q = ngsi.params.get("q").map(|q| Query::parse(q, &rc.ctx)).transpose()?;
    if let Some(q) = &q {
        let members: Vec<String> = QUERYABLE.iter().map(|m| rc.ctx.expand(m)).collect();
        if let Some(other) = q.attributes().into_iter().find(|a| !members.iter().any(|m| m == a)) {
            return Err(NgsiError::bad_data(format!(
                "q may test the members of a snapshot ({}), not '{}'",
                QUERYABLE.join(", "),
                rc.ctx.compact(other)
            ))
            .into());
        }
    }
    for (_, id, doc) in state.broker.store.list_docs(Some(&ngsi.tenant), DocKind::Snapshot).await? {
        let Value::Object(doc) = doc else { continue };
        let snapshot = Snapshot(doc);
        if q.as_ref().is_none_or(|q| q.matches(&snapshot.as_entity(&rc.ctx))) {
            remove(&state, &ngsi.tenant, &id).await?;
        }
    }
    Ok(response::no_content())
}

/// `POST /snapshots/{id}/clone` (§5.16.2): a new snapshot holding a copy of the original's
/// data, with the creation members of the body (priority, lifetime, endpoint) in place of the
/// original's.
pub async fn clone(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    let id = snapshot_id(&id)?;
    let body = if ngsi.body.is_empty() { Map::new() } else { ngsi.object_body(&state).await?.1 };
    if let Some(t) = body.get("type").filter(|t| t.as_str() != Some("Snapshot")) {
        return Err(NgsiError::bad_data(format!("a snapshot must have \"type\": \"Snapshot\", not {t}")).into());
    }
    if let Some(fixed) = body.keys().find(|k| !MUTABLE.contains(&k.as_str()) && k.as_str() != "type") {
        return Err(NgsiError::bad_data(format!("a clone may set only {}, not {fixed}", MUTABLE.join(", "))).into());
    }
    check_settable(&body)?;
    let original = load(&state, &ngsi.tenant, id).await?.ok_or_else(|| not_found(id))?;
    let status = original.0.get("snapshotStatus").cloned().unwrap_or(json!("success"));
    // A copy taken while the original is still filling would be partial, and would stay
    // `preparing` for good: nothing would ever finish it.
    if status == "preparing" {
        return Err(NgsiError::new(
            hanbat_model::ErrorKind::Conflict,
            format!("snapshot '{id}' is still preparing: clone it once its snapshotStatus is final"),
        )
        .into());
    }
    let mut clone = Snapshot(original.0.clone());
    let clone_id = format!("urn:ngsi-ld:Snapshot:{}", uuid::Uuid::new_v4());
    clone.0.insert("id".into(), json!(clone_id));
    clone.0.remove("snapshotLifetime");
    for (k, v) in body.into_iter().filter(|(k, _)| k != "type") {
        clone.0.insert(k, v);
    }
    stamp_new(&mut clone, Timestamp::now().micros())?;
    save(&state, &ngsi.tenant, &clone).await?;
    let location = clone.location();
    let (tenant, from, to) = (ngsi.tenant.clone(), data_tenant(&ngsi.tenant, id), data_tenant(&ngsi.tenant, &clone_id));
    tokio::spawn(async move {
        let copied = copy_all(&state, &from, &to).await;
        let status = match &copied {
            Ok(()) => status,
            Err(e) => {
                tracing::warn!(snapshot = %clone_id, error = %e.detail, "cloning a snapshot failed");
                json!("failure")
            }
        };
        let finished = async {
            let recorded = modify(&state, &tenant, &clone_id, |clone| {
                clone.0.insert("snapshotStatus".into(), status);
                Ok(())
            })
            .await?;
            if recorded.is_none() {
                drop_data(&state, &to).await?;
            }
            Ok::<_, NgsiError>(())
        };
        if let Err(e) = finished.await {
            tracing::warn!(snapshot = %clone_id, error = %e.detail, "recording a clone's status failed");
        }
    });
    Ok(response::created(&location))
}

/// Copies every entity of one snapshot's tenant into another's, page by page in id order.
async fn copy_all(state: &AppState, from: &str, to: &str) -> Result<()> {
    let mut offset = 0;
    loop {
        let query = EntityQuery {
            offset,
            limit: COPY_BATCH,
            order_by_id: Some(hanbat_store::Order::Ascending),
            ..EntityQuery::default()
        };
        let page = state.broker.store.query(from, &query).await?;
        let n = page.entities.len();
        copy(state, to, page.entities).await?;
        if n < COPY_BATCH {
            return Ok(());
        }
        offset += n;
    }
}

/// Middleware: a request with `NGSILD-Snapshot` runs on that snapshot's data (§6.3.22): its
/// tenant becomes the snapshot's, the answer echoes the header, and `lastUsedAt` moves on. An
/// unknown or expired snapshot is 404; a path outside entity data is 400.
pub async fn scope(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(header) = request.headers().get(HEADER).cloned() else { return next.run(request).await };
    let path = request.uri().path().to_string();
    let owner = crate::request::tenant_of(request.headers()).map(|(owner, _)| owner);
    match scoped_tenant(&state, &path, owner, &header).await {
        Ok(tenant) => {
            state.tenant_seen(&tenant);
            request.extensions_mut().insert(ScopedTenant(tenant));
            let mut response = next.run(request).await;
            response.headers_mut().insert(HEADER, header);
            response
        }
        Err(e) => ApiError(e).into_response(),
    }
}

async fn scoped_tenant(state: &AppState, path: &str, owner: Result<String>, header: &HeaderValue) -> Result<String> {
    if !SCOPED_PATHS.iter().any(|p| path.starts_with(p)) {
        return Err(NgsiError::bad_data(format!("{HEADER} applies to entity and temporal data, not to {path}")));
    }
    let id = header.to_str().map_err(|_| NgsiError::bad_data(format!("the {HEADER} header is not ASCII")))?.trim();
    let id = snapshot_id(id.rsplit_once("/snapshots/").map_or(id, |(_, id)| id))?;
    let owner = owner?;
    let snapshot = load(state, &owner, id).await?.ok_or_else(|| not_found(id))?;
    let now = Timestamp::now().micros();
    if snapshot.micros("lastUsedAt").is_none_or(|used| now - used >= TOUCH_EVERY_MICROS) {
        modify(state, &owner, id, |snapshot| {
            snapshot.0.insert("lastUsedAt".into(), json!(format_micros(now)));
            Ok(())
        })
        .await?
        .ok_or_else(|| not_found(id))?;
    }
    Ok(data_tenant(&owner, id))
}

/// Deletes expired snapshots, with their data, every minute.
pub fn spawn_sweeper(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tick.tick().await;
            if let Err(e) = sweep(&state).await {
                tracing::warn!(error = %e.detail, "sweeping expired snapshots failed");
            }
        }
    });
}

async fn sweep(state: &AppState) -> Result<()> {
    let now = Timestamp::now().micros();
    for (tenant, id, doc) in state.broker.store.list_docs(None, DocKind::Snapshot).await? {
        if let Value::Object(doc) = doc
            && Snapshot(doc).expired(now)
        {
            remove(state, &tenant, &id).await?;
        }
    }
    Ok(())
}
