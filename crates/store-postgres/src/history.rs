//! History on PostgreSQL: one `t_instances` row per attribute instance (the sample in the chunk
//! codec of hanbat-temporal), partitioned by the month it was recorded. The row's `inst`
//! (from a sequence) is the `record` half of the sample's origin, so instance ids are stable.
//! What is recorded and how queries are answered is `hanbat_store::history`, shared with the
//! embedded store.

use crate::{Keyset, OrStorage};
use deadpool_postgres::{Object, Transaction};
use hanbat_model::{Entity, NgsiError, Result, Timestamp};
use hanbat_store::history::{Series, patch_sample, recorded_instances};
use hanbat_store::{Change, ChangeKind, HistoryOp, HistoryOutcome, HistoryPage, HistoryQuery, HistoryScan};
use hanbat_temporal::codec::{self, Chunk};
use hanbat_temporal::{Origin, Sample, TimeProperty};
use std::collections::HashMap;
use std::sync::Arc;
use tokio_postgres::GenericClient;
use tokio_postgres::types::ToSql;

/// Records committed changes: one temporal entity row per entity (created by its first
/// change, described by its last) and the instances the changes wrote, in commit order.
pub(crate) const RECORD: &str = "WITH t AS (
         INSERT INTO t_entities(tenant, id, types, scopes, created, modified, deleted)
         SELECT $1, u.id, string_to_array(u.types, chr(31)), string_to_array(u.scopes, chr(31)),
                u.created, u.modified, u.deleted
         FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[])
              AS u(id, types, scopes, created, modified, deleted)
         ON CONFLICT (tenant, id) DO UPDATE
         SET types = excluded.types, scopes = excluded.scopes, modified = excluded.modified,
             deleted = excluded.deleted
         RETURNING id, tid
     )
     INSERT INTO t_instances(tid, attr, dataset, recorded, observed, data)
     SELECT t.tid, i.attr, i.dataset, i.recorded, i.observed, i.data
     FROM unnest($8::text[], $9::text[], $10::text[], $11::bigint[], $12::bigint[], $13::bytea[])
          WITH ORDINALITY AS i(id, attr, dataset, recorded, observed, data, n)
     JOIN t ON t.id = i.id
     ORDER BY i.n";

/// The parameters of [`RECORD`].
pub(crate) struct HistoryRows<'a> {
    ids: Vec<&'a str>,
    types: Vec<String>,
    scopes: Vec<String>,
    created: Vec<i64>,
    modified: Vec<i64>,
    deleted: Vec<Option<i64>>,
    instance_ids: Vec<&'a str>,
    attrs: Vec<String>,
    datasets: Vec<String>,
    recorded: Vec<i64>,
    observed: Vec<Option<i64>>,
    data: Vec<Vec<u8>>,
}

impl<'a> HistoryRows<'a> {
    pub(crate) fn of(changes: &[&'a Change]) -> Self {
        let mut entities: Vec<(&Change, &Change)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for c in changes {
            match index.get(c.id.as_str()) {
                Some(&i) => entities[i].1 = c,
                None => {
                    index.insert(&c.id, entities.len());
                    entities.push((c, c));
                }
            }
        }
        let mut rows = HistoryRows {
            ids: entities.iter().map(|(_, last)| last.id.as_str()).collect(),
            types: entities.iter().map(|(_, last)| crate::write::joined(&last.entity.types)).collect(),
            scopes: entities.iter().map(|(_, last)| crate::write::joined(&last.entity.scopes)).collect(),
            created: entities.iter().map(|(first, _)| first.at.micros()).collect(),
            modified: entities.iter().map(|(_, last)| last.at.micros()).collect(),
            deleted: entities
                .iter()
                .map(|(_, last)| (last.kind == ChangeKind::Deleted).then(|| last.at.micros()))
                .collect(),
            instance_ids: Vec::new(),
            attrs: Vec::new(),
            datasets: Vec::new(),
            recorded: Vec::new(),
            observed: Vec::new(),
            data: Vec::new(),
        };
        for c in changes {
            for item in recorded_instances(c) {
                rows.instance_ids.push(c.id.as_str());
                rows.recorded.push(item.sample.recorded);
                rows.observed.push(item.sample.observed);
                rows.data.push(codec::encode(std::slice::from_ref(&item.sample), item.unit.as_deref()));
                rows.attrs.push(item.name);
                rows.datasets.push(item.dataset);
            }
        }
        rows
    }

    pub(crate) fn params<'p>(&'p self, tenant: &'p &str) -> [&'p (dyn ToSql + Sync); 13] {
        [
            tenant,
            &self.ids,
            &self.types,
            &self.scopes,
            &self.created,
            &self.modified,
            &self.deleted,
            &self.instance_ids,
            &self.attrs,
            &self.datasets,
            &self.recorded,
            &self.observed,
            &self.data,
        ]
    }
}

