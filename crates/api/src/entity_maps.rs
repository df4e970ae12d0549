//! Entity maps (§5.14, §5.2.39, §5.5.9.3, §6.34, §6.35 of V1.9.1): the fixed list of entity ids
//! that a query matched, kept by the broker for a bounded time so that a client paging through a
//! result, or coming back to it, walks the same entities even while others are created.
//!
//! A query asks for a map with `entityMap=true`, or names one with `entityMap=<id>` or the
//! `NGSILD-EntityMap` header; a reference to an unknown or expired map creates a new one
//! (§5.7.1.4). Answers carry the map's location in `NGSILD-EntityMap`. Maps are documents of the
//! store ([`DocKind::EntityMap`]) per tenant; expired ones are deleted when next looked up.
//! Hanbat has no context sources yet, so every id maps to `["@none"]` (local) and `linkedMaps`
//! is empty.

use crate::AppState;
use crate::query;
use crate::request::Ngsi;
use crate::response::{self, ApiResult};
use axum::extract::{Path, State};
use axum::response::Response;
use hanbat_broker::MAX_IN_MEMORY;
use hanbat_model::time::format_micros;
use hanbat_model::{Entity, NgsiError, Result, Timestamp, parse};
use hanbat_store::{DocKind, EntityQuery, EntitySelector, HistoryQuery, Page};
use hanbat_temporal::IsoDuration;
use http::{HeaderValue, StatusCode};
use serde_json::{Map, Value, json};
use std::collections::HashSet;

/// The header that names an entity map, in requests and answers (§6.3.x of V1.9.1).
pub const HEADER: &str = "NGSILD-EntityMap";

const COLLECTION: &str = "/ngsi-ld/v1/entityMaps";

/// Lifetime of a map when the request does not ask for one.
const DEFAULT_LIFETIME_MICROS: i64 = 3_600_000_000;

/// The longest lifetime granted (Table 6.4.3.2-1 lets the broker override the requested
/// duration): a map pins up to [`MAX_IN_MEMORY`] ids per query, so they must not pile up.
const MAX_LIFETIME_MICROS: i64 = 24 * DEFAULT_LIFETIME_MICROS;

/// An entity map as stored: the ids in the order of the query that created it.
#[derive(Debug, Clone)]
pub struct EntityMap {
    pub id: String,
    pub expires_at: i64,
    pub entities: Vec<String>,
}

impl EntityMap {
    /// The resource URI given in `NGSILD-EntityMap`; its last segment is the map id.
    pub fn location(&self) -> String {
        format!("{COLLECTION}/{}", self.id)
    }

    /// Adds the `NGSILD-EntityMap` header.
    fn mark(&self, response: &mut Response) {
        if let Ok(v) = HeaderValue::from_str(&self.location()) {
            response.headers_mut().insert(HEADER, v);
        }
    }

    /// The EntityMap data type (§5.2.39).
    fn render(&self) -> Value {
        let map: Map<String, Value> = self.entities.iter().map(|id| (id.clone(), json!(["@none"]))).collect();
        json!({
            "id": self.id,
            "type": "EntityMap",
            "expiresAt": format_micros(self.expires_at),
            "entityMap": map,
            "linkedMaps": {},
        })
    }

    fn to_doc(&self) -> Value {
        json!({ "id": self.id, "expiresAt": self.expires_at, "entities": self.entities })
    }

    fn from_doc(doc: &Value) -> Option<Self> {
        Some(Self {
            id: doc.get("id")?.as_str()?.to_string(),
            expires_at: doc.get("expiresAt")?.as_i64()?,
            entities: doc.get("entities")?.as_array()?.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        })
    }
}

/// What a request asks of entity maps.
pub enum Request {
    None,
    /// A new map, expiring then.
    Create {
        expires_at: i64,
    },
    /// A live map.
    Use(EntityMap),
}

/// The map a request used or created, to announce in the answer.
pub struct InUse {
    pub map: EntityMap,
    pub created: bool,
}

impl InUse {
    /// Adds the `NGSILD-EntityMap` header.
    pub fn mark(&self, response: &mut Response) {
        self.map.mark(response);
    }

    /// The request with `entityMap=<id>` in place of whatever named the map: page links walk
    /// the same map instead of creating one per page.
    pub fn link_request(&self, ngsi: &Ngsi) -> Ngsi {
        let mut links = ngsi.clone();
        links.params.set("entityMap", self.map.id.clone());
        links
    }

