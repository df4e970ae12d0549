//! Hanbat's embedded store: one SQLite database file in the data folder.
//!
//! - Writes: one writer thread with group commit ([`writer`]), `synchronous=FULL`, acknowledged
//!   after the commit is on disk.
//! - Reads: a small pool of read-only connections (WAL lets them run beside the writer), used
//!   from tokio's blocking pool.
//! - Layout: `entities` holds each entity's stored form keyed by `(tenant, id)` with a `rid` that
//!   orders pages; `entity_types` indexes types; `type_attr_counts` keeps the discovery counters
//!   in step with every commit; `docs` holds subscriptions, registrations and hosted contexts.

mod codec;
mod history;
mod index;
mod plan;
mod schema;
mod writer;

use async_trait::async_trait;
use hanbat_model::{Entity, NgsiError, Result, Timestamp};
use hanbat_store::{
    Applied, Change, DocKind, EntityQuery, HistoryOp, HistoryOutcome, HistoryPage, HistoryQuery, Page, Store,
    TypeAttrCount, WriteOp,
};
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Semaphore, mpsc, oneshot};
use writer::Job;

/// Readers running at once; more would only queue on 2–4 cores.
const READERS: usize = 8;
/// Writes waiting for the writer before callers wait to enqueue (back-pressure).
const WRITE_QUEUE: usize = 4096;

pub struct SqliteStore {
    /// Distinguishes stores in the per-thread connection cache (tests open several).
    id: u64,
    jobs: mpsc::Sender<Job>,
    readers: Arc<Readers>,
}

static NEXT_STORE_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Read connections for point reads, one per store and runtime worker thread: a lookup by id
    /// takes microseconds, less than handing it to another thread would (measured: moving
    /// GET-by-id reads to the blocking pool spent a quarter of the time in context switches).
    static POINT_READERS: RefCell<HashMap<u64, Connection>> = RefCell::new(HashMap::new());
}

struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

fn storage(e: impl std::fmt::Display) -> NgsiError {
    NgsiError::internal(format!("storage: {e}"))
}

/// Settings of the embedded store.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// History older than this is pruned (by the instant it was recorded).
    pub history_retention: Option<std::time::Duration>,
}

