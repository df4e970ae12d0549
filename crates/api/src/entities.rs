//! `/entities/{id}` and its attributes (§6.5, §6.6, §6.7 of V1.8): create, retrieve, replace,
//! merge, delete, append / update / partially update / replace / delete attributes.

use crate::distributed;
use crate::request::{Accept, Ngsi, RequestContext};
use crate::response::{self, ApiResult};
use crate::{AppState, entity_maps, query, render};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use hanbat_csource::matching::RegQuery;
use hanbat_federation::{Operation, Request, Target};
use hanbat_model::parse::{self, Mode};
use hanbat_model::{Context, Entity, NgsiError, Result};
use hanbat_store::ops::SCOPE_IRI;
use hanbat_store::{Applied, EntityQuery, Outcome, WriteOp};
use http::{Method, StatusCode};
use serde_json::{Value, json};

/// Checks an entity id from the path: a URI.
pub fn path_id(id: &str) -> Result<String> {
    if parse::is_uri(id) {
        Ok(id.to_string())
    } else {
        Err(NgsiError::bad_data(format!(
            "'{id}' is not a valid entity id: it must be a URI such as urn:ngsi-ld:Type:1"
        )))
    }
}

/// Writes one op and returns its own result.
pub async fn write_one(state: &AppState, tenant: &str, op: WriteOp) -> Result<Applied> {
    let mut results = state.broker.write(tenant, vec![op]).await?;
    results.pop().unwrap_or_else(|| Err(NgsiError::internal("the store returned no result")))
}

/// The broker's own part of a write that answers `204`: on data of an existing tenant.
async fn write_in_tenant(state: &AppState, tenant: &str, op: WriteOp) -> ApiResult {
    state.require_tenant(tenant).await?;
    write_one(state, tenant, op).await?;
    Ok(response::no_content())
}

/// `204`, or `207` with an UpdateResult when some attributes were not written. Attribute names
/// are given in full (expanded), as the ETSI suite expects: the UpdateResult is plain JSON,
/// without a @context to compact them with.
fn update_result(outcome: &Outcome) -> Response {
    if outcome.not_updated.is_empty() {
        return response::no_content();
    }
    let body = json!({
        "updated": outcome.updated,
        "notUpdated": outcome.not_updated.iter().map(|n| json!({
            "attributeName": n.name,
            "reason": n.reason,
        })).collect::<Vec<_>>(),
    });
    response::plain_json(StatusCode::MULTI_STATUS, &body)
}

