//! The write transaction: lock, load, `ops::apply`, persist, record history, count.

use crate::{OrStorage, decode, history};
use deadpool_postgres::Transaction;
use geo::{BoundingRect, Coord, Rect};
use hanbat_model::{AttrValue, Entity, Result, Timestamp};
use hanbat_query::geoquery::geometry_from_geojson;
use hanbat_store::{Applied, Change, WriteOp, ops};
use std::collections::{BTreeMap, HashMap};
use tokio_postgres::types::ToSql;

/// Records the tenant (it exists from its first write on).
pub(crate) async fn ensure_tenant(tx: &Transaction<'_>, tenant: &str) -> Result<()> {
    let stmt = tx.prepare_cached(ENSURE_TENANT).await.or_storage()?;
    tx.execute(&stmt, &[&tenant]).await.or_storage()?;
    Ok(())
}

/// Serialises writers of the same entities until the commit, also for entities that do not
/// exist yet (which `FOR UPDATE` cannot lock): a transaction advisory lock per (tenant, id),
/// taken in ascending key order so that two transactions never wait on each other in a cycle.
/// `tenants[i]` is the tenant of `ids[i]`. Taking a lock again in the same transaction is free.
pub(crate) async fn lock_entities(tx: &Transaction<'_>, tenants: &[&str], ids: &[&str]) -> Result<()> {
    let stmt = tx.prepare_cached(LOCK_ENTITIES).await.or_storage()?;
    tx.execute(&stmt, &[&tenants, &ids]).await.or_storage()?;
    Ok(())
}

/// An entity as the transaction sees it: whether it has a row, and its current state.
#[derive(Default)]
struct Slot {
    stored: bool,
    entity: Option<Entity>,
    /// Changed by an op of this call: its final state is written (or its row deleted).
    changed: bool,
}

/// Applies `ops` in order inside `tx` and writes what they did; one result per op. The outer
/// error is a storage failure (the caller rolls back); the inner one is the op's own refusal.
/// `log_as`: this node's id, when its changes are logged for the other nodes.
///
/// Two round trips whatever the batch size. The first locks and loads the entities; the ops
/// are then applied in memory (`ops::apply` on each entity's running state); the second writes
/// the entities' final rows, the deleted rows, the history, the discovery counters and the
/// change log, each one statement over arrays. The statements of a round trip are pipelined:
/// sent together, run by the server in the order sent.
pub(crate) async fn apply_ops(
    tx: &Transaction<'_>,
    tenant: &str,
    ops: Vec<WriteOp>,
    now: &Timestamp,
    log_as: Option<&str>,
) -> Result<Vec<Result<Applied>>> {
    let mut ids: Vec<&str> = ops.iter().map(WriteOp::entity_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let tenants = vec![tenant; ids.len()];
    let (s_tenant, s_lock, s_load) = (
        tx.prepare_cached(ENSURE_TENANT).await.or_storage()?,
        tx.prepare_cached(LOCK_ENTITIES).await.or_storage()?,
        tx.prepare_cached("SELECT id, doc FROM entities WHERE tenant = $1 AND id = ANY($2) FOR UPDATE")
            .await
            .or_storage()?,
    );
    let (tenant_params, lock_params, load_params): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 2], _) =
        ([&tenant], [&tenants, &ids], [&tenant as &(dyn ToSql + Sync), &ids]);
    let (_, _, rows) = futures::try_join!(
        tx.execute(&s_tenant, &tenant_params),
        tx.execute(&s_lock, &lock_params),
        tx.query(&s_load, &load_params),
    )
    .or_storage()?;
    let mut slots: HashMap<String, Slot> = HashMap::new();
    for row in rows {
        slots.insert(row.get(0), Slot { stored: true, entity: Some(decode(&row, "doc")?), changed: false });
    }
    // Entities in the order their first change came: new rows get `rid`s in creation order.
    let mut order: Vec<String> = Vec::new();
    let mut counts = CountDeltas::default();
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        let slot = slots.entry(op.entity_id().to_string()).or_default();
        let applied = match ops::apply(op, slot.entity.clone(), tenant, now) {
            Ok(a) => a,
            Err(e) => {
                results.push(Err(e));
                continue;
            }
        };
        if let Some(change) = &applied.change {
            if let Some(before) = &change.previous {
                counts.add(before, -1);
            }
            match applied.to_persist() {
                Some(next) => counts.add(next, 1),
                None if slot.entity.is_some() => counts.add(&change.entity, -1),
                None => {}
            }
            slot.entity = applied.to_persist().cloned();
            if !slot.changed {
                slot.changed = true;
                order.push(change.id.clone());
            }
        }
        results.push(Ok(applied));
    }
    let (mut kept, mut gone) = (Vec::new(), Vec::new());
    for id in &order {
        let Some(slot) = slots.get(id) else { continue };
        match &slot.entity {
            Some(entity) => kept.push(entity),
            None if slot.stored => gone.push(id.as_str()),
            None => {}
        }
    }
    let changes: Vec<&Change> = results.iter().filter_map(|r| r.as_ref().ok()?.change.as_ref()).collect();
    let rows = EntityRows::of(&kept)?;
    let history = history::HistoryRows::of(&changes);
    let counts = counts.rows(tenant);
    let log = match log_as {
        Some(node) if !changes.is_empty() => Some((node, serde_json::to_vec(&changes).or_storage()?)),
        _ => None,
    };
    let (s_persist, s_delete, s_history, s_count, s_uncount, s_log) = (
        tx.prepare_cached(PERSIST).await.or_storage()?,
        tx.prepare_cached("DELETE FROM entities WHERE tenant = $1 AND id = ANY($2)").await.or_storage()?,
        tx.prepare_cached(history::RECORD).await.or_storage()?,
        tx.prepare_cached(COUNT).await.or_storage()?,
        tx.prepare_cached(UNCOUNT).await.or_storage()?,
        tx.prepare_cached(crate::cluster::LOG_CHANGES).await.or_storage()?,
    );
    let skip = || async { Ok::<u64, tokio_postgres::Error>(0) };
    let persisted =
        async { if kept.is_empty() { skip().await } else { tx.execute(&s_persist, &rows.params(&tenant)).await } };
    let deleted = async { if gone.is_empty() { skip().await } else { tx.execute(&s_delete, &[&tenant, &gone]).await } };
    let recorded = async {
        if changes.is_empty() { skip().await } else { tx.execute(&s_history, &history.params(&tenant)).await }
    };
    let counted = async { if counts.is_empty() { skip().await } else { tx.execute(&s_count, &counts.params()).await } };
    // Only a decrement can bring a slot to zero.
    let uncounted = async {
        if counts.deltas.iter().all(|d| *d > 0) {
            skip().await
        } else {
            tx.execute(&s_uncount, &counts.zero_params()).await
        }
    };
    let logged = async {
        match &log {
            Some((node, payload)) => tx.execute(&s_log, &[node, payload]).await,
            None => skip().await,
        }
    };
    futures::try_join!(persisted, deleted, recorded, counted, uncounted, logged).or_storage()?;
    Ok(results)
}