    /// [`Self::mark`], and `201 Created` for a query that created the map (§6.4.3.2).
    pub fn mark_query(&self, response: &mut Response) {
        self.mark(response);
        if self.created {
            *response.status_mut() = StatusCode::CREATED;
        }
    }
}

/// The entity map a request names or asks for: `entityMap=true`, `entityMap=<id>`, or the
/// `NGSILD-EntityMap` header (an id or a location ending in the id).
pub async fn requested(state: &AppState, ngsi: &Ngsi) -> Result<Request> {
    let reference = match ngsi.params.get("entityMap") {
        Some("true") => return Ok(Request::Create { expires_at: expiry(&ngsi.params)? }),
        Some("false") | None => ngsi.headers.get(HEADER).and_then(|v| v.to_str().ok()).map(str::to_string),
        Some(id) => Some(id.to_string()),
    };
    let Some(reference) = reference else { return Ok(Request::None) };
    let id = reference.rsplit_once("/entityMaps/").map_or(reference.as_str(), |(_, id)| id);
    Ok(match load(state, &ngsi.tenant, id).await? {
        Some(map) => Request::Use(map),
        // §5.7.1.4: "If the resource cannot be found, or the data has expired, a new EntityMap
        // shall be created".
        None => Request::Create { expires_at: expiry(&ngsi.params)? },
    })
}

/// The expiry of a new map: `entityMapLifetime` (an ISO 8601 duration) from now, bounded.
fn expiry(params: &crate::params::Params) -> Result<i64> {
    let now = Timestamp::now().micros();
    let requested = match params.get("entityMapLifetime") {
        None => now + DEFAULT_LIFETIME_MICROS,
        Some(text) => {
            let lifetime = IsoDuration::parse(text)?;
            if lifetime.is_zero() {
                return Err(NgsiError::bad_data("entityMapLifetime must be longer than zero"));
            }
            lifetime.add_to(now)
        }
    };
    Ok(bounded(requested, now))
}

fn bounded(expires_at: i64, now: i64) -> i64 {
    expires_at.min(now + MAX_LIFETIME_MICROS)
}

/// A live map of the tenant; an expired one is deleted and reads as absent (§5.5.14).
async fn load(state: &AppState, tenant: &str, id: &str) -> Result<Option<EntityMap>> {
    let store = &state.broker.store;
    let Some(map) = store.get_doc(tenant, DocKind::EntityMap, id).await?.as_ref().and_then(EntityMap::from_doc) else {
        return Ok(None);
    };
    if map.expires_at <= Timestamp::now().micros() {
        store.delete_doc(tenant, DocKind::EntityMap, id).await?;
        return Ok(None);
    }
    Ok(Some(map))
}

async fn save(state: &AppState, tenant: &str, map: &EntityMap) -> Result<()> {
    state.broker.store.put_doc(tenant, DocKind::EntityMap, &map.id, &map.to_doc()).await
}

async fn create(state: &AppState, tenant: &str, entities: Vec<String>, expires_at: i64) -> Result<EntityMap> {
    let id = format!("urn:ngsi-ld:EntityMap:{}", uuid::Uuid::new_v4());
    let map = EntityMap { id, expires_at, entities };
    save(state, tenant, &map).await?;
    Ok(map)
}

/// `query` narrowed to the ids of a map, or `None` when no selector can match one of them.
fn restrict(query: &EntityQuery, ids: &[String]) -> Option<EntityQuery> {
    if ids.is_empty() {
        return None;
    }
    let mut restricted = query.clone();
    if restricted.entities.is_empty() {
        restricted.entities.push(EntitySelector::default());
    }
    let in_map: HashSet<&str> = ids.iter().map(String::as_str).collect();
    restricted.entities.retain_mut(|s| {
        if s.ids.is_empty() {
            s.ids = ids.to_vec();
        } else {
            s.ids.retain(|id| in_map.contains(id.as_str()));
        }
        // A selector whose ids all fell out would otherwise select every entity.
        !s.ids.is_empty()
    });
    (!restricted.entities.is_empty()).then_some(restricted)
}

/// Every entity matching `query` (no paging), bounded like the broker's in-memory queries.
async fn all_matches(state: &AppState, tenant: &str, query: &EntityQuery) -> Result<Vec<Entity>> {
    let all = EntityQuery { offset: 0, limit: MAX_IN_MEMORY + 1, count: false, ..query.clone() };
    let entities = state.broker.query(tenant, &all).await?.entities;
    if entities.len() > MAX_IN_MEMORY {
        return Err(NgsiError::bad_data(format!(
            "the query matches more than {MAX_IN_MEMORY} entities: too many for an entity map; narrow it"
        )));
    }
    Ok(entities)
}