/// Wraps `op` in the `type` selector of the request, if any (§4.17: the operation applies only
/// if the entity has one of those types, else the entity is not found).
fn type_gated(ngsi: &Ngsi, ctx: &Context, op: WriteOp) -> Result<WriteOp> {
    let names = ngsi.params.list("type");
    if names.is_empty() {
        return Ok(op);
    }
    let types = names
        .iter()
        .map(|t| {
            parse::validate_name(t)?;
            Ok(ctx.expand(t))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(WriteOp::Typed { types, op: Box::new(op) })
}

/// A write of an entity body, distributed (§4.3.6): the sources that hold some of its
/// attributes receive them as the client sent them; the broker writes what no exclusive or
/// redirect source holds, and nothing at all when they hold everything the body carries.
#[allow(clippy::too_many_arguments)]
async fn body_write<F, Fut>(
    state: &AppState,
    ngsi: &Ngsi,
    rc: &RequestContext,
    op: Operation,
    method: Method,
    path: String,
    mut entity: Entity,
    local: F,
    success: impl FnOnce() -> Response,
) -> ApiResult
where
    F: FnOnce(Entity) -> Fut,
    Fut: std::future::Future<Output = ApiResult>,
{
    if !distributed::may_forward(state, ngsi)? {
        return local(entity).await;
    }
    let names: Vec<String> = entity.attrs.keys().cloned().collect();
    let target = Target { id: Some(&entity.id), types: &entity.types, attrs: &names };
    let Some(plan) = distributed::plan(state, ngsi, op, target, &RegQuery::default()).await? else {
        return local(entity).await;
    };
    let claimed = plan.claimed();
    if let Some(claimed) = &claimed {
        entity.attrs.retain(|name, _| !claimed.contains(name));
    }
    let run_local = claimed.is_none() || !entity.attrs.is_empty();
    let context = distributed::context_url(rc);
    let id = entity.id.clone();
    let request = |leg: &hanbat_federation::Leg| Request {
        method: method.clone(),
        path: path.clone(),
        query: distributed::forwarded_params(ngsi, leg),
        body: distributed::body_for(ngsi, &rc.ctx, leg),
        context: context.clone(),
    };
    distributed::write(state, ngsi, &plan, &id, local(entity), run_local, request, success).await
}

/// A write addressed to one attribute (`/entities/{id}/attrs/{attrId}`), distributed: the
/// broker writes it unless an exclusive or redirect source holds it.
#[allow(clippy::too_many_arguments)]
async fn attr_write(
    state: &AppState,
    ngsi: &Ngsi,
    context: String,
    op: Operation,
    id: &str,
    name: &str,
    attr: &str,
    local: impl std::future::Future<Output = ApiResult>,
) -> ApiResult {
    let names = [name.to_string()];
    let target = Target { id: Some(id), types: &[], attrs: &names };
    let Some(plan) = distributed::plan(state, ngsi, op, target, &RegQuery::default()).await? else {
        return local.await;
    };
    let body = match ngsi.json() {
        Ok(Value::Object(mut o)) => {
            o.remove("@context");
            Some(Value::Object(o))
        }
        _ => None,
    };
    let request = |leg: &hanbat_federation::Leg| Request {
        method: ngsi.method.clone(),
        path: format!("/entities/{id}/attrs/{attr}"),
        query: distributed::forwarded_params(ngsi, leg),
        body: body.clone(),
        context: context.clone(),
    };
    distributed::write(state, ngsi, &plan, id, local, !plan.claims(name), request, response::no_content).await
}

/// `POST /entities`
pub async fn create(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["local"])?;
    let (rc, body) = ngsi.object_body(&state).await?;
    let entity = parse::entity(body, &rc.ctx, Mode::Entity)?;
    let location = format!("/ngsi-ld/v1/entities/{}", entity.id);
    let local = |entity: Entity| async {
        write_one(&state, &ngsi.tenant, WriteOp::Create(entity)).await?;
        state.tenant_seen(&ngsi.tenant);
        Ok(response::created(&location))
    };
    let success = || response::created(&location);
    body_write(&state, &ngsi, &rc, Operation::CreateEntity, Method::POST, "/entities".into(), entity, local, success)
        .await
}

/// `GET /entities/{id}`
pub async fn retrieve(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[
        "attrs",
        "pick",
        "omit",
        "options",
        "format",
        "lang",
        "geometryProperty",
        "datasetId",
        "type",
        "local",
        "join",
        "joinLevel",
        "containedBy",
        "entityMap",
        "entityMapLifetime",
        "expandValues",
        "via",
        "collation",
    ])?;
    let id = path_id(&id)?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd, Accept::GeoJson])?;
    if ngsi.params.has("geometryProperty") && accept != Accept::GeoJson {
        return Err(
            NgsiError::bad_data("geometryProperty applies to GeoJSON only: send Accept: application/geo+json").into()
        );
    }
    let rc = ngsi.context(&state).await?;
    let view = render::View::from_params(&ngsi.params, &rc.ctx, query::RENDER_OPTIONS)?;
    state.require_tenant(&ngsi.tenant).await?;
    let local =
        state.broker.get(&ngsi.tenant, &id).await?.filter(|e| view.types.is_empty() || e.has_any_type(&view.types));
    let (entity, warnings) = with_sources(&state, &ngsi, &rc, &id, &view, local).await?;
    let Some(entity) = entity else {
        let mut response =
            response::ApiError::from(NgsiError::not_found(format!("entity '{id}' does not exist"))).into_response();
        distributed::warn(&mut response, &warnings);
        return Ok(response);
    };
    // §5.7.1.4: asking for attributes the entity does not have finds nothing.
    if view.attrs_requested && view.project(&entity).attrs.is_empty() {
        return Err(NgsiError::not_found(format!("entity '{id}' has none of the attributes asked for")).into());
    }
    let geometry = view.geometry_property(&ngsi.params, &rc.ctx);
    let roots = std::slice::from_ref(&entity);
    let linked = query::fetch_linked(&state, &ngsi.tenant, &view, roots).await?;
    let body = match view.join {
        Some(render::Join::Flat) if !linked.order.is_empty() => {
            view.render_all(roots, &rc.ctx, accept, &geometry, &linked)
        }
        _ => view.render(&entity, &rc.ctx, accept, &geometry, &linked),
    };
    if body.as_object().is_some_and(|o| o.is_empty()) {
        return Err(NgsiError::not_found(format!("pick/omit leave nothing of entity '{id}'")).into());
    }
    let mut response = response::body(&rc, accept, StatusCode::OK, body, ngsi.prefers_json_body());
    distributed::warn(&mut response, &warnings);
    if let Some(map) = entity_maps::for_retrieve(&state, &ngsi, &id).await? {
        map.mark(&mut response);
    }
    Ok(response)
}

