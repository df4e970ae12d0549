//! History on SQLite: recording (inside the writer's transaction), compaction of the log into
//! chunks, edits of the temporal API, and temporal queries.
//!
//! A log record holds what one change wrote to one entity: items (attribute name id, datasetId,
//! one sample in the chunk codec). The record's rowid is the `record` half of each sample's
//! origin, so instance ids need no extra index and survive compaction.

use crate::writer::Ids;
use hanbat_model::{Attribute, Entity, NgsiError, Result, Timestamp};
use hanbat_store::history::{Series, UnitSample, expired, instance_of, patch_sample, recorded_instances};
use hanbat_store::{Change, ChangeKind, HistoryOp, HistoryOutcome, HistoryPage, HistoryQuery, HistoryScan};
use hanbat_temporal::codec::{self, Chunk};
use hanbat_temporal::{Origin, Sample, SampleValue, TimeProperty};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::collections::HashMap;
use std::sync::Arc;

/// Samples per chunk: a day of minute data; small enough that appending re-encodes little.
const CHUNK_SAMPLES: usize = 1440;
/// A pass compacts at most this many log records, or records of this many bytes, or a quarter
/// of the log if that is more. A pass holds the writer, so it is kept short (passes of 20,000
/// records of a wide ingestion held writes for seconds); a backlog is worked off by passes in a
/// row, and a growing one by larger passes, so that the log stays bounded when writes come
/// faster than compaction.
const COMPACT_BATCH: usize = 4_000;
const COMPACT_BYTES: usize = 8 << 20;
const COMPACT_SHARE: usize = 4;

/// One sample of a log record.
struct LogItem {
    attr: i64,
    dataset: String,
    unit: Option<String>,
    sample: Sample,
}

/// A removed item of a log record. Items are numbered by their position (the `index` of their
/// origin, hence of their instance id): removing one must not renumber those after it, so it
/// leaves a hole, which readers skip. Name ids start at 1.
const HOLE: i64 = 0;

