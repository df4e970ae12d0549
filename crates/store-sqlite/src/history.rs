//! History on SQLite: recording (inside the writer's transaction), compaction of the log into
//! chunks, edits of the temporal API, and temporal queries.
//!
//! A log record holds what one change wrote to one entity: items (attribute name id, datasetId,
//! one sample in the chunk codec). The record's rowid is the `record` half of each sample's
//! origin, so instance ids need no extra index and survive compaction.

use crate::writer::Ids;
use hanbat_model::{AttrValue, Attribute, Entity, NgsiError, Result, Timestamp};
use hanbat_store::{
    AggregatedAttr, AttrChangeKind, Change, ChangeKind, HistoryOp, HistoryOutcome, HistoryPage, HistoryQuery,
    TemporalEntity,
};
use hanbat_temporal::aggregate::Periods;
use hanbat_temporal::codec::{self, Chunk};
use hanbat_temporal::{Origin, Sample, SampleValue, TimeProperty};
use indexmap::IndexMap;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::collections::HashMap;
use std::sync::Arc;

/// Samples per chunk: a day of minute data; small enough that appending re-encodes little.
const CHUNK_SAMPLES: usize = 1440;
/// Log records compacted per compaction job.
pub(crate) const COMPACT_BATCH: usize = 20_000;

/// One sample of a log record.
struct LogItem {
    attr: i64,
    dataset: String,
    unit: Option<String>,
    sample: Sample,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

fn get_slice<'a>(bytes: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let n = get_varint(bytes, at)? as usize;
    let slice = bytes.get(*at..at.checked_add(n)?)?;
    *at += n;
    Some(slice)
}

fn encode_log(items: &[LogItem]) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.len() * 24);
    put_varint(&mut out, items.len() as u64);
    for item in items {
        put_varint(&mut out, item.attr as u64);
        put_varint(&mut out, item.dataset.len() as u64);
        out.extend_from_slice(item.dataset.as_bytes());
        let chunk = codec::encode(std::slice::from_ref(&item.sample), item.unit.as_deref());
        put_varint(&mut out, chunk.len() as u64);
        out.extend_from_slice(&chunk);
    }
    out
}