/// The entity as the broker and the context sources registered for it hold it together, with
/// the warnings for the sources that could not tell (§4.3.6.2).
async fn with_sources(
    state: &AppState,
    ngsi: &Ngsi,
    rc: &RequestContext,
    id: &str,
    view: &render::View,
    local: Option<Entity>,
) -> Result<(Option<Entity>, Vec<String>)> {
    if !distributed::may_forward(state, ngsi)? {
        return Ok((local, Vec::new()));
    }
    let requested = view.attrs.clone().unwrap_or_default();
    let target = Target { id: Some(id), types: &view.types, attrs: &requested };
    let Some(plan) = distributed::plan(state, ngsi, Operation::RetrieveEntity, target, &RegQuery::default()).await?
    else {
        return Ok((local, Vec::new()));
    };
    let context = distributed::context_url(rc);
    let request = |leg: &hanbat_federation::Leg| distributed::retrieve_request(leg, id, &rc.ctx, &requested, &context);
    let (remote, warnings) = distributed::read(state, ngsi, &plan, &rc.ctx, request).await;
    let mut entities: Vec<Entity> = local.into_iter().collect();
    distributed::merge_entities(&mut entities, remote.into_iter().filter(|(_, e)| e.id == id).collect());
    Ok((entities.pop(), warnings))
}

/// `DELETE /entities/{id}`
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["type", "local"])?;
    let id = path_id(&id)?;
    let rc = ngsi.context(&state).await?;
    let op = type_gated(&ngsi, &rc.ctx, WriteOp::Delete { id: id.clone() })?;
    let local = write_in_tenant(&state, &ngsi.tenant, op);
    let target = Target { id: Some(&id), ..Target::default() };
    let Some(plan) = distributed::plan(&state, &ngsi, Operation::DeleteEntity, target, &RegQuery::default()).await?
    else {
        return local.await;
    };
    // Where proxied sources hold the entity, the broker deletes only what it has itself.
    let proxied = plan.forward.iter().chain(&plan.refused).any(hanbat_federation::Leg::proxied);
    let run_local = !proxied || state.broker.get(&ngsi.tenant, &id).await?.is_some();
    let context = distributed::context_url(&rc);
    let request = |leg: &hanbat_federation::Leg| Request {
        method: Method::DELETE,
        path: format!("/entities/{id}"),
        query: distributed::forwarded_params(&ngsi, leg),
        body: None,
        context: context.clone(),
    };
    distributed::write(&state, &ngsi, &plan, &id, local, run_local, request, response::no_content).await
}