fn hole() -> LogItem {
    let sample =
        Sample { origin: Origin { record: 0, index: 0 }, recorded: 0, observed: None, value: SampleValue::Integer(0) };
    LogItem { attr: HOLE, dataset: String::new(), unit: None, sample }
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

/// Decodes a log record without its holes; samples get their origin from `rec`. `None` if corrupt.
fn decode_log(rec: i64, body: &[u8]) -> Option<Vec<LogItem>> {
    decode_log_with_holes(rec, body).map(|items| items.into_iter().filter(|i| i.attr != HOLE).collect())
}

/// Decodes a log record, holes included (to rewrite it).
fn decode_log_with_holes(rec: i64, body: &[u8]) -> Option<Vec<LogItem>> {
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

/// Records a committed change: the instances it created or updated, and deletions.
pub(crate) fn record_change(tx: &Transaction, ids: &mut Ids, tenant: i64, change: &Change) -> rusqlite::Result<()> {
    let at = change.at.micros();
    let deleted = (change.kind == ChangeKind::Deleted).then_some(at);
    let tid = upsert_entity(tx, tenant, &change.entity, at, deleted)?;
    let mut items = Vec::new();
    for r in recorded_instances(change) {
        items.push(LogItem { attr: ids.name(tx, &r.name)?, dataset: r.dataset, unit: r.unit, sample: r.sample });
    }
    append_log(tx, tid, &items)
}

fn temporal_tid(tx: &Connection, tenant: i64, id: &str) -> rusqlite::Result<Option<i64>> {
    tx.prepare_cached("SELECT tid FROM t_entities WHERE tenant = ?1 AND id = ?2")?
        .query_row(params![tenant, id], |r| r.get(0))
        .optional()
}

fn missing(id: &str) -> NgsiError {
    NgsiError::not_found(format!("entity '{id}' has no temporal representation"))
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
        let Some(items) = decode_log_with_holes(rec, &body) else { continue };
        let before = dropped;
        let kept: Vec<LogItem> = items
            .into_iter()
            .map(|i| {
                if i.attr == HOLE || keep(&i) {
                    return i;
                }
                dropped += 1;
                hole()
            })
            .collect();
        if dropped != before {
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
    let edit =
        |sample: &Sample, unit: Option<&str>| fragment.as_ref().map(|fragment| patch_sample(sample, unit, fragment));
    // In the log?
    let body: Option<Vec<u8>> = tx
        .prepare_cached("SELECT body FROM t_log WHERE rec = ?1 AND tid = ?2")?
        .query_row(params![origin.record, tid], |r| r.get(0))
        .optional()?;
    if let Some(body) = body
        && let Some(mut items) = decode_log_with_holes(origin.record, &body)
        && let Some(pos) = items.iter().position(|i| i.sample.origin == origin && i.attr == attr_id)
    {
        match edit(&items[pos].sample, items[pos].unit.as_deref()) {
            Some(s) => items[pos].sample = s,
            None => {
                items[pos] = hole();
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
    tx.prepare_cached(
        "INSERT OR REPLACE INTO t_chunks(sid, first_rec, n, obs_min, obs_max, rec_min, rec_max, data, unobserved)
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
        codec::encode(samples, unit),
        samples.iter().filter(|s| s.observed.is_none()).count() as i64,
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

/// Moves the oldest log records (as many as the constants above allow) into chunks. Each pass
/// writes a new chunk per series and never reads existing ones, so its cost follows the
/// samples it moves; every `MERGE_AFTER` passes a series' small chunks are merged. Returns
/// whether the log holds more records than the pass took.
pub(crate) fn compact(tx: &Transaction) -> rusqlite::Result<bool> {
    let (first, last): (Option<i64>, Option<i64>) =
        tx.query_row("SELECT min(rec), max(rec) FROM t_log", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let logged = match (first, last) {
        (Some(first), Some(last)) => usize::try_from(last - first + 1).unwrap_or(usize::MAX),
        _ => return Ok(false),
    };
    let scale = (logged / COMPACT_SHARE / COMPACT_BATCH).max(1);
    let (max_records, max_bytes) = (COMPACT_BATCH * scale, COMPACT_BYTES * scale);
    let mut records: Vec<(i64, i64, Vec<u8>)> = Vec::new();
    let mut bytes = 0;
    let mut backlog = false;
    {
        let mut stmt = tx.prepare_cached("SELECT rec, tid, body FROM t_log ORDER BY rec")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            if records.len() >= max_records || bytes >= max_bytes {
                backlog = true;
                break;
            }
            let body: Vec<u8> = row.get(2)?;
            bytes += body.len();
            records.push((row.get(0)?, row.get(1)?, body));
        }
    }
    let Some(last) = records.last().map(|r| r.0) else { return Ok(false) };
    // Per series: its new samples (with the unit they were written with), in log order.
    let mut series: HashMap<SeriesKey, Vec<(Sample, Option<String>)>> = HashMap::new();
    for (rec, tid, body) in &records {
        for item in decode_log(*rec, body).unwrap_or_default() {
            series.entry((*tid, item.attr, item.dataset)).or_default().push((item.sample, item.unit));
        }
    }
    for ((tid, attr, dataset), new) in series {
        // One statement finds or creates the series and counts the small chunk this pass adds
        // (only the last chunk of a pass can be small): a pass over many new entities, each
        // with series of a sample or two, is mostly this bookkeeping.
        let adds_small = i64::from(new.len() % CHUNK_SAMPLES != 0);
        let (sid, small): (i64, i64) = tx
            .prepare_cached(
                "INSERT INTO t_series(tid, attr, dataset, small) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(tid, attr, dataset) DO UPDATE SET small = small + excluded.small
                 RETURNING sid, small",
            )?
            .query_row(params![tid, attr, dataset, adds_small], |r| Ok((r.get(0)?, r.get(1)?)))?;
        write_samples(tx, sid, new)?;
        if small >= MERGE_AFTER {
            merge_small_chunks(tx, sid)?;
            tx.prepare_cached("UPDATE t_series SET small = 0 WHERE sid = ?1")?.execute([sid])?;
        }
    }
    tx.prepare_cached("DELETE FROM t_log WHERE rec <= ?1")?.execute([last])?;
    Ok(backlog)
}

/// Writes samples (in order) as new chunks of at most `CHUNK_SAMPLES`, each with the unit of
/// its first numeric sample.
fn write_samples(tx: &Transaction, sid: i64, samples: Vec<(Sample, Option<String>)>) -> rusqlite::Result<()> {
    for part in samples.chunks(CHUNK_SAMPLES) {
        let unit = part.iter().find(|(s, _)| s.is_numeric()).and_then(|(_, u)| u.clone());
        let normalized: Vec<Sample> =
            part.iter().map(|(s, u)| normalize_unit(s.clone(), u.as_deref(), unit.as_deref())).collect();
        write_chunk(tx, sid, chunk_key(normalized[0].origin), &normalized, unit.as_deref())?;
    }
    Ok(())
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

/// Removes history recorded before `before` (retention): whole chunks, and log records.
pub(crate) fn prune(tx: &Transaction, before: i64) -> rusqlite::Result<usize> {
    let n = tx.prepare_cached("DELETE FROM t_chunks WHERE rec_max < ?1")?.execute([before])?;
    Ok(n)
}

// ---- queries ----

fn storage(e: impl std::fmt::Display) -> NgsiError {
    NgsiError::internal(format!("storage: {e}"))
}

/// Whether the instants loaded so far (`newest`) already hold the `n` latest distinct ones of a
/// series whose remaining chunks end at `bound` at the latest: then those chunks cannot change a
/// `lastN` answer. Chunks come newest first, and an instant is one instance (§5.7.4.4), so a
/// repeated instant counts once.
fn holds_last(newest: &mut Vec<i64>, bound: i64, n: usize) -> bool {
    newest.sort_unstable_by(|a, b| b.cmp(a));
    newest.dedup();
    newest.truncate(n);
    newest.len() == n && newest.last().is_some_and(|t| *t > bound)
}

/// Appends a chunk's samples, each with the chunk's unit.
fn add_chunk(slot: &mut Vec<UnitSample>, data: &[u8]) {
    if let Some(mut chunk) = Chunk::open(data) {
        let unit: Option<Arc<str>> = chunk.unit.take().map(Into::into);
        slot.extend(chunk.map(|s| (s, unit.clone())));
    }
}

fn load_samples(
    conn: &Connection,
    tid: i64,
    attrs: &[String],
    window: Option<(i64, i64)>,
    by_observed: bool,
    last_n: Option<usize>,
) -> Result<Series> {
    let mut series = Series::new();
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
        let slot = series.entry((iri, dataset)).or_default();
        // Chunks pruned by the time window on the column the query filters.
        let Some(n) = last_n else {
            let sql = if by_observed {
                "SELECT data FROM t_chunks WHERE sid = ?1 AND (obs_max IS NULL OR (obs_max >= ?2 AND obs_min < ?3)) ORDER BY first_rec"
            } else {
                "SELECT data FROM t_chunks WHERE sid = ?1 AND rec_max >= ?2 AND rec_min < ?3 ORDER BY first_rec"
            };
            let mut stmt = conn.prepare_cached(sql).map_err(storage)?;
            let mut chunks = stmt.query(params![sid, lo, hi]).map_err(storage)?;
            while let Some(row) = chunks.next().map_err(storage)? {
                add_chunk(slot, row.get_ref(0).map_err(storage)?.as_blob().map_err(storage)?);
            }
            continue;
        };
        // `lastN`: newest chunks first, read one by one until older ones cannot matter. Chunks
        // without a bound (samples lacking observedAt, or not counted) come first and are always
        // read. Sorting keys only: a sort over the data would copy every chunk.
        let sql = if by_observed {
            "SELECT first_rec, CASE WHEN unobserved = 0 THEN obs_max END AS bound FROM t_chunks
             WHERE sid = ?1 AND (obs_max IS NULL OR (obs_max >= ?2 AND obs_min < ?3))
             ORDER BY bound IS NULL DESC, bound DESC"
        } else {
            "SELECT first_rec, rec_max FROM t_chunks WHERE sid = ?1 AND rec_max >= ?2 AND rec_min < ?3 ORDER BY rec_max DESC"
        };
        let keys: Vec<(i64, Option<i64>)> = conn
            .prepare_cached(sql)
            .map_err(storage)?
            .query_map(params![sid, lo, hi], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(storage)?
            .collect::<rusqlite::Result<_>>()
            .map_err(storage)?;
        let mut chunk_data =
            conn.prepare_cached("SELECT data FROM t_chunks WHERE sid = ?1 AND first_rec = ?2").map_err(storage)?;
        let mut newest: Vec<i64> = Vec::new();
        let now = Timestamp::now();
        for (first_rec, bound) in keys {
            if bound.is_some_and(|bound| holds_last(&mut newest, bound, n)) {
                break;
            }
            let mut rows = chunk_data.query(params![sid, first_rec]).map_err(storage)?;
            if let Some(row) = rows.next().map_err(storage)? {
                let from = slot.len();
                add_chunk(slot, row.get_ref(0).map_err(storage)?.as_blob().map_err(storage)?);
                let time = |s: &Sample| if by_observed { s.observed } else { Some(s.recorded) };
                // Expired instances are dropped later: they must not count among the latest.
                newest.extend(slot[from..].iter().filter(|(s, _)| !expired(s, &now)).filter_map(|(s, _)| time(s)));
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
    Ok(series)
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
    let mut scan = HistoryScan::new(q);
    let by_observed = q.time.property == TimeProperty::ObservedAt;
    while let Some(row) = rows.next().map_err(storage)? {
        let tid: i64 = row.get(0).map_err(storage)?;
        let mut entity = Entity::new(row.get::<_, String>(1).map_err(storage)?, Vec::new());
        entity.types = serde_json::from_str(&row.get::<_, String>(2).map_err(storage)?).unwrap_or_default();
        entity.scopes = serde_json::from_str(&row.get::<_, String>(3).map_err(storage)?).unwrap_or_default();
        entity.created_at = Some(Timestamp::from_micros(row.get(4).map_err(storage)?));
        entity.modified_at = Some(Timestamp::from_micros(row.get(5).map_err(storage)?));
        entity.deleted_at = row.get::<_, Option<i64>>(6).map_err(storage)?.map(Timestamp::from_micros);
        if !scan.selects(&entity) {
            continue;
        }
        let series = load_samples(conn, tid, scan.attrs_to_load(), scan.window(), by_observed, scan.last_n())?;
        if !scan.offer(entity, series) {
            break;
        }
    }
    Ok(scan.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_n_stops_once_older_chunks_cannot_matter() {
        // Two distinct instants above a bound of 5: the 2 latest are known.
        assert!(holds_last(&mut vec![9, 7, 7, 3], 5, 2));
        // The same instant twice is one instance: only one is above the bound.
        assert!(!holds_last(&mut vec![9, 9, 3], 5, 2));
        // An instant equal to the bound may be tied by an older chunk's.
        assert!(!holds_last(&mut vec![9, 5], 5, 2));
        assert!(!holds_last(&mut Vec::new(), 5, 1));
    }

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
