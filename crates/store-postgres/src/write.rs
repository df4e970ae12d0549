//! The write transaction: lock, load, `ops::apply`, persist, record history, count.

use crate::{OrStorage, decode, history};
use deadpool_postgres::Transaction;
use geo::{BoundingRect, Coord, Rect};
use hanbat_model::{AttrValue, Entity, Result, Timestamp};
use hanbat_query::geoquery::geometry_from_geojson;
use hanbat_store::{Applied, WriteOp, ops};
use std::collections::{BTreeMap, HashMap};
use tokio_postgres::types::Json;

/// Records the tenant (it exists from its first write on).
pub(crate) async fn ensure_tenant(tx: &Transaction<'_>, tenant: &str) -> Result<()> {
    let stmt = tx.prepare_cached("INSERT INTO tenants(name) VALUES ($1) ON CONFLICT DO NOTHING").await.or_storage()?;
    tx.execute(&stmt, &[&tenant]).await.or_storage()?;
    Ok(())
}

/// Serialises writers of the same entities until the commit, also for entities that do not
/// exist yet (which `FOR UPDATE` cannot lock): a transaction advisory lock per (tenant, id),
/// taken in ascending key order so that two transactions never wait on each other in a cycle.
/// `tenants[i]` is the tenant of `ids[i]`. Taking a lock again in the same transaction is free.
pub(crate) async fn lock_entities(tx: &Transaction<'_>, tenants: &[&str], ids: &[&str]) -> Result<()> {
    let stmt = tx
        .prepare_cached(
            "SELECT pg_advisory_xact_lock(k) FROM (
                 SELECT DISTINCT hashtextextended(t || chr(31) || i, 0) AS k
                 FROM unnest($1::text[], $2::text[]) AS e(t, i) ORDER BY 1
             ) AS keys",
        )
        .await
        .or_storage()?;
    tx.execute(&stmt, &[&tenants, &ids]).await.or_storage()?;
    Ok(())
}

/// An entity as the transaction sees it: its row (if stored) and its current state.
#[derive(Default)]
struct Slot {
    stored: bool,
    entity: Option<Entity>,
}

/// Applies `ops` in order inside `tx`; one result per op. The outer error is a storage
/// failure (the caller rolls back); the inner one is the op's own refusal.
pub(crate) async fn apply_ops(
    tx: &Transaction<'_>,
    tenant: &str,
    ops: Vec<WriteOp>,
    now: &Timestamp,
    counts: &mut CountDeltas,
) -> Result<Vec<Result<Applied>>> {
    ensure_tenant(tx, tenant).await?;
    let mut ids: Vec<&str> = ops.iter().map(WriteOp::entity_id).collect();
    ids.sort_unstable();
    ids.dedup();
    lock_entities(tx, &vec![tenant; ids.len()], &ids).await?;
    let stmt = tx
        .prepare_cached("SELECT id, doc FROM entities WHERE tenant = $1 AND id = ANY($2) FOR UPDATE")
        .await
        .or_storage()?;
    let mut slots: HashMap<String, Slot> = HashMap::new();
    for row in tx.query(&stmt, &[&tenant, &ids]).await.or_storage()? {
        slots.insert(row.get(0), Slot { stored: true, entity: Some(decode(&row, "doc")?) });
    }
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
            history::record_change(tx, tenant, change).await?;
            if let Some(before) = &change.previous {
                counts.add(tenant, before, -1);
            }
            match applied.to_persist() {
                Some(next) => {
                    persist(tx, tenant, next, slot.stored).await?;
                    counts.add(tenant, next, 1);
                    slot.stored = true;
                }
                None if slot.stored => {
                    let stmt =
                        tx.prepare_cached("DELETE FROM entities WHERE tenant = $1 AND id = $2").await.or_storage()?;
                    tx.execute(&stmt, &[&tenant, &change.id]).await.or_storage()?;
                    counts.add(tenant, &change.entity, -1);
                    slot.stored = false;
                }
                None => {}
            }
            slot.entity = applied.to_persist().cloned();
        }
        results.push(Ok(applied));
    }
    Ok(results)
}