/// How often the log of history is compacted into chunks (and retention applied) when it has
/// no backlog. Every pass moves each series' samples of the period in one chunk: longer periods
/// mean fewer, larger chunks; queries read the log for what is not compacted yet, so nothing
/// waits on it. A pass that leaves a backlog is followed by the next at once (writes queued
/// meanwhile go first), so the log stays bounded under any sustained write rate.
const MAINTENANCE_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir` with default options.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, Options::default())
    }

    /// Opens (creating if needed) the store in `dir`, applying pending migrations.
    pub fn open_with(dir: &Path, options: Options) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| storage(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join("hanbat.db");
        let mut conn = Connection::open(&path).map_err(storage)?;
        schema::enable_incremental_vacuum(&conn).map_err(storage)?;
        schema::configure(&conn, true).map_err(storage)?;
        schema::migrate(&mut conn).map_err(storage)?;
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        std::thread::Builder::new()
            .name("hanbat-sqlite-writer".into())
            .spawn(move || writer::run(conn, rx))
            .map_err(|e| storage(format!("starting the writer thread: {e}")))?;
        // A weak sender: maintenance stops by itself once the store is dropped.
        let weak = tx.downgrade();
        std::thread::Builder::new()
            .name("hanbat-sqlite-maintenance".into())
            .spawn(move || {
                let mut backlog = false;
                loop {
                    if !backlog {
                        std::thread::sleep(MAINTENANCE_PERIOD);
                    }
                    let Some(jobs) = weak.upgrade() else { return };
                    let older_than = options
                        .history_retention
                        .map(|r| Timestamp::now().micros().saturating_sub(r.as_micros() as i64));
                    let (reply, done) = oneshot::channel();
                    if jobs.blocking_send(Job::Maintain { older_than, reply }).is_err() {
                        return;
                    }
                    // Not holding the sender while the pass runs: the store may be dropped.
                    drop(jobs);
                    backlog = done.blocking_recv().unwrap_or(false);
                }
            })
            .map_err(|e| storage(format!("starting the maintenance thread: {e}")))?;
        let readers = Readers { path, idle: Mutex::new(Vec::new()), permits: Semaphore::new(READERS) };
        Ok(Self { id: NEXT_STORE_ID.fetch_add(1, Ordering::Relaxed), jobs: tx, readers: Arc::new(readers) })
    }

    /// Runs a short indexed read on this thread's own connection (no thread hand-off).
    fn point_read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        POINT_READERS.with(|cell| {
            let mut conns = cell.borrow_mut();
            let conn = match conns.entry(self.id) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(v) => v.insert(open_reader(&self.readers.path)?),
            };
            f(conn)
        })
    }

    async fn submit<T>(&self, job: impl FnOnce(oneshot::Sender<Result<T>>) -> Job) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(job(reply)).await.map_err(|_| storage("the writer thread has stopped"))?;
        answer.await.map_err(|_| storage("the writer thread dropped a write"))?
    }

    /// Runs `f` on a pooled read connection in the blocking pool.
    async fn read<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> Result<T> + Send + 'static) -> Result<T> {
        let readers = self.readers.clone();
        let _permit = readers.permits.acquire().await.map_err(storage)?;
        let conn = readers.idle.lock().pop();
        let conn = match conn {
            Some(c) => c,
            None => open_reader(&readers.path)?,
        };
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let r = f(&conn);
            (conn, r)
        })
        .await
        .map_err(storage)?;
        readers.idle.lock().push(conn);
        result
    }
}

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(storage)?;
    schema::configure(&conn, false).map_err(storage)?;
    Ok(conn)
}

fn tenant_id(conn: &Connection, tenant: &str) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT id FROM tenants WHERE name = ?1")
        .and_then(|mut s| s.query_row([tenant], |r| r.get(0)).optional())
        .map_err(storage)
}

fn name_id(conn: &Connection, iri: &str) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT id FROM names WHERE iri = ?1")
        .and_then(|mut s| s.query_row([iri], |r| r.get(0)).optional())
        .map_err(storage)
}

#[async_trait]
impl Store for SqliteStore {
    async fn write(&self, tenant: &str, ops: Vec<WriteOp>) -> Result<Vec<Result<Applied>>> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let tenant = tenant.to_string();
        self.submit(|reply| Job::Write { tenant, ops, reply }).await
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Entity>> {
        self.point_read(|conn| {
            // The tenant as a scalar subquery, not a join: SQLite re-prepares the join form at
            // every execution (its plan depends on the bound name), which tripled this read.
            let mut stmt = conn
                .prepare_cached(
                    "SELECT doc FROM entities WHERE tenant = (SELECT id FROM tenants WHERE name = ?1) AND id = ?2",
                )
                .map_err(storage)?;
            let mut rows = stmt.query(params![tenant, id]).map_err(storage)?;
            match rows.next().map_err(storage)? {
                Some(row) => codec::decode(row.get_ref(0).map_err(storage)?.as_blob().map_err(storage)?).map(Some),
                None => Ok(None),
            }
        })
    }

    async fn expire(&self, now: &Timestamp) -> Result<Vec<Change>> {
        let at = now.clone();
        self.submit(|reply| Job::Expire { at, reply }).await
    }

    async fn query(&self, tenant: &str, query: &EntityQuery) -> Result<Page> {
        let (tenant, query) = (tenant.to_string(), query.clone());
        self.read(move |conn| match tenant_id(conn, &tenant)? {
            Some(t) => plan::run_query(conn, t, &query),
            None => Ok(Page { entities: Vec::new(), count: query.count.then_some(0) }),
        })
        .await
    }

    async fn history(&self, tenant: &str, query: &HistoryQuery) -> Result<HistoryPage> {
        let (tenant, query) = (tenant.to_string(), query.clone());
        self.read(move |conn| match tenant_id(conn, &tenant)? {
            Some(t) => history::query(conn, t, &query),
            None => Ok(HistoryPage { entities: Vec::new(), count: query.select.count.then_some(0) }),
        })
        .await
    }

    async fn write_history(&self, tenant: &str, op: HistoryOp) -> Result<HistoryOutcome> {
        let tenant = tenant.to_string();
        self.submit(|reply| Job::History { tenant, op: Box::new(op), reply }).await
    }

    async fn type_attr_counts(&self, tenant: &str) -> Result<Vec<TypeAttrCount>> {
        let tenant = tenant.to_string();
        self.read(move |conn| {
            let Some(t) = tenant_id(conn, &tenant)? else { return Ok(Vec::new()) };
            let mut stmt = conn
                .prepare_cached(
                    "SELECT tn.iri, an.iri, c.kind, c.n FROM type_attr_counts c
                     JOIN names tn ON tn.id = c.type LEFT JOIN names an ON an.id = c.attr
                     WHERE c.tenant = ?1 ORDER BY tn.iri, an.iri",
                )
                .map_err(storage)?;
            let rows = stmt
                .query_map([t], |r| {
                    Ok(TypeAttrCount {
                        entity_type: r.get(0)?,
                        attr: r.get(1)?,
                        kind: r.get(2)?,
                        entities: r.get::<_, i64>(3)?.max(0) as u64,
                    })
                })
                .map_err(storage)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(storage)
        })
        .await
    }

    async fn tenant_exists(&self, tenant: &str) -> Result<bool> {
        if tenant == hanbat_store::DEFAULT_TENANT {
            return Ok(true);
        }
        let tenant = tenant.to_string();
        self.read(move |conn| Ok(tenant_id(conn, &tenant)?.is_some())).await
    }

    async fn put_doc(&self, tenant: &str, kind: DocKind, id: &str, doc: &Value) -> Result<()> {
        let (tenant, id, body) = (tenant.to_string(), id.to_string(), doc.to_string());
        self.submit(|reply| Job::PutDoc { tenant, kind, id, body, reply }).await
    }

    async fn get_doc(&self, tenant: &str, kind: DocKind, id: &str) -> Result<Option<Value>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.read(move |conn| {
            let Some(t) = tenant_id(conn, &tenant)? else { return Ok(None) };
            let body: Option<String> = conn
                .prepare_cached("SELECT body FROM docs WHERE tenant = ?1 AND kind = ?2 AND id = ?3")
                .and_then(|mut s| s.query_row(params![t, kind.as_str(), id], |r| r.get(0)).optional())
                .map_err(storage)?;
            body.map(|b| serde_json::from_str(&b).map_err(storage)).transpose()
        })
        .await
    }

    async fn list_docs(&self, tenant: Option<&str>, kind: DocKind) -> Result<Vec<(String, String, Value)>> {
        let tenant = tenant.map(str::to_string);
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT t.name, d.id, d.body FROM docs d JOIN tenants t ON t.id = d.tenant
                     WHERE d.kind = ?1 AND (?2 IS NULL OR t.name = ?2) ORDER BY t.name, d.id",
                )
                .map_err(storage)?;
            let rows = stmt
                .query_map(params![kind.as_str(), tenant], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                })
                .map_err(storage)?;
            let mut out = Vec::new();
            for row in rows {
                let (t, id, body) = row.map_err(storage)?;
                out.push((t, id, serde_json::from_str(&body).map_err(storage)?));
            }
            Ok(out)
        })
        .await
    }

    async fn delete_doc(&self, tenant: &str, kind: DocKind, id: &str) -> Result<bool> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.submit(|reply| Job::DeleteDoc { tenant, kind, id, reply }).await
    }
}