/// The sample of a row, with its origin (`inst`, 0) and unit code.
fn sample_of(inst: i64, data: &[u8]) -> Option<(Sample, Option<Arc<str>>)> {
    let mut chunk = Chunk::open(data)?;
    let unit = chunk.unit.take().map(Into::into);
    let mut sample = chunk.next()?;
    sample.origin = Origin { record: inst, index: 0 };
    Some((sample, unit))
}

async fn temporal_tid(tx: &Transaction<'_>, tenant: &str, id: &str) -> Result<Option<i64>> {
    let stmt = tx.prepare_cached("SELECT tid FROM t_entities WHERE tenant = $1 AND id = $2").await.or_storage()?;
    Ok(tx.query_opt(&stmt, &[&tenant, &id]).await.or_storage()?.map(|r| r.get(0)))
}

fn missing(id: &str) -> NgsiError {
    NgsiError::not_found(format!("entity '{id}' has no temporal representation"))
}

/// Applies a temporal API write inside `tx`. An `Err` leaves the transaction to be rolled back.
pub(crate) async fn apply_op(tx: &Transaction<'_>, tenant: &str, op: HistoryOp) -> Result<HistoryOutcome> {
    let Some(tid) = temporal_tid(tx, tenant, op.entity_id()).await? else { return Err(missing(op.entity_id())) };
    match op {
        HistoryOp::DeleteEntity { .. } => {
            tx.execute("DELETE FROM t_instances WHERE tid = $1", &[&tid]).await.or_storage()?;
            tx.execute("DELETE FROM t_entities WHERE tid = $1", &[&tid]).await.or_storage()?;
        }
        HistoryOp::DeleteAttr { id, attr, dataset_id, all } => {
            let dataset = dataset_id.unwrap_or_default();
            let n = tx
                .execute(
                    "DELETE FROM t_instances WHERE tid = $1 AND attr = $2 AND ($3 OR dataset = $4)",
                    &[&tid, &attr, &all, &dataset],
                )
                .await
                .or_storage()?;
            if n == 0 {
                return Err(NgsiError::not_found(format!("entity '{id}' has no history of attribute '{attr}'")));
            }
        }
        HistoryOp::PatchInstance { id, attr, instance_id, fragment } => {
            let not_found = || no_instance(&id, &attr, &instance_id);
            let inst = instance_record(&instance_id).ok_or_else(not_found)?;
            let row = tx
                .query_opt(
                    "SELECT data FROM t_instances WHERE tid = $1 AND attr = $2 AND inst = $3 FOR UPDATE",
                    &[&tid, &attr, &inst],
                )
                .await
                .or_storage()?
                .ok_or_else(not_found)?;
            let data: Vec<u8> = row.get(0);
            let (sample, unit) = sample_of(inst, &data).ok_or_else(not_found)?;
            let patched = patch_sample(&sample, unit.as_deref(), &fragment);
            let unit = if patched.is_numeric() { fragment.unit_code.as_deref().or(unit.as_deref()) } else { None };
            tx.execute(
                "UPDATE t_instances SET observed = $4, data = $5 WHERE tid = $1 AND attr = $2 AND inst = $3",
                &[&tid, &attr, &inst, &patched.observed, &codec::encode(std::slice::from_ref(&patched), unit)],
            )
            .await
            .or_storage()?;
        }
        HistoryOp::DeleteInstance { id, attr, instance_id } => {
            let inst = instance_record(&instance_id).ok_or_else(|| no_instance(&id, &attr, &instance_id))?;
            let n = tx
                .execute("DELETE FROM t_instances WHERE tid = $1 AND attr = $2 AND inst = $3", &[&tid, &attr, &inst])
                .await
                .or_storage()?;
            if n == 0 {
                return Err(no_instance(&id, &attr, &instance_id));
            }
        }
    }
    Ok(HistoryOutcome::Updated)
}