async fn persist(tx: &Transaction<'_>, tenant: &str, next: &Entity, stored: bool) -> Result<()> {
    let expires = next.next_expiry().map(Timestamp::micros);
    let [west, south, east, north] = match location_box(next) {
        Some(r) => [r.min().x, r.min().y, r.max().x, r.max().y].map(Some),
        None => [None; 4],
    };
    let sql = if stored {
        "UPDATE entities SET doc = $3, types = $4, expires = $5,
             location_box = CASE WHEN $6::float8 IS NULL THEN NULL ELSE box(point($6, $7), point($8, $9)) END
         WHERE tenant = $1 AND id = $2"
    } else {
        "INSERT INTO entities(tenant, id, doc, types, expires, location_box)
         VALUES ($1, $2, $3, $4, $5,
                 CASE WHEN $6::float8 IS NULL THEN NULL ELSE box(point($6, $7), point($8, $9)) END)"
    };
    let stmt = tx.prepare_cached(sql).await.or_storage()?;
    tx.execute(&stmt, &[&tenant, &next.id, &Json(next), &next.types, &expires, &west, &south, &east, &north])
        .await
        .or_storage()?;
    Ok(())
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

/// Discovery counters changed by the transaction, flushed once before the commit in key order
/// (concurrent transactions then lock counter rows in the same order).
#[derive(Default)]
pub(crate) struct CountDeltas {
    /// (tenant, type, attribute or "", kind or "") → delta.
    deltas: BTreeMap<(String, String, String, &'static str), i64>,
}

impl CountDeltas {
    pub(crate) fn add(&mut self, tenant: &str, entity: &Entity, sign: i64) {
        for t in &entity.types {
            *self.deltas.entry((tenant.to_string(), t.clone(), String::new(), "")).or_default() += sign;
            for (name, instances) in &entity.attrs {
                let mut kinds: Vec<&'static str> = instances.iter().map(|a| a.value.type_name()).collect();
                kinds.sort_unstable();
                kinds.dedup();
                for kind in kinds {
                    *self.deltas.entry((tenant.to_string(), t.clone(), name.clone(), kind)).or_default() += sign;
                }
            }
        }
    }

    pub(crate) async fn flush(self, tx: &Transaction<'_>) -> Result<()> {
        let changed: Vec<_> = self.deltas.into_iter().filter(|(_, d)| *d != 0).collect();
        if changed.is_empty() {
            return Ok(());
        }
        let tenants: Vec<&str> = changed.iter().map(|((t, ..), _)| t.as_str()).collect();
        let types: Vec<&str> = changed.iter().map(|((_, t, ..), _)| t.as_str()).collect();
        let attrs: Vec<&str> = changed.iter().map(|((_, _, a, _), _)| a.as_str()).collect();
        let kinds: Vec<&str> = changed.iter().map(|((.., k), _)| *k).collect();
        let deltas: Vec<i64> = changed.iter().map(|(_, d)| *d).collect();
        let stmt = tx
            .prepare_cached(
                "INSERT INTO type_attr_counts(tenant, type, attr, kind, n)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])
                 ON CONFLICT (tenant, type, attr, kind) DO UPDATE SET n = type_attr_counts.n + excluded.n",
            )
            .await
            .or_storage()?;
        tx.execute(&stmt, &[&tenants, &types, &attrs, &kinds, &deltas]).await.or_storage()?;
        let stmt = tx
            .prepare_cached(
                "DELETE FROM type_attr_counts c USING unnest($1::text[], $2::text[]) AS k(tenant, type)
                 WHERE c.tenant = k.tenant AND c.type = k.type AND c.n <= 0",
            )
            .await
            .or_storage()?;
        tx.execute(&stmt, &[&tenants, &types]).await.or_storage()?;
        Ok(())
    }
}