/// The entities of `map` that still match `query`, in the query's order. Those that no longer
/// match (deleted, or changed) leave the map (§5.5.9.3), so that later pages stay full.
async fn map_matches(state: &AppState, tenant: &str, map: &mut EntityMap, query: &EntityQuery) -> Result<Vec<Entity>> {
    let found = match restrict(query, &map.entities) {
        Some(restricted) => all_matches(state, tenant, &restricted).await?,
        None => Vec::new(),
    };
    if found.len() < map.entities.len() {
        let still: HashSet<&str> = found.iter().map(|e| e.id.as_str()).collect();
        map.entities.retain(|id| still.contains(id.as_str()));
        save(state, tenant, map).await?;
    }
    Ok(found)
}

/// One page of an entity query, through the entity map the request names or asks for, if any:
/// with a map, the page is cut from the map's still-matching entities (pages filled to the
/// limit, `count` over the whole map).
pub async fn query_page(
    state: &AppState,
    tenant: &str,
    request: Request,
    query: &EntityQuery,
) -> Result<(Page, Option<InUse>)> {
    let (matches, in_use) = match request {
        Request::None => return Ok((state.broker.query(tenant, query).await?, None)),
        Request::Use(mut map) => (map_matches(state, tenant, &mut map, query).await?, InUse { map, created: false }),
        Request::Create { expires_at } => {
            let matches = all_matches(state, tenant, query).await?;
            let ids = matches.iter().map(|e| e.id.clone()).collect();
            (matches, InUse { map: create(state, tenant, ids, expires_at).await?, created: true })
        }
    };
    let count = query.count.then_some(matches.len() as u64);
    let entities = matches.into_iter().skip(query.offset).take(query.limit).collect();
    Ok((Page { entities, count }, Some(in_use)))
}

/// A temporal query through an entity map: its selection narrowed to the map's ids (a new map
/// holds the ids of the entities with history in the query's window). History outlives
/// entities, so nothing is pruned here.
pub async fn history_select(
    state: &AppState,
    tenant: &str,
    request: Request,
    mut hq: HistoryQuery,
) -> Result<(HistoryQuery, Option<InUse>)> {
    let in_use = match request {
        Request::None => return Ok((hq, None)),
        Request::Use(map) => InUse { map, created: false },
        Request::Create { expires_at } => {
            let ids = history_ids(state, tenant, &hq).await?;
            InUse { map: create(state, tenant, ids, expires_at).await?, created: true }
        }
    };
    match restrict(&hq.select, &in_use.map.entities) {
        Some(select) => hq.select = select,
        // Nothing of the map matches: select by an id that no entity has (ids are URIs).
        None => hq.select.entities = vec![EntitySelector { ids: vec![String::new()], ..EntitySelector::default() }],
    }
    Ok((hq, Some(in_use)))
}

/// The ids of the entities a temporal query returns, in its order.
async fn history_ids(state: &AppState, tenant: &str, hq: &HistoryQuery) -> Result<Vec<String>> {
    let select = EntityQuery { offset: 0, limit: MAX_IN_MEMORY + 1, count: false, ..hq.select.clone() };
    // One instance per entity is enough to know that it has history in the window.
    let probe = HistoryQuery { select, aggregation: None, max_instances: 1, ..hq.clone() };
    let ids: Vec<String> =
        state.broker.store.history(tenant, &probe).await?.entities.into_iter().map(|te| te.entity.id).collect();
    if ids.len() > MAX_IN_MEMORY {
        return Err(NgsiError::bad_data(format!(
            "the temporal query matches more than {MAX_IN_MEMORY} entities: too many for an entity map; narrow it"
        )));
    }
    Ok(ids)
}

/// The map of a retrieval of one entity (`GET /entities/{id}`, `/temporal/entities/{id}`): a
/// new map holds that entity; a live one is used as it is.
pub async fn for_retrieve(state: &AppState, ngsi: &Ngsi, id: &str) -> Result<Option<InUse>> {
    Ok(match requested(state, ngsi).await? {
        Request::None => None,
        Request::Use(map) => Some(InUse { map, created: false }),
        Request::Create { expires_at } => {
            Some(InUse { map: create(state, &ngsi.tenant, vec![id.to_string()], expires_at).await?, created: true })
        }
    })
}

/// The answer to `GET /entityMaps` and `GET /temporal/entityMaps` (§6.34, §6.35): 201, the
/// EntityMap and its location.
fn created(map: &EntityMap) -> Response {
    let mut response = response::plain_json(StatusCode::CREATED, &map.render());
    map.mark(&mut response);
    response
}