/// `PUT` / `PATCH /entities` without an id: the id is missing from the path (§6.5.3).
pub async fn missing_id() -> ApiResult {
    Err(NgsiError::bad_data("the entity id is missing from the path: /entities/{entityId}").into())
}

/// The body of an entity-level write, with its `id` (if any) checked against the path.
async fn entity_body(
    state: &AppState,
    ngsi: &Ngsi,
    id: &str,
    mode: Mode,
) -> Result<(crate::request::RequestContext, Entity)> {
    let (rc, mut body) = ngsi.object_body(state).await?;
    match body.get("id").or_else(|| body.get("@id")) {
        Some(Value::String(body_id)) if body_id != id => {
            return Err(NgsiError::bad_data(format!(
                "the body's id '{body_id}' differs from the id in the path '{id}'"
            )));
        }
        Some(Value::String(_)) => {}
        Some(other) => return Err(NgsiError::bad_data(format!("id must be a string, not {other}"))),
        None => {
            body.insert("id".into(), Value::String(id.to_string()));
        }
    }
    let mut entity = parse::entity(body, &rc.ctx, mode)?;
    entity.id = id.to_string();
    Ok((rc, entity))
}

/// `PUT /entities/{id}`
pub async fn replace(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["local"])?;
    let id = path_id(&id)?;
    let (rc, entity) = entity_body(&state, &ngsi, &id, Mode::Entity).await?;
    let local = |entity: Entity| write_in_tenant(&state, &ngsi.tenant, WriteOp::Replace(entity));
    let path = format!("/entities/{id}");
    body_write(&state, &ngsi, &rc, Operation::ReplaceEntity, Method::PUT, path, entity, local, response::no_content)
        .await
}

/// `PATCH /entities/{id}` (merge)
pub async fn merge(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["local", "options", "format"])?;
    let id = path_id(&id)?;
    let (rc, fragment) = entity_body(&state, &ngsi, &id, Mode::Merge).await?;
    let local = |fragment: Entity| write_in_tenant(&state, &ngsi.tenant, WriteOp::Merge { id: id.clone(), fragment });
    let path = format!("/entities/{id}");
    body_write(&state, &ngsi, &rc, Operation::MergeEntity, Method::PATCH, path, fragment, local, response::no_content)
        .await
}

/// `POST /entities/{id}/attrs` (append)
pub async fn append(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["options", "local", "type"])?;
    let options = ngsi.params.options(&["noOverwrite"])?;
    let id = path_id(&id)?;
    let (rc, fragment) = entity_body(&state, &ngsi, &id, Mode::Fragment).await?;
    let overwrite = !options.iter().any(|o| o == "noOverwrite");
    let local = |fragment: Entity| async {
        let op = type_gated(&ngsi, &rc.ctx, WriteOp::Append { id: id.clone(), fragment, overwrite })?;
        state.require_tenant(&ngsi.tenant).await?;
        let applied = write_one(&state, &ngsi.tenant, op).await?;
        Ok(update_result(&applied.outcome))
    };
    let path = format!("/entities/{id}/attrs");
    body_write(&state, &ngsi, &rc, Operation::AppendAttrs, Method::POST, path, fragment, local, response::no_content)
        .await
}

/// `PATCH /entities/{id}/attrs` (update)
pub async fn update(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["local", "options", "type"])?;
    let id = path_id(&id)?;
    let (rc, fragment) = entity_body(&state, &ngsi, &id, Mode::Fragment).await?;
    let local = |fragment: Entity| async {
        let op = type_gated(&ngsi, &rc.ctx, WriteOp::Update { id: id.clone(), fragment })?;
        state.require_tenant(&ngsi.tenant).await?;
        let applied = write_one(&state, &ngsi.tenant, op).await?;
        Ok(update_result(&applied.outcome))
    };
    let path = format!("/entities/{id}/attrs");
    body_write(&state, &ngsi, &rc, Operation::UpdateEntity, Method::PATCH, path, fragment, local, response::no_content)
        .await
}