/// The `inst` of an instance id this store made (its index is always 0).
fn instance_record(instance_id: &str) -> Option<i64> {
    Origin::parse_instance_id(instance_id).filter(|o| o.index == 0).map(|o| o.record)
}

fn no_instance(id: &str, attr: &str, instance_id: &str) -> NgsiError {
    NgsiError::not_found(format!("entity '{id}' has no instance '{instance_id}' of attribute '{attr}'"))
}

/// Removes history recorded before `before` (retention).
pub(crate) async fn prune(client: &Object, before: i64) -> Result<u64> {
    client.execute("DELETE FROM t_instances WHERE recorded < $1", &[&before]).await.or_storage()
}

/// The samples of a temporal entity (of `attrs`, all if empty), pruned by the window on the
/// column the query filters (a superset: the shared evaluation decides exactly).
async fn load_samples(
    client: &impl GenericClient,
    tid: i64,
    attrs: &[String],
    window: Option<(i64, i64)>,
    by_observed: bool,
) -> Result<Series> {
    let (lo, hi) = window.unwrap_or((i64::MIN, i64::MAX));
    let time = match (window, by_observed) {
        (None, _) => "",
        (Some(_), true) => " AND observed >= $3 AND observed <= $4",
        (Some(_), false) => " AND recorded >= $3 AND recorded <= $4",
    };
    let sql = format!(
        "SELECT attr, dataset, inst, data FROM t_instances
         WHERE tid = $1 AND (cardinality($2::text[]) = 0 OR attr = ANY($2)){time} ORDER BY inst"
    );
    let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
    let rows = if window.is_some() {
        client.query(&sql, &[&tid, &attrs, &lo, &hi]).await
    } else {
        client.query(&sql, &[&tid, &attrs]).await
    }
    .or_storage()?;
    let mut names: HashMap<String, Arc<str>> = HashMap::new();
    let mut series = Series::new();
    for row in rows {
        let attr: String = row.get(0);
        let data: &[u8] = row.get(3);
        let Some(sample) = sample_of(row.get(2), data) else { continue };
        let iri = names.entry(attr).or_insert_with_key(|a| a.as_str().into()).clone();
        series.entry((iri, row.get(1))).or_default().push(sample);
    }
    Ok(series)
}

/// Runs a temporal query for one tenant: temporal entities in keyset-paged batches, each
/// selected one with its samples through the shared [`HistoryScan`].
pub(crate) async fn query(client: &Object, tenant: &str, q: &HistoryQuery) -> Result<HistoryPage> {
    let mut scan = HistoryScan::new(q);
    let by_observed = q.time.property == TimeProperty::ObservedAt;
    let mut keyset = Keyset::new(q.select.order_by_id, ("tid", "id"), q.select.offset.saturating_add(q.select.limit));
    'batches: loop {
        let sql = format!(
            "SELECT tid, id, types, scopes, created, modified, deleted FROM t_entities WHERE tenant = $1{}",
            keyset.sql(2)
        );
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&tenant];
        params.extend(keyset.params());
        let stmt = client.prepare_cached(&sql).await.or_storage()?;
        let rows = client.query(&stmt, &params).await.or_storage()?;
        let Some(last) = rows.last() else { break };
        let (last_tid, last_id): (i64, String) = (last.get(0), last.get(1));
        let n = rows.len();
        for row in rows {
            let tid: i64 = row.get(0);
            let mut entity = Entity::new(row.get::<_, String>(1), Vec::new());
            entity.types = row.get(2);
            entity.scopes = row.get(3);
            entity.created_at = Some(Timestamp::from_micros(row.get(4)));
            entity.modified_at = Some(Timestamp::from_micros(row.get(5)));
            entity.deleted_at = row.get::<_, Option<i64>>(6).map(Timestamp::from_micros);
            if !scan.selects(&entity) {
                continue;
            }
            let series = load_samples(&***client, tid, scan.attrs_to_load(), scan.window(), by_observed).await?;
            if !scan.offer(entity, series) {
                break 'batches;
            }
        }
        if !keyset.advance(n, last_tid, &last_id) {
            break;
        }
    }
    Ok(scan.finish())
}
