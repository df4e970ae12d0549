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
mod schema;
mod writer;

use async_trait::async_trait;
use hanbat_model::{Entity, NgsiError, Result, Timestamp};
use hanbat_store::{
    Applied, Change, DocKind, EntityFilter, EntityQuery, Page, Store, TypeAttrCount, WriteOp, selector_matches,
};
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot};
use writer::Job;

/// Readers running at once; more would only queue on 2–4 cores.
const READERS: usize = 8;
/// Writes waiting for the writer before callers wait to enqueue (back-pressure).
const WRITE_QUEUE: usize = 4096;

pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    readers: Arc<Readers>,
}

struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

fn storage(e: impl std::fmt::Display) -> NgsiError {
    NgsiError::internal(format!("storage: {e}"))
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, applying pending migrations.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| storage(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join("hanbat.db");
        let mut conn = Connection::open(&path).map_err(storage)?;
        schema::configure(&conn, true).map_err(storage)?;
        schema::migrate(&mut conn).map_err(storage)?;
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        std::thread::Builder::new()
            .name("hanbat-sqlite-writer".into())
            .spawn(move || writer::run(conn, rx))
            .map_err(|e| storage(format!("starting the writer thread: {e}")))?;
        let readers = Readers { path, idle: Mutex::new(Vec::new()), permits: Semaphore::new(READERS) };
        Ok(Self { jobs: tx, readers: Arc::new(readers) })
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
            None => {
                let c = Connection::open_with_flags(
                    &readers.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(storage)?;
                schema::configure(&c, false).map_err(storage)?;
                c
            }
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

/// Streams candidate rows in `rid` order through the selector and filter, keeping one page and
/// counting every match when asked to.
fn run_query(
    conn: &Connection,
    tenant: i64,
    q: &EntityQuery,
    filter: Option<&(dyn Fn(&Entity) -> bool + Send + Sync)>,
) -> Result<Page> {
    let sel = &q.selector;
    let mut sql = String::from("SELECT e.doc FROM entities e");
    let mut args: Vec<rusqlite::types::Value> = vec![tenant.into()];
    if !sel.types.is_empty() {
        let mut type_ids = Vec::new();
        for t in &sel.types {
            if let Some(id) = name_id(conn, t)? {
                type_ids.push(id);
            }
        }
        if type_ids.is_empty() {
            return Ok(Page { entities: Vec::new(), count: q.count.then_some(0) });
        }
        let marks = vec!["?"; type_ids.len()].join(",");
        sql.push_str(&format!(
            " WHERE e.tenant = ?1 AND e.rid IN (SELECT rid FROM entity_types WHERE tenant = ?1 AND type IN ({marks}))"
        ));
        args.extend(type_ids.into_iter().map(rusqlite::types::Value::from));
    } else {
        sql.push_str(" WHERE e.tenant = ?1");
    }
    if !sel.ids.is_empty() {
        let first = args.len() + 1;
        let marks: Vec<String> = (first..first + sel.ids.len()).map(|i| format!("?{i}")).collect();
        sql.push_str(&format!(" AND e.id IN ({})", marks.join(",")));
        args.extend(sel.ids.iter().cloned().map(rusqlite::types::Value::from));
    }
    sql.push_str(" ORDER BY e.rid");
    let mut stmt = conn.prepare_cached(&sql).map_err(storage)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args)).map_err(storage)?;
    let mut page = Vec::new();
    let mut matched: u64 = 0;
    let wanted = q.offset.saturating_add(q.limit);
    while let Some(row) = rows.next().map_err(storage)? {
        let bytes: &[u8] = row.get_ref(0).map_err(storage)?.as_blob().map_err(storage)?;
        let entity = codec::decode(bytes)?;
        if !selector_matches(sel, &entity) || filter.is_some_and(|f| !f(&entity)) {
            continue;
        }
        matched += 1;
        if matched as usize > q.offset && page.len() < q.limit {
            page.push(entity);
        }
        if !q.count && matched as usize >= wanted {
            break;
        }
    }
    Ok(Page { entities: page, count: q.count.then_some(matched) })
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
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.read(move |conn| {
            let Some(t) = tenant_id(conn, &tenant)? else { return Ok(None) };
            let doc: Option<Vec<u8>> = conn
                .prepare_cached("SELECT doc FROM entities WHERE tenant = ?1 AND id = ?2")
                .and_then(|mut s| s.query_row(params![t, id], |r| r.get(0)).optional())
                .map_err(storage)?;
            doc.map(|d| codec::decode(&d)).transpose()
        })
        .await
    }

    async fn expire(&self, now: &Timestamp) -> Result<Vec<Change>> {
        let at = now.clone();
        self.submit(|reply| Job::Expire { at, reply }).await
    }

    async fn query(&self, tenant: &str, query: &EntityQuery, filter: Option<EntityFilter>) -> Result<Page> {
        let (tenant, query) = (tenant.to_string(), query.clone());
        self.read(move |conn| match tenant_id(conn, &tenant)? {
            Some(t) => run_query(conn, t, &query, filter.as_deref()),
            None => Ok(Page { entities: Vec::new(), count: query.count.then_some(0) }),
        })
        .await
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