/// The expanded name of the attribute in a `/attrs/{attrId}` path: a valid name or an IRI;
/// `scope` addresses the entity's scope (§4.18).
fn path_attr(attr: &str, ctx: &Context) -> Result<String> {
    if attr == "scope" {
        return Ok(SCOPE_IRI.to_string());
    }
    attr_name(attr, ctx)
}

/// The attribute of a partial update or replacement: `scope` is no attribute there (§4.18 only
/// lets it be appended, updated whole, merged or deleted).
fn writable_attr(attr: &str, ctx: &Context) -> Result<String> {
    if attr == "scope" {
        return Err(NgsiError::bad_data("scope cannot be partially updated or replaced as an attribute"));
    }
    attr_name(attr, ctx)
}

fn attr_name(attr: &str, ctx: &Context) -> Result<String> {
    parse::validate_name(attr).or_else(|e| if parse::is_uri(attr) { Ok(()) } else { Err(e) })?;
    Ok(ctx.expand(attr))
}

/// `PATCH /entities/{id}/attrs/{attrId}` (partial attribute update)
pub async fn patch_attr(
    State(state): State<AppState>,
    Path((id, attr)): Path<(String, String)>,
    ngsi: Ngsi,
) -> ApiResult {
    ngsi.params.allow(&["local", "type"])?;
    let id = path_id(&id)?;
    let (rc, body) = ngsi.object_body(&state).await?;
    let name = writable_attr(&attr, &rc.ctx)?;
    let patch = parse::attribute_patch(&attr, body, &rc.ctx)?;
    let op = WriteOp::PatchAttr {
        id: id.clone(),
        name: name.clone(),
        fragment: patch.attr,
        kind: patch.kind,
        delete: patch.delete,
    };
    let op = type_gated(&ngsi, &rc.ctx, op)?;
    let local = write_in_tenant(&state, &ngsi.tenant, op);
    let context = distributed::context_url(&rc);
    attr_write(&state, &ngsi, context, Operation::UpdateAttrs, &id, &name, &attr, local).await
}

/// `PUT /entities/{id}/attrs/{attrId}` (replace attribute)
pub async fn replace_attr(
    State(state): State<AppState>,
    Path((id, attr)): Path<(String, String)>,
    ngsi: Ngsi,
) -> ApiResult {
    ngsi.params.allow(&["local", "type"])?;
    let id = path_id(&id)?;
    let (rc, body) = ngsi.object_body(&state).await?;
    let name = writable_attr(&attr, &rc.ctx)?;
    let mut instances = parse::attribute(&attr, Value::Object(body), &rc.ctx, Mode::Entity)?;
    if instances.len() != 1 {
        return Err(NgsiError::bad_data(format!("the body must be one instance of attribute '{attr}'")).into());
    }
    let op = WriteOp::ReplaceAttr { id: id.clone(), name: name.clone(), attribute: instances.remove(0) };
    let op = type_gated(&ngsi, &rc.ctx, op)?;
    let local = write_in_tenant(&state, &ngsi.tenant, op);
    let context = distributed::context_url(&rc);
    attr_write(&state, &ngsi, context, Operation::ReplaceAttrs, &id, &name, &attr, local).await
}

/// `DELETE /entities/{id}/attrs/{attrId}`
pub async fn delete_attr(
    State(state): State<AppState>,
    Path((id, attr)): Path<(String, String)>,
    ngsi: Ngsi,
) -> ApiResult {
    ngsi.params.allow(&["datasetId", "deleteAll", "local", "type"])?;
    let id = path_id(&id)?;
    let rc = ngsi.context(&state).await?;
    let dataset_id = ngsi.params.get("datasetId").map(str::to_string);
    if let Some(d) = &dataset_id
        && !parse::is_uri(d)
    {
        return Err(NgsiError::bad_data(format!("datasetId '{d}' is not a URI")).into());
    }
    let all = ngsi.params.flag("deleteAll")?;
    let name = path_attr(&attr, &rc.ctx)?;
    let op = type_gated(&ngsi, &rc.ctx, WriteOp::DeleteAttr { id: id.clone(), name: name.clone(), dataset_id, all })?;
    let local = write_in_tenant(&state, &ngsi.tenant, op);
    let context = distributed::context_url(&rc);
    attr_write(&state, &ngsi, context, Operation::DeleteAttrs, &id, &name, &attr, local).await
}

