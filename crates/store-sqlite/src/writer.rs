//! The single writer thread and its group commit.
//!
//! All writes go through one thread that owns the only write connection. It takes the first
//! waiting job, then every job queued behind it (up to a bound), runs them all in one
//! transaction and acknowledges them after the commit. Under load many small writes share one
//! fsync; with a single client a write costs one commit, as before.

use crate::index::Indexed;
use crate::{codec, history, index, schema};
use hanbat_model::{NgsiError, Result, Timestamp};
use hanbat_store::{Applied, Change, ChangeKind, DocKind, HistoryOp, HistoryOutcome, WriteOp, ops};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};

/// At most this many ops go into one transaction, so one commit never holds readers' latest
/// view back for long.
const MAX_OPS_PER_COMMIT: usize = 20_000;

pub(crate) enum Job {
    Write {
        tenant: String,
        ops: Vec<WriteOp>,
        reply: oneshot::Sender<Result<Vec<Result<Applied>>>>,
    },
    PutDoc {
        tenant: String,
        kind: DocKind,
        id: String,
        body: String,
        reply: oneshot::Sender<Result<()>>,
    },
    DeleteDoc {
        tenant: String,
        kind: DocKind,
        id: String,
        reply: oneshot::Sender<Result<bool>>,
    },
    /// Expire what is due at `at` (§4.22).
    Expire {
        at: Timestamp,
        reply: oneshot::Sender<Result<Vec<Change>>>,
    },
    History {
        tenant: String,
        op: Box<HistoryOp>,
        reply: oneshot::Sender<Result<HistoryOutcome>>,
    },
    /// Moves history log records into chunks; `older_than` also prunes history recorded
    /// before that instant (retention). Answers whether the log holds more to compact.
    Maintain {
        older_than: Option<i64>,
        reply: oneshot::Sender<bool>,
    },
}

impl Job {
    fn op_count(&self) -> usize {
        match self {
            Job::Write { ops, .. } => ops.len().max(1),
            _ => 1,
        }
    }
}

/// A job's outcome, held until the commit decides whether it stands.
enum Done {
    Write(oneshot::Sender<Result<Vec<Result<Applied>>>>, Vec<Result<Applied>>),
    PutDoc(oneshot::Sender<Result<()>>),
    DeleteDoc(oneshot::Sender<Result<bool>>, bool),
    Expire(oneshot::Sender<Result<Vec<Change>>>, Vec<Change>),
    History(oneshot::Sender<Result<HistoryOutcome>>, Result<HistoryOutcome>),
    Maintained(oneshot::Sender<bool>, bool),
}

impl Done {
    fn acknowledge(self) {
        // A dropped receiver means the client went away; the write stands regardless.
        match self {
            Done::Write(reply, results) => drop(reply.send(Ok(results))),
            Done::PutDoc(reply) => drop(reply.send(Ok(()))),
            Done::DeleteDoc(reply, existed) => drop(reply.send(Ok(existed))),
            Done::Expire(reply, changes) => drop(reply.send(Ok(changes))),
            Done::History(reply, outcome) => drop(reply.send(outcome)),
            Done::Maintained(reply, backlog) => drop(reply.send(backlog)),
        }
    }

    fn fail(self, err: NgsiError) {
        match self {
            Done::Write(reply, _) => drop(reply.send(Err(err))),
            Done::PutDoc(reply) => drop(reply.send(Err(err))),
            Done::DeleteDoc(reply, _) => drop(reply.send(Err(err))),
            Done::Expire(reply, _) => drop(reply.send(Err(err))),
            Done::History(reply, _) => drop(reply.send(Err(err))),
            // The pass is rolled back: the next one retries after the usual pause.
            Done::Maintained(reply, _) => drop(reply.send(false)),
        }
    }
}

/// Interned ids of tenants and names, valid for committed rows only: cleared when a commit fails.
#[derive(Default)]
pub(crate) struct Ids {
    tenants: HashMap<String, i64>,
    names: HashMap<String, i64>,
}

impl Ids {
    fn tenant(&mut self, tx: &Transaction, name: &str) -> rusqlite::Result<i64> {
        if let Some(id) = self.tenants.get(name) {
            return Ok(*id);
        }
        tx.prepare_cached("INSERT OR IGNORE INTO tenants(name) VALUES (?1)")?.execute([name])?;
        let id = tx.prepare_cached("SELECT id FROM tenants WHERE name = ?1")?.query_row([name], |r| r.get(0))?;
        self.tenants.insert(name.to_string(), id);
        Ok(id)
    }