/// `GET /entityMaps` (§6.34.3.1): creates the map of an entity query.
pub async fn create_for_query(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(query::QUERY_PARAMS)?;
    let rc = ngsi.context(&state).await?;
    let query = query::narrowed_query(&ngsi.params, &rc.ctx)?;
    let expires_at = expiry(&ngsi.params)?;
    state.require_tenant(&ngsi.tenant).await?;
    let ids = all_matches(&state, &ngsi.tenant, &query).await?.into_iter().map(|e| e.id).collect();
    Ok(created(&create(&state, &ngsi.tenant, ids, expires_at).await?))
}

/// `GET /temporal/entityMaps` (§6.35.3.1): creates the map of a temporal query, which needs a
/// time window (§5.14.5.4).
pub async fn create_for_temporal_query(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    if !ngsi.params.has("timerel") {
        return Err(NgsiError::bad_data("a temporal entity map needs a temporal query: timerel and timeAt").into());
    }
    let rc = ngsi.context(&state).await?;
    let (hq, _) = crate::temporal::query_from_params(&state, &ngsi.params, &rc.ctx)?;
    let expires_at = expiry(&ngsi.params)?;
    state.require_tenant(&ngsi.tenant).await?;
    let ids = history_ids(&state, &ngsi.tenant, &hq).await?;
    Ok(created(&create(&state, &ngsi.tenant, ids, expires_at).await?))
}

fn map_id(id: &str) -> Result<&str> {
    if parse::is_uri(id) {
        Ok(id)
    } else {
        Err(NgsiError::bad_data(format!("'{id}' is not a valid entity map id: it must be a URI")))
    }
}

fn not_found(id: &str) -> NgsiError {
    NgsiError::not_found(format!("entity map '{id}' does not exist or has expired"))
}

/// `GET /entityMaps/{id}` (§6.32.3.1 of the suite's numbering, §5.14.1)
pub async fn retrieve(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    let id = map_id(&id)?;
    let map = load(&state, &ngsi.tenant, id).await?.ok_or_else(|| not_found(id))?;
    Ok(response::plain_json(StatusCode::OK, &map.render()))
}

/// `PATCH /entityMaps/{id}` (§5.14.2): only `expiresAt` is writable (bounded like a new map's
/// lifetime); the system-generated members (`entityMap`, `linkedMaps`, `id`, `type`) are ignored.
pub async fn update(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    let id = map_id(&id)?;
    let Value::Object(body) = ngsi.json()? else {
        return Err(NgsiError::bad_data("the body of an entity map update must be a JSON object").into());
    };
    let expires_at = match body.get("expiresAt") {
        None => None,
        Some(Value::String(text)) => Some(Timestamp::parse_utc(text)?.micros()),
        Some(other) => return Err(NgsiError::bad_data(format!("expiresAt must be a DateTime, not {other}")).into()),
    };
    let mut map = load(&state, &ngsi.tenant, id).await?.ok_or_else(|| not_found(id))?;
    if let Some(expires_at) = expires_at {
        // A past expiresAt is allowed: it ends the map now (§5.5.14).
        map.expires_at = bounded(expires_at, Timestamp::now().micros());
        save(&state, &ngsi.tenant, &map).await?;
    }
    Ok(response::no_content())
}

/// `DELETE /entityMaps/{id}` (§5.14.3)
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    let id = map_id(&id)?;
    load(&state, &ngsi.tenant, id).await?.ok_or_else(|| not_found(id))?;
    state.broker.store.delete_doc(&ngsi.tenant, DocKind::EntityMap, id).await?;
    Ok(response::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricting_keeps_selectors_within_the_map() {
        let ids = vec!["urn:a".to_string(), "urn:b".to_string()];
        let q = EntityQuery::default();
        let r = restrict(&q, &ids).expect("selects the map");
        assert_eq!(r.entities[0].ids, ids);
        let q = EntityQuery {
            entities: vec![EntitySelector { ids: vec!["urn:c".into()], ..EntitySelector::default() }],
            ..EntityQuery::default()
        };
        assert!(restrict(&q, &ids).is_none(), "an id outside the map selects nothing, not everything");
        assert!(restrict(&EntityQuery::default(), &[]).is_none());
    }

    #[test]
    fn lifetimes_are_bounded() {
        let now = 1_000;
        assert_eq!(bounded(now + 10, now), now + 10);
        assert_eq!(bounded(i64::MAX - MAX_LIFETIME_MICROS, now), now + MAX_LIFETIME_MICROS);
    }
}