/// Purge entities (`DELETE /entities`, §5.6.21 of V1.9): delete every entity a query selects,
/// or only some of their attributes (`drop`), or all but some (`keep`).
pub async fn purge(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[
        "id",
        "idPattern",
        "type",
        "attrs",
        "q",
        "scopeQ",
        "georel",
        "geometry",
        "coordinates",
        "geoproperty",
        "local",
        "keep",
        "drop",
        "csf",
    ])?;
    let rc = ngsi.context(&state).await?;
    if ngsi.params.has("keep") && ngsi.params.has("drop") {
        return Err(NgsiError::bad_data("keep and drop cannot be used together").into());
    }
    for param in ["keep", "drop", "attrs", "q"] {
        if ngsi.params.get(param).is_some_and(|v| v.contains('{')) {
            return Err(NgsiError::bad_data(format!("{param} cannot address linked entities in a purge")).into());
        }
    }
    let (selection, narrowed) = query::query_from_params(&ngsi.params, &rc.ctx)?;
    if !narrowed {
        return Err(NgsiError::bad_data(
            "a purge needs at least one of: type, attrs (other than system attributes), q, geoQ, local=true",
        )
        .into());
    }
    let keep = ngsi.params.has("keep").then(|| ngsi.params.names("keep", &rc.ctx)).transpose()?;
    let drop = ngsi.params.names("drop", &rc.ctx)?;
    if !distributed::may_forward(&state, &ngsi)? {
        return purge_local(&state, &ngsi, selection, keep, drop).await;
    }
    let prefilter = RegQuery { entities: selection.entities.clone(), ..RegQuery::default() };
    let local = purge_local(&state, &ngsi, selection, keep, drop);
    let Some(plan) = distributed::plan(&state, &ngsi, Operation::PurgeEntity, Target::default(), &prefilter).await?
    else {
        return local.await;
    };
    // The client's selection goes to each source as it came.
    let context = distributed::context_url(&rc);
    let request = |leg: &hanbat_federation::Leg| Request {
        method: Method::DELETE,
        path: "/entities".into(),
        query: distributed::forwarded_params(&ngsi, leg),
        body: None,
        context: context.clone(),
    };
    distributed::write(&state, &ngsi, &plan, "", local, true, request, response::no_content).await
}

async fn purge_local(
    state: &AppState,
    ngsi: &Ngsi,
    selection: EntityQuery,
    keep: Option<Vec<String>>,
    drop: Vec<String>,
) -> ApiResult {
    state.require_tenant(&ngsi.tenant).await?;
    const BATCH: usize = 500;
    let mut offset = 0;
    loop {
        let query = EntityQuery { limit: BATCH, offset, ..selection.clone() };
        let page = state.broker.query(&ngsi.tenant, &query).await?;
        let mut ops = Vec::new();
        for e in &page.entities {
            if keep.is_none() && drop.is_empty() {
                ops.push(WriteOp::Delete { id: e.id.clone() });
                continue;
            }
            let goes = |name: &String| match &keep {
                Some(keep) => !keep.contains(name),
                None => drop.contains(name),
            };
            for name in e.attrs.keys().filter(|n| goes(n)) {
                ops.push(WriteOp::DeleteAttr { id: e.id.clone(), name: name.clone(), dataset_id: None, all: true });
            }
        }
        let deleting = keep.is_none() && drop.is_empty();
        let results = state.broker.write(&ngsi.tenant, ops).await?;
        // Deleted entities leave the result set; the others stay and are paged past.
        offset += if deleting { results.iter().filter(|r| r.is_err()).count() } else { page.entities.len() };
        if page.entities.len() < BATCH {
            break;
        }
    }
    Ok(response::no_content())
}