    pub(crate) fn name(&mut self, tx: &Transaction, iri: &str) -> rusqlite::Result<i64> {
        if let Some(id) = self.names.get(iri) {
            return Ok(*id);
        }
        tx.prepare_cached("INSERT OR IGNORE INTO names(iri) VALUES (?1)")?.execute([iri])?;
        let id = tx.prepare_cached("SELECT id FROM names WHERE iri = ?1")?.query_row([iri], |r| r.get(0))?;
        self.names.insert(iri.to_string(), id);
        Ok(id)
    }
}

pub(crate) fn run(mut conn: Connection, mut rx: mpsc::Receiver<Job>) {
    let mut ids = Ids::default();
    while let Some(first) = rx.blocking_recv() {
        let mut ops = first.op_count();
        let mut jobs = vec![first];
        while ops < MAX_OPS_PER_COMMIT {
            match rx.try_recv() {
                Ok(job) => {
                    ops += job.op_count();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        commit_group(&mut conn, &mut ids, jobs);
    }
}

fn commit_group(conn: &mut Connection, ids: &mut Ids, jobs: Vec<Job>) {
    let storage_error = |e: rusqlite::Error| NgsiError::internal(format!("storage: {e}"));
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            let err = storage_error(e);
            jobs.into_iter().for_each(|j| fail_job(j, err.clone()));
            return;
        }
    };
    let now = Timestamp::now();
    let mut counts = CountDeltas::default();
    let mut done = Vec::with_capacity(jobs.len());
    let mut failure = None;
    for job in jobs {
        if failure.is_some() {
            fail_job(job, NgsiError::internal("storage: an earlier write in the same commit failed"));
            continue;
        }
        match execute(&tx, ids, &mut counts, job, &now) {
            Ok(d) => done.push(d),
            Err((d, e)) => {
                done.push(d);
                failure = Some(storage_error(e));
            }
        }
    }
    let committed = match failure {
        Some(err) => Err(err),
        None => counts.flush(&tx).and_then(|()| tx.commit()).map_err(storage_error),
    };
    match committed {
        Ok(()) => done.into_iter().for_each(Done::acknowledge),
        Err(err) => {
            tracing::error!(%err, "commit failed; the group is rolled back");
            *ids = Ids::default();
            done.into_iter().for_each(|d| d.fail(err.clone()));
        }
    }
}

fn fail_job(job: Job, err: NgsiError) {
    match job {
        Job::Write { reply, .. } => drop(reply.send(Err(err))),
        Job::PutDoc { reply, .. } => drop(reply.send(Err(err))),
        Job::DeleteDoc { reply, .. } => drop(reply.send(Err(err))),
        Job::Expire { reply, .. } => drop(reply.send(Err(err))),
        Job::History { reply, .. } => drop(reply.send(Err(err))),
        Job::Maintain { reply, .. } => drop(reply.send(false)),
    }
}

type JobResult = std::result::Result<Done, (Done, rusqlite::Error)>;

fn execute(tx: &Transaction, ids: &mut Ids, counts: &mut CountDeltas, job: Job, now: &Timestamp) -> JobResult {
    match job {
        Job::Write { tenant, ops, reply } => {
            let mut results = Vec::with_capacity(ops.len());
            for op in ops {
                match write_one(tx, ids, counts, &tenant, op, now) {
                    Ok(r) => results.push(r),
                    Err(e) => return Err((Done::Write(reply, Vec::new()), e)),
                }
            }
            Ok(Done::Write(reply, results))
        }
        Job::PutDoc { tenant, kind, id, body, reply } => {
            let r = ids.tenant(tx, &tenant).and_then(|t| {
                tx.prepare_cached("INSERT OR REPLACE INTO docs(tenant, kind, id, body) VALUES (?1, ?2, ?3, ?4)")?
                    .execute(params![t, kind.as_str(), id, body])
            });
            match r {
                Ok(_) => Ok(Done::PutDoc(reply)),
                Err(e) => Err((Done::PutDoc(reply), e)),
            }
        }
        Job::Expire { at, reply } => match expire_due(tx, ids, counts, &at) {
            Ok(changes) => Ok(Done::Expire(reply, changes)),
            Err(e) => Err((Done::Expire(reply, Vec::new()), e)),
        },
        Job::History { tenant, op, reply } => {
            match ids.tenant(tx, &tenant).and_then(|t| history::apply_op(tx, ids, t, *op)) {
                Ok(outcome) => Ok(Done::History(reply, outcome)),
                Err(e) => Err((Done::History(reply, Err(NgsiError::internal("storage"))), e)),
            }
        }
        Job::Maintain { older_than, reply } => {
            // Compaction first: what it moves out of the log is then pruned in the same pass.
            let maintained = schema::free_pages(tx).and_then(|free_before| {
                let backlog = history::compact(tx)?;
                if let Some(t) = older_than {
                    history::prune(tx, t)?;
                }
                schema::release_free_pages(tx, free_before)?;
                Ok(backlog)
            });
            match maintained {
                Ok(backlog) => Ok(Done::Maintained(reply, backlog)),
                Err(e) => Err((Done::Maintained(reply, false), e)),
            }
        }
        Job::DeleteDoc { tenant, kind, id, reply } => {
            let r = ids.tenant(tx, &tenant).and_then(|t| {
                tx.prepare_cached("DELETE FROM docs WHERE tenant = ?1 AND kind = ?2 AND id = ?3")?.execute(params![
                    t,
                    kind.as_str(),
                    id
                ])
            });
            match r {
                Ok(n) => Ok(Done::DeleteDoc(reply, n > 0)),
                Err(e) => Err((Done::DeleteDoc(reply, false), e)),
            }
        }
    }
}

/// What the index holds for the entity a change replaces or deletes: the rows of the state
/// before an update, of the last state for a deletion.
fn indexed(change: &Change) -> Indexed<'_> {
    match (&change.previous, change.kind) {
        (Some(previous), _) => Indexed::Entity(previous),
        (None, ChangeKind::Deleted) => Indexed::Entity(&change.entity),
        (None, _) => Indexed::Nothing,
    }
}