/// Decodes a log record; samples get their origin from `rec`. `None` if corrupt.
fn decode_log(rec: i64, body: &[u8]) -> Option<Vec<LogItem>> {
    let mut at = 0;
    let n = get_varint(body, &mut at)? as usize;
    let mut items = Vec::with_capacity(n.min(4096));
    for index in 0..n {
        let attr = get_varint(body, &mut at)? as i64;
        let dataset = std::str::from_utf8(get_slice(body, &mut at)?).ok()?.to_string();
        let mut chunk = Chunk::open(get_slice(body, &mut at)?)?;
        let unit = chunk.unit.take();
        let mut sample = chunk.next()?;
        sample.origin = Origin { record: rec, index: index as u32 };
        items.push(LogItem { attr, dataset, unit, sample });
    }
    Some(items)
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// Creates or refreshes the temporal entity row; returns its id.
fn upsert_entity(tx: &Transaction, tenant: i64, e: &Entity, at: i64, deleted: Option<i64>) -> rusqlite::Result<i64> {
    let existing: Option<i64> = tx
        .prepare_cached("SELECT tid FROM t_entities WHERE tenant = ?1 AND id = ?2")?
        .query_row(params![tenant, e.id], |r| r.get(0))
        .optional()?;
    match existing {
        Some(tid) => {
            tx.prepare_cached(
                "UPDATE t_entities SET types = ?1, scopes = ?2, modified = ?3, deleted = ?4 WHERE tid = ?5",
            )?
            .execute(params![json_list(&e.types), json_list(&e.scopes), at, deleted, tid])?;
            Ok(tid)
        }
        None => {
            tx.prepare_cached(
                "INSERT INTO t_entities(tenant, id, types, scopes, created, modified, deleted) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
            )?
            .execute(params![tenant, e.id, json_list(&e.types), json_list(&e.scopes), at, deleted])?;
            Ok(tx.last_insert_rowid())
        }
    }
}

fn append_log(tx: &Transaction, tid: i64, items: &[LogItem]) -> rusqlite::Result<()> {
    if !items.is_empty() {
        tx.prepare_cached("INSERT INTO t_log(tid, body) VALUES (?1, ?2)")?.execute(params![tid, encode_log(items)])?;
    }
    Ok(())
}

fn item(ids: &mut Ids, tx: &Transaction, name: &str, attr: &Attribute, recorded: i64) -> rusqlite::Result<LogItem> {
    Ok(LogItem {
        attr: ids.name(tx, name)?,
        dataset: attr.dataset_id.clone().unwrap_or_default(),
        unit: attr.unit_code.clone(),
        sample: Sample::from_instance(Origin { record: 0, index: 0 }, recorded, attr),
    })
}

/// Records a committed change: the instances it created or updated, and deletions.
pub(crate) fn record_change(tx: &Transaction, ids: &mut Ids, tenant: i64, change: &Change) -> rusqlite::Result<()> {
    let at = change.at.micros();
    let deleted = (change.kind == ChangeKind::Deleted).then_some(at);
    let tid = upsert_entity(tx, tenant, &change.entity, at, deleted)?;
    if let Some(history) = &change.history {
        let items = items_of(tx, ids, history, at)?;
        return append_log(tx, tid, &items);
    }
    let mut items = Vec::with_capacity(change.attrs.len() + 1);
    if let Some(scope) = scope_change(change) {
        items.push(LogItem {
            attr: ids.name(tx, hanbat_store::ops::SCOPE_IRI)?,
            dataset: String::new(),
            unit: None,
            sample: scope,
        });
    }
    for c in &change.attrs {
        match c.kind {
            AttrChangeKind::Created | AttrChangeKind::Updated => {
                if let Some(attr) = change.entity.instance(&c.name, c.dataset_id.as_deref()) {
                    items.push(item(ids, tx, &c.name, attr, at)?);
                }
            }
            AttrChangeKind::Deleted => {
                // The deleted instance: in the entity before an update, in the last state of a
                // deleted entity.
                let before = change.previous.as_deref().unwrap_or(&change.entity);
                let value = before
                    .instance(&c.name, c.dataset_id.as_deref())
                    .map_or(AttrValue::Null, |a| hanbat_temporal::codec::null_of_kind(&a.value));
                let mut marker = Attribute::new(value);
                marker.dataset_id = c.dataset_id.clone();
                items.push(item(ids, tx, &c.name, &marker, at)?);
            }
        }
    }
    append_log(tx, tid, &items)
}

/// Scope is history too (§4.5.6 of V1.9): a Property instance per change of an entity's scopes,
/// observed when it was modified; clearing the scopes records a deletion with `[]`.
fn scope_change(change: &Change) -> Option<Sample> {
    let before = change.previous.as_ref().map(|p| p.scopes.as_slice()).unwrap_or_default();
    let after = if change.kind == ChangeKind::Deleted { &[][..] } else { change.entity.scopes.as_slice() };
    if before == after {
        return None;
    }
    let at = change.at.micros();
    let value = serde_json::Value::Array(after.iter().cloned().map(serde_json::Value::String).collect());
    let origin = Origin { record: 0, index: 0 };
    if after.is_empty() {
        let deleted = SampleValue::Deleted(Box::new(Attribute::property(value)));
        return Some(Sample { origin, recorded: at, observed: None, value: deleted });
    }
    let mut attr = Attribute::property(value);
    attr.observed_at = Some(change.at.clone());
    Some(Sample::from_instance(origin, at, &attr))
}

fn temporal_tid(tx: &Connection, tenant: i64, id: &str) -> rusqlite::Result<Option<i64>> {
    tx.prepare_cached("SELECT tid FROM t_entities WHERE tenant = ?1 AND id = ?2")?
        .query_row(params![tenant, id], |r| r.get(0))
        .optional()
}

fn missing(id: &str) -> NgsiError {
    NgsiError::not_found(format!("entity '{id}' has no temporal representation"))
}

/// Items for every instance of `attrs` (temporal payloads carry several per attribute).
fn items_of(tx: &Transaction, ids: &mut Ids, attrs: &hanbat_model::Attrs, now: i64) -> rusqlite::Result<Vec<LogItem>> {
    let mut items = Vec::new();
    for (name, instances) in attrs {
        for a in instances {
            items.push(item(ids, tx, name, a, now)?);
        }
    }
    Ok(items)
}

/// Applies a temporal API write inside the writer's transaction.
pub(crate) fn apply_op(
    tx: &Transaction,
    ids: &mut Ids,
    tenant: i64,
    op: HistoryOp,
) -> rusqlite::Result<Result<HistoryOutcome>> {
    match op {
        HistoryOp::DeleteEntity { id } => {
            let Some(tid) = temporal_tid(tx, tenant, &id)? else { return Ok(Err(missing(&id))) };
            tx.prepare_cached("DELETE FROM t_chunks WHERE sid IN (SELECT sid FROM t_series WHERE tid = ?1)")?
                .execute([tid])?;
            tx.prepare_cached("DELETE FROM t_series WHERE tid = ?1")?.execute([tid])?;
            tx.prepare_cached("DELETE FROM t_log WHERE tid = ?1")?.execute([tid])?;
            tx.prepare_cached("DELETE FROM t_entities WHERE tid = ?1")?.execute([tid])?;
            Ok(Ok(HistoryOutcome::Updated))
        }
        HistoryOp::DeleteAttr { id, attr, dataset_id, all } => {
            let Some(tid) = temporal_tid(tx, tenant, &id)? else { return Ok(Err(missing(&id))) };
            let attr_id = ids.name(tx, &attr)?;
            let wanted = |dataset: &str| all || dataset == dataset_id.as_deref().unwrap_or("");
            let mut removed = 0usize;
            let series: Vec<(i64, String)> = tx
                .prepare_cached("SELECT sid, dataset FROM t_series WHERE tid = ?1 AND attr = ?2")?
                .query_map(params![tid, attr_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (sid, _) in series.iter().filter(|(_, d)| wanted(d)) {
                tx.prepare_cached("DELETE FROM t_chunks WHERE sid = ?1")?.execute([sid])?;
                tx.prepare_cached("DELETE FROM t_series WHERE sid = ?1")?.execute([sid])?;
                removed += 1;
            }
            removed += rewrite_log(tx, tid, |item| !(item.attr == attr_id && wanted(&item.dataset)))?;
            if removed == 0 {
                return Ok(Err(NgsiError::not_found(format!("entity '{id}' has no history of attribute '{attr}'"))));
            }
            Ok(Ok(HistoryOutcome::Updated))
        }
        HistoryOp::PatchInstance { id, attr, instance_id, fragment } => {
            edit_instance(tx, ids, tenant, &id, &attr, &instance_id, Some(*fragment))
        }
        HistoryOp::DeleteInstance { id, attr, instance_id } => {
            edit_instance(tx, ids, tenant, &id, &attr, &instance_id, None)
        }
    }
}

/// Keeps the log items of an entity for which `keep` holds; returns how many were dropped.
fn rewrite_log(tx: &Transaction, tid: i64, keep: impl Fn(&LogItem) -> bool) -> rusqlite::Result<usize> {
    let records: Vec<(i64, Vec<u8>)> = tx
        .prepare_cached("SELECT rec, body FROM t_log WHERE tid = ?1")?
        .query_map([tid], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut dropped = 0;
    for (rec, body) in records {
        let Some(items) = decode_log(rec, &body) else { continue };
        let before = items.len();
        let kept: Vec<LogItem> = items.into_iter().filter(|i| keep(i)).collect();
        if kept.len() != before {
            dropped += before - kept.len();
            tx.prepare_cached("UPDATE t_log SET body = ?1 WHERE rec = ?2")?.execute(params![encode_log(&kept), rec])?;
        }
    }
    Ok(dropped)
}

/// Replaces (fragment) or removes (None) the instance with `instance_id`.
fn edit_instance(
    tx: &Transaction,
    ids: &mut Ids,
    tenant: i64,
    id: &str,
    attr: &str,
    instance_id: &str,
    fragment: Option<Attribute>,
) -> rusqlite::Result<Result<HistoryOutcome>> {
    let not_found =
        || NgsiError::not_found(format!("entity '{id}' has no instance '{instance_id}' of attribute '{attr}'"));
    let Some(tid) = temporal_tid(tx, tenant, id)? else { return Ok(Err(missing(id))) };
    let Some(origin) = Origin::parse_instance_id(instance_id) else { return Ok(Err(not_found())) };
    let attr_id = ids.name(tx, attr)?;
    let edit = |sample: &Sample, unit: Option<&str>| -> Option<Sample> {
        let fragment = fragment.as_ref()?;
        let mut current = instance_of(sample, unit, "");
        merge_fragment(&mut current, fragment);
        let recorded = sample.recorded;
        Some(Sample::from_instance(sample.origin, recorded, &current))
    };
    // In the log?
    let body: Option<Vec<u8>> = tx
        .prepare_cached("SELECT body FROM t_log WHERE rec = ?1 AND tid = ?2")?
        .query_row(params![origin.record, tid], |r| r.get(0))
        .optional()?;
    if let Some(body) = body
        && let Some(mut items) = decode_log(origin.record, &body)
        && let Some(pos) = items.iter().position(|i| i.sample.origin == origin && i.attr == attr_id)
    {
        match edit(&items[pos].sample, items[pos].unit.as_deref()) {
            Some(s) => items[pos].sample = s,
            None => {
                items.remove(pos);
            }
        }
        tx.prepare_cached("UPDATE t_log SET body = ?1 WHERE rec = ?2")?
            .execute(params![encode_log(&items), origin.record])?;
        return Ok(Ok(HistoryOutcome::Updated));
    }
    // In a chunk of one of the attribute's series?
    let chunks: Vec<(i64, i64, Vec<u8>)> = tx
        .prepare_cached(
            "SELECT c.sid, c.first_rec, c.data FROM t_chunks c JOIN t_series s ON s.sid = c.sid
             WHERE s.tid = ?1 AND s.attr = ?2 AND c.first_rec <= ?3 ORDER BY c.first_rec DESC",
        )?
        .query_map(params![tid, attr_id, chunk_key(origin)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (sid, first_rec, data) in chunks {
        let Some(chunk) = Chunk::open(&data) else { continue };
        let unit = chunk.unit.clone();
        let mut samples: Vec<Sample> = chunk.collect();
        let Some(pos) = samples.iter().position(|s| s.origin == origin) else { continue };
        match edit(&samples[pos], unit.as_deref()) {
            Some(s) => samples[pos] = normalize_unit(s, None, unit.as_deref()),
            None => {
                samples.remove(pos);
            }
        }
        write_chunk(tx, sid, first_rec, &samples, unit.as_deref())?;
        return Ok(Ok(HistoryOutcome::Updated));
    }
    Ok(Err(not_found()))
}

/// Merge-patch of an instance's members (value, observedAt, unitCode, sub-attributes).
fn merge_fragment(current: &mut Attribute, fragment: &Attribute) {
    if !fragment.value.is_null() {
        current.value = fragment.value.clone();
    }
    if fragment.observed_at.is_some() {
        current.observed_at = fragment.observed_at.clone();
    }
    if fragment.unit_code.is_some() {
        current.unit_code = fragment.unit_code.clone();
    }
    for (name, subs) in &fragment.sub {
        current.sub.insert(name.clone(), subs.clone());
    }
}

/// A sample as it must be stored in a chunk with unit `to`: numeric samples recorded with
/// another unit keep it by becoming full instances.
fn normalize_unit(sample: Sample, from: Option<&str>, to: Option<&str>) -> Sample {
    if !sample.is_numeric() || from == to || from.is_none() {
        return sample;
    }
    let instance = instance_of(&sample, from, "");
    Sample { value: SampleValue::Instance(Box::new(strip(instance))), ..sample }
}

fn strip(mut a: Attribute) -> Attribute {
    a.observed_at = None;
    a.created_at = None;
    a.modified_at = None;
    a.instance_id = None;
    a.dataset_id = None;
    a
}

fn write_chunk(
    tx: &Transaction,
    sid: i64,
    first_rec: i64,
    samples: &[Sample],
    unit: Option<&str>,
) -> rusqlite::Result<()> {
    if samples.is_empty() {
        tx.prepare_cached("DELETE FROM t_chunks WHERE sid = ?1 AND first_rec = ?2")?
            .execute(params![sid, first_rec])?;
        return Ok(());
    }
    let obs_min = samples.iter().filter_map(|s| s.observed).min();
    let obs_max = samples.iter().filter_map(|s| s.observed).max();
    let rec_min = samples.iter().map(|s| s.recorded).min().unwrap_or(0);
    let rec_max = samples.iter().map(|s| s.recorded).max().unwrap_or(0);
    let unobserved = samples.iter().filter(|s| s.observed.is_none()).count() as i64;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO t_chunks(sid, first_rec, n, obs_min, obs_max, rec_min, rec_max, unobserved, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        sid,
        first_rec,
        samples.len() as i64,
        obs_min,
        obs_max,
        rec_min,
        rec_max,
        unobserved,
        codec::encode(samples, unit)
    ])?;
    Ok(())
}

/// (temporal entity, attribute name id, datasetId).
type SeriesKey = (i64, i64, String);

/// The key of a chunk within its series: its first sample's origin, record then position
/// (one log record may hold more samples of a series than one chunk does).
fn chunk_key(o: Origin) -> i64 {
    (o.record << 20) | i64::from(o.index & 0xF_FFFF)
}

/// Small chunks a series may gather before they are merged into one.
const MERGE_AFTER: i64 = 8;

/// Moves up to `COMPACT_BATCH` log records into chunks. Each pass writes a new chunk per series
/// and never reads existing ones, so its cost follows the samples it moves; every
/// `MERGE_AFTER` passes a series' small chunks are merged. Returns how many records moved.
pub(crate) fn compact(tx: &Transaction) -> rusqlite::Result<usize> {
    let records: Vec<(i64, i64, Vec<u8>)> = tx
        .prepare_cached("SELECT rec, tid, body FROM t_log ORDER BY rec LIMIT ?1")?
        .query_map([COMPACT_BATCH as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let Some(last) = records.last().map(|r| r.0) else { return Ok(0) };
    // Per series: its new samples (with the unit they were written with), in log order.
    let mut series: HashMap<SeriesKey, Vec<(Sample, Option<String>)>> = HashMap::new();
    for (rec, tid, body) in &records {
        for item in decode_log(*rec, body).unwrap_or_default() {
            series.entry((*tid, item.attr, item.dataset)).or_default().push((item.sample, item.unit));
        }
    }
    for ((tid, attr, dataset), new) in series {
        tx.prepare_cached("INSERT OR IGNORE INTO t_series(tid, attr, dataset) VALUES (?1, ?2, ?3)")?
            .execute(params![tid, attr, dataset])?;
        let (sid, small): (i64, i64) = tx
            .prepare_cached("SELECT sid, small FROM t_series WHERE tid = ?1 AND attr = ?2 AND dataset = ?3")?
            .query_row(params![tid, attr, dataset], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let written = write_samples(tx, sid, new)?;
        let small = small + written.small;
        if small >= MERGE_AFTER {
            merge_small_chunks(tx, sid)?;
        }
        tx.prepare_cached("UPDATE t_series SET small = ?1 WHERE sid = ?2")?
            .execute(params![if small >= MERGE_AFTER { 0 } else { small }, sid])?;
    }
    tx.prepare_cached("DELETE FROM t_log WHERE rec <= ?1")?.execute([last])?;
    Ok(records.len())
}

/// How many chunks a write produced below the target size.
struct Written {
    small: i64,
}

/// Writes samples (in order) as new chunks of at most `CHUNK_SAMPLES`, each with the unit of
/// its first numeric sample.
fn write_samples(tx: &Transaction, sid: i64, samples: Vec<(Sample, Option<String>)>) -> rusqlite::Result<Written> {
    let mut written = Written { small: 0 };
    for part in samples.chunks(CHUNK_SAMPLES) {
        let unit = part.iter().find(|(s, _)| s.is_numeric()).and_then(|(_, u)| u.clone());
        let normalized: Vec<Sample> =
            part.iter().map(|(s, u)| normalize_unit(s.clone(), u.as_deref(), unit.as_deref())).collect();
        write_chunk(tx, sid, chunk_key(normalized[0].origin), &normalized, unit.as_deref())?;
        if normalized.len() < CHUNK_SAMPLES {
            written.small += 1;
        }
    }
    Ok(written)
}

/// Merges the chunks of a series that are below the target size into as few as possible.
fn merge_small_chunks(tx: &Transaction, sid: i64) -> rusqlite::Result<()> {
    let chunks: Vec<(i64, Vec<u8>)> = tx
        .prepare_cached("SELECT first_rec, data FROM t_chunks WHERE sid = ?1 AND n < ?2 ORDER BY first_rec")?
        .query_map(params![sid, CHUNK_SAMPLES as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if chunks.len() < 2 {
        return Ok(());
    }
    let mut samples = Vec::new();
    for (first_rec, data) in &chunks {
        if let Some(mut chunk) = Chunk::open(data) {
            let unit = chunk.unit.take();
            samples.extend(chunk.map(|s| (s, unit.clone())));
        }
        tx.prepare_cached("DELETE FROM t_chunks WHERE sid = ?1 AND first_rec = ?2")?
            .execute(params![sid, first_rec])?;
    }
    write_samples(tx, sid, samples)?;
    Ok(())
}

/// Removes history recorded before `before` (retention): whole chunks (a chunk holding a later
/// sample stays until all of it is old); the log is compacted into chunks before this runs.
pub(crate) fn prune(tx: &Transaction, before: i64) -> rusqlite::Result<usize> {
    let n = tx.prepare_cached("DELETE FROM t_chunks WHERE rec_max < ?1")?.execute([before])?;
    Ok(n)
}

// ---- queries ----

/// The attribute instance a sample stands for.
fn instance_of(sample: &Sample, unit: Option<&str>, dataset: &str) -> Attribute {
    let mut a = match &sample.value {
        SampleValue::Integer(i) => Attribute::property((*i).into()),
        SampleValue::Float(f) => {
            Attribute::property(serde_json::Number::from_f64(*f).map(Into::into).unwrap_or_default())
        }
        SampleValue::Instance(a) | SampleValue::Deleted(a) => (**a).clone(),
    };
    if sample.is_numeric() {
        a.unit_code = unit.map(str::to_string);
    }
    if matches!(sample.value, SampleValue::Deleted(_)) {
        a.deleted_at = Some(Timestamp::from_micros(sample.recorded));
    }
    a.observed_at = sample.observed.map(Timestamp::from_micros);
    a.created_at = Some(Timestamp::from_micros(sample.recorded));
    a.modified_at = Some(Timestamp::from_micros(sample.recorded));
    a.instance_id = Some(sample.origin.instance_id());
    a.dataset_id = (!dataset.is_empty()).then(|| dataset.to_string());
    a
}

/// A sample with the unit code of the chunk or log item it came from.
type UnitSample = (Sample, Option<Arc<str>>);

/// The samples of a temporal entity's attributes.
struct Loaded {
    /// (attribute IRI, datasetId) → samples, in no particular order.
    series: IndexMap<(Arc<str>, String), Vec<UnitSample>>,
}

fn storage(e: impl std::fmt::Display) -> NgsiError {
    NgsiError::internal(format!("storage: {e}"))
}

/// With `lastN`: per series, only the chunks that may hold one of the N latest instances.
/// Chunks are read from the latest bound down; once N distinct instants are known, a chunk
/// whose latest possible instant is below the N-th of them cannot contribute.
struct Latest {
    n: usize,
    property: TimeProperty,
    /// No time window: instances without observedAt are placed by when they were recorded.
    unwindowed: bool,
}

fn load_samples(
    conn: &Connection,
    tid: i64,
    attrs: &[String],
    window: Option<(i64, i64)>,
    by_observed: bool,
    latest: Option<&Latest>,
) -> Result<Loaded> {
    let mut series: IndexMap<(Arc<str>, String), Vec<UnitSample>> = IndexMap::new();
    let mut names: HashMap<i64, Arc<str>> = HashMap::new();
    let mut stmt = conn
        .prepare_cached("SELECT s.sid, n.id, n.iri, s.dataset FROM t_series s JOIN names n ON n.id = s.attr WHERE s.tid = ?1 ORDER BY s.sid")
        .map_err(storage)?;
    let rows: Vec<(i64, i64, String, String)> = stmt
        .query_map([tid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .map_err(storage)?
        .collect::<rusqlite::Result<_>>()
        .map_err(storage)?;
    let (lo, hi) = window.unwrap_or((i64::MIN, i64::MAX));
    for (sid, name_id, iri, dataset) in rows {
        if !attrs.is_empty() && !attrs.contains(&iri) {
            continue;
        }
        let iri: Arc<str> = names.entry(name_id).or_insert_with(|| iri.into()).clone();
        if let Some(latest) = latest {
            let slot = series.entry((iri, dataset)).or_default();
            load_latest(conn, sid, (lo, hi), by_observed, latest, slot)?;
            continue;
        }
        // Prune chunks by the time window on the column the query filters.
        let sql = if by_observed {
            "SELECT data FROM t_chunks WHERE sid = ?1 AND (obs_max IS NULL OR (obs_max >= ?2 AND obs_min < ?3)) ORDER BY first_rec"
        } else {
            "SELECT data FROM t_chunks WHERE sid = ?1 AND rec_max >= ?2 AND rec_min < ?3 ORDER BY first_rec"
        };
        let mut stmt = conn.prepare_cached(sql).map_err(storage)?;
        let mut chunks = stmt.query(params![sid, lo, hi]).map_err(storage)?;
        let slot = series.entry((iri, dataset)).or_default();
        while let Some(row) = chunks.next().map_err(storage)? {
            let data = row.get_ref(0).map_err(storage)?.as_blob().map_err(storage)?;
            if let Some(mut chunk) = Chunk::open(data) {
                let unit: Option<Arc<str>> = chunk.unit.take().map(Into::into);
                slot.extend(chunk.map(|s| (s, unit.clone())));
            }
        }
    }
    let mut stmt =
        conn.prepare_cached("SELECT l.rec, l.body FROM t_log l WHERE l.tid = ?1 ORDER BY l.rec").map_err(storage)?;
    let mut logs = stmt.query([tid]).map_err(storage)?;
    while let Some(row) = logs.next().map_err(storage)? {
        let rec: i64 = row.get(0).map_err(storage)?;
        let body = row.get_ref(1).map_err(storage)?.as_blob().map_err(storage)?;
        for item in decode_log(rec, body).unwrap_or_default() {
            let iri = match names.get(&item.attr) {
                Some(i) => i.clone(),
                None => {
                    let iri: String = conn
                        .prepare_cached("SELECT iri FROM names WHERE id = ?1")
                        .and_then(|mut s| s.query_row([item.attr], |r| r.get(0)))
                        .map_err(storage)?;
                    names.entry(item.attr).or_insert_with(|| iri.into()).clone()
                }
            };
            if !attrs.is_empty() && !attrs.iter().any(|a| **a == *iri) {
                continue;
            }
            series.entry((iri, item.dataset)).or_default().push((item.sample, item.unit.map(Into::into)));
        }
    }
    Ok(Loaded { series })
}

/// The chunks of one series that may hold its `latest.n` latest instances in the window.
fn load_latest(
    conn: &Connection,
    sid: i64,
    (lo, hi): (i64, i64),
    by_observed: bool,
    latest: &Latest,
    slot: &mut Vec<UnitSample>,
) -> Result<()> {
    // The latest instant a chunk can hold for the time property: observedAt, or when recorded
    // for its samples without observedAt; chunks with no bound are read first.
    let sql = if by_observed {
        "SELECT first_rec, CASE WHEN unobserved > 0 THEN max(ifnull(obs_max, rec_max), rec_max) ELSE obs_max END AS bound
         FROM t_chunks WHERE sid = ?1 AND (obs_max IS NULL OR (obs_max >= ?2 AND obs_min < ?3))
         ORDER BY bound IS NULL DESC, bound DESC"
    } else {
        "SELECT first_rec, rec_max AS bound FROM t_chunks WHERE sid = ?1 AND rec_max >= ?2 AND rec_min < ?3
         ORDER BY bound DESC"
    };
    let chunks: Vec<(i64, Option<i64>)> = conn
        .prepare_cached(sql)
        .map_err(storage)?
        .query_map(params![sid, lo, hi], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(storage)?
        .collect::<rusqlite::Result<_>>()
        .map_err(storage)?;
    // The N latest distinct instants seen so far (smallest first out).
    let mut top: std::collections::BTreeSet<i64> = std::collections::BTreeSet::new();
    let mut data_of =
        conn.prepare_cached("SELECT data FROM t_chunks WHERE sid = ?1 AND first_rec = ?2").map_err(storage)?;
    for (first_rec, bound) in chunks {
        if let (Some(bound), Some(&nth)) = (bound, top.first())
            && top.len() >= latest.n
            && bound < nth
        {
            break;
        }
        let data: Vec<u8> = data_of.query_row(params![sid, first_rec], |r| r.get(0)).map_err(storage)?;
        let Some(mut chunk) = Chunk::open(&data) else { continue };
        let unit: Option<Arc<str>> = chunk.unit.take().map(Into::into);
        for s in chunk {
            let t = match time_of(&s, latest.property) {
                Some(t) => Some(t),
                None if latest.unwindowed && latest.property == TimeProperty::ObservedAt => Some(s.recorded),
                None => None,
            };
            if let Some(t) = t.filter(|t| *t >= lo && *t < hi) {
                top.insert(t);
                if top.len() > latest.n {
                    top.pop_first();
                }
            }
            slot.push((s, unit.clone()));
        }
    }
    Ok(())
}

/// The instant a sample is filtered and ordered by, for the query's time property.
fn time_of(sample: &Sample, property: TimeProperty) -> Option<i64> {
    match property {
        TimeProperty::ObservedAt => sample.observed,
        TimeProperty::CreatedAt | TimeProperty::ModifiedAt => Some(sample.recorded),
        TimeProperty::DeletedAt => matches!(sample.value, SampleValue::Deleted(_)).then_some(sample.recorded),
    }
}

/// One instance inside the query's window: (instant of the time property, sample, unit,
/// datasetId). Shared per series: a year of samples must not mean a year of string copies.
type Timed = (i64, Sample, Option<Arc<str>>, Arc<str>);

/// The samples inside the window, per attribute (deletions included: they are history too);
/// instances without the time property are outside any window on it.
fn windowed(loaded: Loaded, q: &HistoryQuery) -> IndexMap<Arc<str>, Vec<Timed>> {
    let property = q.time.property;
    let mut by_attr: IndexMap<Arc<str>, Vec<Timed>> = IndexMap::new();
    for ((iri, dataset), samples) in loaded.series {
        let wanted = q
            .dataset_ids
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|d| if dataset.is_empty() { d == "@none" } else { *d == dataset }));
        if !wanted {
            continue;
        }
        let slot = by_attr.entry(iri).or_default();
        let dataset: Arc<str> = dataset.into();
        slot.reserve(samples.len());
        for (s, unit) in samples {
            let t = match time_of(&s, property) {
                Some(t) => t,
                None if q.time.rel.is_none() && property == TimeProperty::ObservedAt => s.recorded,
                None => continue,
            };
            if q.time.rel.is_some_and(|r| !r.contains(t)) {
                continue;
            }
            slot.push((t, s, unit, dataset.clone()));
        }
    }
    for samples in by_attr.values_mut() {
        // An instance is identified by its observedAt within a series: a later write of the
        // same instant replaces the earlier one.
        if property == TimeProperty::ObservedAt {
            // Compacted series mostly come in order already: checking is far cheaper than
            // sorting (sorting was a sixth of a year's aggregation, perf).
            if !samples.is_sorted_by(|a, b| (&a.3, a.0, a.1.origin) <= (&b.3, b.0, b.1.origin)) {
                samples.sort_by(|a, b| (&a.3, a.0, a.1.origin).cmp(&(&b.3, b.0, b.1.origin)));
            }
            samples.dedup_by(|later, earlier| {
                let same = later.3 == earlier.3 && later.0 == earlier.0;
                if same {
                    std::mem::swap(later, earlier);
                }
                same
            });
        }
    }
    by_attr.retain(|_, v| !v.is_empty());
    by_attr
}

/// The entity with every windowed instance: q, scopeQ and geo-queries on history hold when
/// some instance in the window satisfies each term (§5.7.4.4).
fn windowed_entity(base: &Entity, windowed: &IndexMap<Arc<str>, Vec<Timed>>) -> Entity {
    let mut e = base.clone();
    for (iri, samples) in windowed {
        let instances = samples.iter().map(|(_, s, unit, dataset)| instance_of(s, unit.as_deref(), dataset)).collect();
        e.attrs.insert(iri.to_string(), instances);
    }
    e
}

/// Runs a temporal query for one tenant.
pub(crate) fn query(conn: &Connection, tenant: i64, q: &HistoryQuery) -> Result<HistoryPage> {
    let order = match q.select.order_by_id {
        None => "tid",
        Some(hanbat_store::Order::Ascending) => "id",
        Some(hanbat_store::Order::Descending) => "id DESC",
    };
    let sql = format!(
        "SELECT tid, id, types, scopes, created, modified, deleted FROM t_entities WHERE tenant = ?1 ORDER BY {order}"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(storage)?;
    let mut rows = stmt.query([tenant]).map_err(storage)?;
    let window = q.time.rel.map(|r| r.bounds());
    let mut page = Vec::new();
    let mut matched = 0u64;
    let wanted = q.select.offset.saturating_add(q.select.limit);
    // Instances left in this response (§6.3.10): once spent, later entities are listed with
    // empty attributes (their instances are for the next page).
    let mut budget = q.max_instances;
    // The selector part is decided on the row alone; q, scope, geo and `attrs` as a filter need
    // the windowed instances.
    let light_query = hanbat_store::EntityQuery { entities: q.select.entities.clone(), ..Default::default() };
    let needs_instances = q.select.q.is_some()
        || q.select.geo.is_some()
        || q.select.scope.is_some()
        || !q.select.with_any_attr.is_empty();
    while let Some(row) = rows.next().map_err(storage)? {
        let tid: i64 = row.get(0).map_err(storage)?;
        let mut entity = Entity::new(row.get::<_, String>(1).map_err(storage)?, Vec::new());
        entity.types = serde_json::from_str(&row.get::<_, String>(2).map_err(storage)?).unwrap_or_default();
        entity.scopes = serde_json::from_str(&row.get::<_, String>(3).map_err(storage)?).unwrap_or_default();
        entity.created_at = Some(Timestamp::from_micros(row.get(4).map_err(storage)?));
        entity.modified_at = Some(Timestamp::from_micros(row.get(5).map_err(storage)?));
        entity.deleted_at = row.get::<_, Option<i64>>(6).map_err(storage)?.map(Timestamp::from_micros);
        if !light_query.matches(&entity) {
            continue;
        }
        let attrs = if needs_instances { &[][..] } else { &q.attrs[..] };
        // lastN reads only the latest chunks, unless q and friends must see the whole window.
        let latest = q.time.last_n.filter(|_| !needs_instances).map(|n| Latest {
            n,
            property: q.time.property,
            unwindowed: q.time.rel.is_none(),
        });
        let by_observed = q.time.property == TimeProperty::ObservedAt;
        let loaded = load_samples(conn, tid, attrs, window, by_observed, latest.as_ref())?;
        let mut instances = windowed(loaded, q);
        if needs_instances && !q.select.matches(&windowed_entity(&entity, &instances)) {
            continue;
        }
        if !q.attrs.is_empty() {
            instances.retain(|iri, _| q.attrs.iter().any(|a| **a == **iri));
        }
        if q.skip_empty && q.time.rel.is_some() && instances.is_empty() {
            continue;
        }
        matched += 1;
        if matched as usize > q.select.offset && page.len() < q.select.limit {
            page.push(build(entity, instances, q, &mut budget));
        }
        if !q.select.count && matched as usize >= wanted {
            break;
        }
    }
    Ok(HistoryPage { entities: page, count: q.select.count.then_some(matched) })
}

/// Orders, cuts (`lastN`, then the page of instances) and shapes the windowed instances into
/// instances or aggregates.
fn build(
    entity: Entity,
    mut by_attr: IndexMap<Arc<str>, Vec<Timed>>,
    q: &HistoryQuery,
    budget: &mut usize,
) -> TemporalEntity {
    let mut out = TemporalEntity { entity, ..TemporalEntity::default() };
    for samples in by_attr.values_mut() {
        if !samples.is_sorted_by_key(|(t, s, _, _)| (*t, s.origin)) {
            samples.sort_by_key(|(t, s, _, _)| (*t, s.origin));
        }
        if let Some(n) = q.time.last_n
            && samples.len() > n
        {
            samples.drain(..samples.len() - n);
        }
    }
    if let Some(aggr) = &q.aggregation {
        let (start, end) = q.time.rel.map(|r| r.bounds()).unwrap_or((i64::MIN, i64::MAX));
        let start = (start != i64::MIN).then_some(start);
        let end = (end != i64::MAX).then_some(end);
        let core = hanbat_model::jsonld::core_context();
        for (iri, samples) in by_attr {
            let mut periods = Periods::new(&aggr.methods, aggr.period, start, end);
            let mut kind = "Property";
            for (t, s, unit, dataset) in &samples {
                let acc = periods.at(*t);
                match s.number() {
                    Some(x) => acc.add_number(x),
                    None => {
                        let inst = instance_of(s, unit.as_deref(), dataset);
                        kind = inst.value.type_name();
                        acc.add_value(&hanbat_model::render::key_value(&inst, &core, &Default::default()));
                    }
                }
            }
            let last = samples.last().map(|(t, ..)| *t);
            out.aggregated.insert(iri.to_string(), AggregatedAttr { kind, methods: periods.results(last) });
        }
        return out;
    }
    // The page of instances (§6.3.10): over the union of the entity's attributes, in traversal
    // order — most recent first with lastN, oldest first otherwise.
    let total: usize = by_attr.values().map(Vec::len).sum();
    if total > *budget {
        let descending = q.time.last_n.is_some();
        let mut all: Vec<(i64, Origin)> = by_attr.values().flatten().map(|(t, s, ..)| (*t, s.origin)).collect();
        all.sort_unstable();
        if descending {
            all.reverse();
        }
        let kept: std::collections::HashSet<Origin> = all.iter().take(*budget).map(|(_, o)| *o).collect();
        for samples in by_attr.values_mut() {
            samples.retain(|(_, s, ..)| kept.contains(&s.origin));
        }
        let returned: Vec<i64> = all.iter().take(*budget).map(|(t, _)| *t).collect();
        *budget = 0;
        out.page = Some(hanbat_store::InstancePage {
            first: returned.first().copied().unwrap_or_default(),
            last: returned.last().copied().unwrap_or_default(),
            descending,
        });
    }
    *budget = budget.saturating_sub(total);
    // An attribute cut away entirely stays, empty: the next page has its instances.
    for (iri, samples) in by_attr {
        let instances =
            samples.into_iter().map(|(_, s, unit, dataset)| instance_of(&s, unit.as_deref(), &dataset)).collect();
        out.entity.attrs.insert(iri.to_string(), instances);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_records_give_each_sample_its_origin() {
        let items: Vec<LogItem> = (0..3)
            .map(|i| LogItem {
                attr: 7,
                dataset: String::new(),
                unit: Some("CEL".into()),
                sample: Sample::from_instance(
                    Origin { record: 0, index: 0 },
                    1000 + i,
                    &Attribute::property((20 + i).into()),
                ),
            })
            .collect();
        let decoded = decode_log(42, &encode_log(&items)).unwrap();
        let origins: Vec<Origin> = decoded.iter().map(|i| i.sample.origin).collect();
        assert_eq!(origins, (0..3).map(|index| Origin { record: 42, index }).collect::<Vec<_>>());
        assert_eq!(decoded[2].sample.value, SampleValue::Integer(22));
    }
}