const ENSURE_TENANT: &str = "INSERT INTO tenants(name) VALUES ($1) ON CONFLICT DO NOTHING";

/// Advisory locks per (tenant, id), in ascending key order (see [`lock_entities`]).
const LOCK_ENTITIES: &str = "SELECT pg_advisory_xact_lock(k) FROM (
         SELECT DISTINCT hashtextextended(t || chr(31) || i, 0) AS k
         FROM unnest($1::text[], $2::text[]) AS e(t, i) ORDER BY 1
     ) AS keys";

/// Types (or scopes) of one row as one text: arrays of arrays cannot vary in length, so each
/// row's list travels joined by the unit separator and is split again in SQL.
pub(crate) fn joined(items: &[String]) -> String {
    items.join("\u{1f}")
}

/// Writes the final state of each entity, inserting or updating its row.
const PERSIST: &str = "INSERT INTO entities(tenant, id, doc, types, expires, location_box)
     SELECT $1, u.id, u.doc, string_to_array(u.types, chr(31)), u.expires,
            CASE WHEN u.w IS NULL THEN NULL ELSE box(point(u.w, u.s), point(u.e, u.n)) END
     FROM unnest($2::text[], $3::bytea[], $4::text[], $5::bigint[],
                 $6::float8[], $7::float8[], $8::float8[], $9::float8[]) AS u(id, doc, types, expires, w, s, e, n)
     ON CONFLICT (tenant, id) DO UPDATE
     SET doc = excluded.doc, types = excluded.types, expires = excluded.expires, location_box = excluded.location_box";

/// The parameters of [`PERSIST`]: one array per column.
struct EntityRows<'a> {
    ids: Vec<&'a str>,
    docs: Vec<Vec<u8>>,
    types: Vec<String>,
    expires: Vec<Option<i64>>,
    /// West, south, east and north of the `location` bounding box.
    boxes: [Vec<Option<f64>>; 4],
}