/// Applies [`WriteOp::Expire`] to every entity with something due at `at`; the op itself
/// decides (with the commit's time) what goes.
fn expire_due(
    tx: &Transaction,
    ids: &mut Ids,
    counts: &mut CountDeltas,
    at: &Timestamp,
) -> rusqlite::Result<Vec<Change>> {
    let due: Vec<(String, String)> = tx
        .prepare_cached(
            "SELECT t.name, e.id FROM entities e JOIN tenants t ON t.id = e.tenant
             WHERE e.expires IS NOT NULL AND e.expires <= ?1 ORDER BY e.expires",
        )?
        .query_map([at.micros()], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut changes = Vec::new();
    for (tenant, id) in due {
        if let Ok(applied) = write_one(tx, ids, counts, &tenant, WriteOp::Expire { id }, at)?
            && let Some(change) = applied.change
        {
            changes.push(change);
        }
    }
    Ok(changes)
}

/// Applies one op inside the transaction. The outer error is a storage failure (rolls back the
/// group); the inner one is the op's own refusal (e.g. `AlreadyExists`).
fn write_one(
    tx: &Transaction,
    ids: &mut Ids,
    counts: &mut CountDeltas,
    tenant: &str,
    op: WriteOp,
    now: &Timestamp,
) -> rusqlite::Result<Result<Applied>> {
    let tenant_id = ids.tenant(tx, tenant)?;
    let row: Option<(i64, Vec<u8>)> = tx
        .prepare_cached("SELECT rid, doc FROM entities WHERE tenant = ?1 AND id = ?2")?
        .query_row(params![tenant_id, op.entity_id()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (rid, current) = match row {
        Some((rid, doc)) => match codec::decode(&doc) {
            Ok(e) => (Some(rid), Some(e)),
            Err(e) => return Ok(Err(e)),
        },
        None => (None, None),
    };
    let applied = match ops::apply(op, current, tenant, now) {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let Some(change) = &applied.change else { return Ok(Ok(applied)) };
    history::record_change(tx, ids, tenant_id, change)?;
    if let Some(before) = &change.previous {
        counts.add(tx, ids, tenant_id, before, -1)?;
    }
    match (applied.to_persist(), rid) {
        (Some(next), None) => {
            let doc = match codec::encode(next) {
                Ok(d) => d,
                Err(e) => return Ok(Err(e)),
            };
            tx.prepare_cached("INSERT INTO entities(tenant, id, doc, expires) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![tenant_id, next.id, doc, next.next_expiry().map(Timestamp::micros)])?;
            let rid = tx.last_insert_rowid();
            for t in &next.types {
                let type_id = ids.name(tx, t)?;
                tx.prepare_cached("INSERT INTO entity_types(tenant, type, rid) VALUES (?1, ?2, ?3)")?
                    .execute(params![tenant_id, type_id, rid])?;
            }
            index::refresh(tx, &mut |tx, iri| ids.name(tx, iri), tenant_id, rid, Indexed::Nothing, Some(next))?;
            counts.add(tx, ids, tenant_id, next, 1)?;
        }
        (Some(next), Some(rid)) => {
            let doc = match codec::encode(next) {
                Ok(d) => d,
                Err(e) => return Ok(Err(e)),
            };
            tx.prepare_cached("UPDATE entities SET doc = ?1, expires = ?2 WHERE rid = ?3")?.execute(params![
                doc,
                next.next_expiry().map(Timestamp::micros),
                rid
            ])?;
            let before_types = change.previous.as_ref().map(|p| p.types.as_slice()).unwrap_or_default();
            if before_types != next.types.as_slice() {
                tx.prepare_cached("DELETE FROM entity_types WHERE tenant = ?1 AND rid = ?2")?
                    .execute(params![tenant_id, rid])?;
                for t in &next.types {
                    let type_id = ids.name(tx, t)?;
                    tx.prepare_cached("INSERT INTO entity_types(tenant, type, rid) VALUES (?1, ?2, ?3)")?
                        .execute(params![tenant_id, type_id, rid])?;
                }
            }
            index::refresh(tx, &mut |tx, iri| ids.name(tx, iri), tenant_id, rid, indexed(change), Some(next))?;
            counts.add(tx, ids, tenant_id, next, 1)?;
        }
        (None, Some(rid)) => {
            tx.prepare_cached("DELETE FROM entities WHERE rid = ?1")?.execute([rid])?;
            tx.prepare_cached("DELETE FROM entity_types WHERE tenant = ?1 AND rid = ?2")?
                .execute(params![tenant_id, rid])?;
            index::refresh(tx, &mut |tx, iri| ids.name(tx, iri), tenant_id, rid, indexed(change), None)?;
            counts.add(tx, ids, tenant_id, &change.entity, -1)?;
        }
        (None, None) => {}
    }
    Ok(Ok(applied))
}

/// Discovery counters changed by the transaction, flushed once before the commit.
#[derive(Default)]
struct CountDeltas {
    /// (tenant, type id, attribute id or 0, kind or "") → delta.
    deltas: HashMap<(i64, i64, i64, &'static str), i64>,
}

impl CountDeltas {
    fn add(
        &mut self,
        tx: &Transaction,
        ids: &mut Ids,
        tenant: i64,
        entity: &hanbat_model::Entity,
        sign: i64,
    ) -> rusqlite::Result<()> {
        for t in &entity.types {
            let type_id = ids.name(tx, t)?;
            *self.deltas.entry((tenant, type_id, 0, "")).or_default() += sign;
            for (name, instances) in &entity.attrs {
                let attr_id = ids.name(tx, name)?;
                let mut kinds: Vec<&'static str> = instances.iter().map(|a| a.value.type_name()).collect();
                kinds.sort_unstable();
                kinds.dedup();
                for kind in kinds {
                    *self.deltas.entry((tenant, type_id, attr_id, kind)).or_default() += sign;
                }
            }
        }
        Ok(())
    }

    fn flush(self, tx: &Transaction) -> rusqlite::Result<()> {
        for ((tenant, type_id, attr_id, kind), delta) in self.deltas {
            if delta == 0 {
                continue;
            }
            tx.prepare_cached(
                "INSERT INTO type_attr_counts(tenant, type, attr, kind, n) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(tenant, type, attr, kind) DO UPDATE SET n = n + excluded.n",
            )?
            .execute(params![tenant, type_id, attr_id, kind, delta])?;
        }
        tx.prepare_cached("DELETE FROM type_attr_counts WHERE n <= 0")?.execute([])?;
        Ok(())
    }
}