impl<'a> EntityRows<'a> {
    fn of(entities: &[&'a Entity]) -> Result<Self> {
        let mut rows = Self {
            ids: Vec::with_capacity(entities.len()),
            docs: Vec::with_capacity(entities.len()),
            types: Vec::with_capacity(entities.len()),
            expires: Vec::with_capacity(entities.len()),
            boxes: Default::default(),
        };
        for e in entities {
            rows.ids.push(e.id.as_str());
            rows.docs.push(serde_json::to_vec(e).or_storage()?);
            rows.types.push(joined(&e.types));
            rows.expires.push(e.next_expiry().map(Timestamp::micros));
            let corners = match location_box(e) {
                Some(r) => [r.min().x, r.min().y, r.max().x, r.max().y].map(Some),
                None => [None; 4],
            };
            for (column, corner) in rows.boxes.iter_mut().zip(corners) {
                column.push(corner);
            }
        }
        Ok(rows)
    }

    fn params<'p>(&'p self, tenant: &'p &str) -> [&'p (dyn ToSql + Sync); 9] {
        let [w, s, e, n] = &self.boxes;
        [tenant, &self.ids, &self.docs, &self.types, &self.expires, w, s, e, n]
    }
}

/// The bounding box of every instance of the entity's `location` (unreadable geometries relate
/// to nothing, as in `GeoQuery::matches`).
fn location_box(entity: &Entity) -> Option<Rect<f64>> {
    let instances = entity.attrs.get(crate::LOCATION)?;
    let rects = instances.iter().filter_map(|a| match &a.value {
        AttrValue::GeoProperty(v) => geometry_from_geojson(v).ok()?.bounding_rect(),
        _ => None,
    });
    rects.reduce(|a, b| {
        Rect::new(
            Coord { x: a.min().x.min(b.min().x), y: a.min().y.min(b.min().y) },
            Coord { x: a.max().x.max(b.max().x), y: a.max().y.max(b.max().y) },
        )
    })
}

/// Discovery counters changed by a write, added in one statement in key order (concurrent
/// transactions then lock counter rows in the same order), each connection to its own slot.
#[derive(Default)]
pub(crate) struct CountDeltas {
    /// (type, attribute or "", kind or "") → delta.
    deltas: BTreeMap<(String, String, &'static str), i64>,
}

const COUNT: &str = "INSERT INTO type_attr_counts(tenant, type, attr, kind, n, slot)
     SELECT $1, u.*, (pg_backend_pid() % 64)::smallint
     FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[]) AS u
     ON CONFLICT (tenant, type, attr, kind, slot) DO UPDATE SET n = type_attr_counts.n + excluded.n";

/// Slots that came back to zero go (a slot may be negative: an entity counted in one slot
/// and uncounted in another; readers sum the slots).
const UNCOUNT: &str = "DELETE FROM type_attr_counts WHERE tenant = $1 AND type = ANY($2) AND n = 0";

impl CountDeltas {
    pub(crate) fn add(&mut self, entity: &Entity, sign: i64) {
        for t in &entity.types {
            *self.deltas.entry((t.clone(), String::new(), "")).or_default() += sign;
            for (name, instances) in &entity.attrs {
                let mut kinds: Vec<&'static str> = instances.iter().map(|a| a.value.type_name()).collect();
                kinds.sort_unstable();
                kinds.dedup();
                for kind in kinds {
                    *self.deltas.entry((t.clone(), name.clone(), kind)).or_default() += sign;
                }
            }
        }
    }

    fn rows(self, tenant: &str) -> CountRows {
        let mut rows = CountRows { tenant: tenant.to_string(), ..CountRows::default() };
        for ((t, attr, kind), delta) in self.deltas.into_iter().filter(|(_, d)| *d != 0) {
            if rows.types.last() != Some(&t) {
                rows.distinct_types.push(t.clone());
            }
            rows.types.push(t);
            rows.attrs.push(attr);
            rows.kinds.push(kind);
            rows.deltas.push(delta);
        }
        rows
    }
}

/// The parameters of [`COUNT`] and [`UNCOUNT`].
#[derive(Default)]
struct CountRows {
    tenant: String,
    types: Vec<String>,
    attrs: Vec<String>,
    kinds: Vec<&'static str>,
    deltas: Vec<i64>,
    distinct_types: Vec<String>,
}

impl CountRows {
    fn is_empty(&self) -> bool {
        self.deltas.is_empty()
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 5] {
        [&self.tenant, &self.types, &self.attrs, &self.kinds, &self.deltas]
    }

    fn zero_params(&self) -> [&(dyn ToSql + Sync); 2] {
        [&self.tenant, &self.distinct_types]
    }
}
