//! Hanbat's PostgreSQL store: several broker nodes on one database.
//!
//! - Writes: one transaction per `write` call. The entities the ops touch are locked (a
//!   transaction advisory lock per id, taken in a fixed order so that batches never deadlock,
//!   then `SELECT … FOR UPDATE`), `hanbat_store::ops::apply` decides, rows are upserted,
//!   history and discovery counters are written, and the call returns after the commit
//!   (`synchronous_commit` as the server says: durable by default).
//! - Reads: SQL narrows by tenant, ids or types; the rest of the query (`q`, `scopeQ`,
//!   geo-queries, id patterns) is evaluated in Rust by [`hanbat_store::PageScan`] on rows
//!   streamed in keyset-paged batches, so pages and counts are exact.
//! - Layout: see [`schema`]. Every table carries the tenant name as a column.
//! - Several nodes: see [`cluster`] (membership, the change feed between nodes, subscription
//!   leases), joined with [`PgStore::join`].

pub mod cluster;
mod history;
pub mod schema;
pub mod testing;
mod write;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use hanbat_model::{Entity, NgsiError, Result, Timestamp};
use hanbat_store::{
    Applied, Change, DocKind, EntityQuery, HistoryOp, HistoryOutcome, HistoryPage, HistoryQuery, Order, Page, PageScan,
    Store, TypeAttrCount, WriteOp,
};
use serde_json::Value;
use std::sync::Arc;
use tokio_postgres::NoTls;
use tokio_postgres::types::{Json, ToSql};

/// The GeoProperty whose bounding box is indexed (`location_box`).
const LOCATION: &str = "https://uri.etsi.org/ngsi-ld/location";

/// Connections per node: writes hold one for a transaction, reads one per query.
const POOL_SIZE: usize = 16;
/// How often the maintenance task runs (partitions ahead of time, retention).
const MAINTENANCE_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

fn storage(e: impl std::fmt::Display) -> NgsiError {
    NgsiError::internal(format!("storage: {e}"))
}

/// `?` for database calls: any failure of the database is a storage error (500).
trait OrStorage<T> {
    fn or_storage(self) -> Result<T>;
}

impl<T, E: std::fmt::Display> OrStorage<T> for std::result::Result<T, E> {
    fn or_storage(self) -> Result<T> {
        self.map_err(storage)
    }
}

/// Settings of the PostgreSQL store.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// History older than this is pruned (by the instant it was recorded).
    pub history_retention: Option<std::time::Duration>,
    /// This node's id in a cluster of nodes on the database (default: a random one). It must
    /// be unique among live nodes; a restarted node that keeps its id takes its subscription
    /// leases back at once.
    pub node: Option<String>,
}

pub struct PgStore {
    pool: Pool,
    config: tokio_postgres::Config,
    membership: Arc<cluster::Membership>,
    tasks: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().drain(..) {
            task.abort();
        }
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host/db`), applying pending migrations.
    pub async fn connect(url: &str, options: Options) -> Result<Self> {
        let config: tokio_postgres::Config =
            url.parse().map_err(|e| NgsiError::bad_data(format!("PostgreSQL URL '{url}': {e}")))?;
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager).max_size(POOL_SIZE).build().or_storage()?;
        let mut client = pool.get().await.or_storage()?;
        schema::migrate(&mut client).await.or_storage()?;
        drop(client);
        let node = options.node.clone().unwrap_or_else(|| format!("node-{}", uuid::Uuid::new_v4().simple()));
        let maintenance = tokio::spawn(maintain(pool.clone(), options));
        Ok(Self {
            pool,
            config,
            membership: Arc::new(cluster::Membership::new(node)),
            tasks: parking_lot::Mutex::new(vec![maintenance]),
        })
    }

    /// Joins the other nodes on this database: from now on this node logs its changes while
    /// it has peers, follows theirs, and delivers the subscriptions it holds leases of (see
    /// [`cluster`]). Call once, before serving requests.
    pub async fn join(&self) -> Result<cluster::Cluster> {
        let (cluster, tasks) = cluster::join(self.pool.clone(), self.config.clone(), self.membership.clone()).await?;
        self.tasks.lock().extend(tasks);
        Ok(cluster)
    }

    /// Leaves the cluster (a graceful stop): the other nodes take this node's subscriptions
    /// over at their next tick.
    pub async fn leave(&self) -> Result<()> {
        self.stop();
        cluster::leave(&self.pool, self.membership.node()).await
    }

    /// Stops this node's background tasks (maintenance, heartbeat, change feed) without telling
    /// the other nodes: they take its subscriptions over when its leases lapse.
    pub fn stop(&self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }

    /// This node's id when its changes are to be logged for the other nodes (it has peers).
    fn log_as(&self) -> Option<&str> {
        self.membership.logging().then(|| self.membership.node())
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.or_storage()
    }
}

async fn maintain(pool: Pool, options: Options) {
    let mut tick = tokio::time::interval(MAINTENANCE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let result = async {
            let client = pool.get().await.or_storage()?;
            schema::ensure_partitions(&client).await.or_storage()?;
            if let Some(retention) = options.history_retention {
                let before = Timestamp::now().micros().saturating_sub(retention.as_micros() as i64);
                history::prune(&client, before).await?;
            }
            Ok::<_, NgsiError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(detail = %e.detail, "PostgreSQL maintenance failed");
        }
    }
}

/// An entity from its `doc` column: its serde JSON, as bytes (see migration 5).
fn decode(row: &tokio_postgres::Row, column: &str) -> Result<Entity> {
    let unreadable = |e: &dyn std::fmt::Display| NgsiError::internal(format!("stored entity is unreadable: {e}"));
    let bytes: &[u8] = row.try_get(column).map_err(|e| unreadable(&e))?;
    serde_json::from_slice(bytes).map_err(|e| unreadable(&e))
}

/// Where a keyset-paged scan resumes: rows come in batches ordered by `rid` (creation order)
/// or by id, each batch starting after the last row of the previous one.
pub(crate) struct Keyset {
    order: Option<Order>,
    /// The `rid`/`tid` column and the id column.
    columns: (&'static str, &'static str),
    last_rid: i64,
    last_id: Option<String>,
    batch: i64,
}

impl Keyset {
    /// Rows per batch: enough for the first page in one round trip, growing for long scans.
    pub(crate) fn new(order: Option<Order>, columns: (&'static str, &'static str), wanted: usize) -> Self {
        let batch = (wanted.saturating_add(1)).clamp(64, 1000) as i64;
        Self { order, columns, last_rid: 0, last_id: None, batch }
    }

    /// The condition and ordering to append, with the parameters they take from `$first` on.
    pub(crate) fn sql(&self, first: usize) -> String {
        let (rid, id) = self.columns;
        let (a, b) = (first, first + 1);
        match self.order {
            None => format!(" AND {rid} > ${a} ORDER BY {rid} LIMIT ${b}"),
            Some(Order::Ascending) => format!(" AND (${a}::text IS NULL OR {id} > ${a}) ORDER BY {id} LIMIT ${b}"),
            Some(Order::Descending) => {
                format!(" AND (${a}::text IS NULL OR {id} < ${a}) ORDER BY {id} DESC LIMIT ${b}")
            }
        }
    }

    /// The parameters of [`Self::sql`]: where to resume, and the batch size.
    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 2] {
        match self.order {
            None => [&self.last_rid, &self.batch],
            Some(_) => [&self.last_id, &self.batch],
        }
    }

    /// Moves past a batch; returns whether another batch may follow.
    pub(crate) fn advance(&mut self, rows: usize, last_rid: i64, last_id: &str) -> bool {
        let more = rows as i64 == self.batch;
        self.last_rid = last_rid;
        self.last_id = Some(last_id.to_string());
        self.batch = (self.batch * 2).min(5000);
        more
    }
}

#[async_trait]
impl Store for PgStore {
    async fn write(&self, tenant: &str, ops: Vec<WriteOp>) -> Result<Vec<Result<Applied>>> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.or_storage()?;
        let results = write::apply_ops(&tx, tenant, ops, &Timestamp::now(), self.log_as()).await?;
        tx.commit().await.or_storage()?;
        Ok(results)
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Entity>> {
        let client = self.client().await?;
        let stmt =
            client.prepare_cached("SELECT doc FROM entities WHERE tenant = $1 AND id = $2").await.or_storage()?;
        let row = client.query_opt(&stmt, &[&tenant, &id]).await.or_storage()?;
        row.map(|r| decode(&r, "doc")).transpose()
    }

    async fn expire(&self, now: &Timestamp) -> Result<Vec<Change>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.or_storage()?;
        let due = tx
            .query(
                "SELECT tenant, id FROM entities WHERE expires IS NOT NULL AND expires <= $1 ORDER BY expires",
                &[&now.micros()],
            )
            .await
            .or_storage()?;
        let due: Vec<(String, String)> = due.iter().map(|r| (r.get(0), r.get(1))).collect();
        // Every due entity locked at once, in the one global order: the sweep goes through them
        // in expiry order, which would otherwise cross the order concurrent batches lock in.
        let tenants: Vec<&str> = due.iter().map(|(t, _)| t.as_str()).collect();
        let ids: Vec<&str> = due.iter().map(|(_, i)| i.as_str()).collect();
        write::lock_entities(&tx, &tenants, &ids).await?;
        let mut by_tenant: std::collections::BTreeMap<String, Vec<WriteOp>> = Default::default();
        for (tenant, id) in due {
            by_tenant.entry(tenant).or_default().push(WriteOp::Expire { id });
        }
        let mut changes = Vec::new();
        for (tenant, ops) in by_tenant {
            // Another node may have expired one meanwhile: its op then changes nothing.
            for applied in write::apply_ops(&tx, &tenant, ops, now, self.log_as()).await? {
                if let Ok(Applied { change: Some(change), .. }) = applied {
                    changes.push(change);
                }
            }
        }
        tx.commit().await.or_storage()?;
        Ok(changes)
    }

    async fn query(&self, tenant: &str, q: &EntityQuery) -> Result<Page> {
        let client = self.client().await?;
        let mut sql = String::from("SELECT rid, id, doc FROM entities WHERE tenant = $1");
        let ids: Vec<&str>;
        let types: Vec<&str>;
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&tenant];
        if let Some(candidates) = q.candidate_ids() {
            ids = candidates;
            sql.push_str(" AND id = ANY($2)");
            params.push(&ids);
        } else if let Some(candidates) = q.candidate_types() {
            types = candidates;
            sql.push_str(" AND types && $2::text[]");
            params.push(&types);
        }
        // Geo-queries on `location` read only entities whose bounding box meets the area a match
        // must meet; the geometry itself is evaluated in Rust (`GeoQuery::matches`).
        let area: Vec<f64>;
        if let Some(rect) = q.geo.as_ref().filter(|g| g.geoproperty.iri == LOCATION).and_then(|g| g.search_bbox()) {
            area = vec![rect.min().x, rect.min().y, rect.max().x, rect.max().y];
            let n = params.len();
            sql.push_str(&format!(
                " AND location_box && box(point(${}, ${}), point(${}, ${}))",
                n + 1,
                n + 2,
                n + 3,
                n + 4
            ));
            params.extend(area.iter().map(|v| v as &(dyn ToSql + Sync)));
        }
        let mut keyset = Keyset::new(q.order_by_id, ("rid", "id"), q.offset.saturating_add(q.limit));
        let mut scan = PageScan::new(q);
        'batches: loop {
            let batch_sql = format!("{sql}{}", keyset.sql(params.len() + 1));
            let mut all = params.clone();
            all.extend(keyset.params());
            let stmt = client.prepare_cached(&batch_sql).await.or_storage()?;
            let rows = client.query(&stmt, &all).await.or_storage()?;
            let Some(last) = rows.last() else { break };
            let (last_rid, last_id): (i64, String) = (last.get(0), last.get(1));
            let n = rows.len();
            for row in rows {
                if !scan.offer(decode(&row, "doc")?) {
                    break 'batches;
                }
            }
            if !keyset.advance(n, last_rid, &last_id) {
                break;
            }
        }
        Ok(scan.finish())
    }

    async fn history(&self, tenant: &str, query: &HistoryQuery) -> Result<HistoryPage> {
        let client = self.client().await?;
        history::query(&client, tenant, query).await
    }

    async fn write_history(&self, tenant: &str, op: HistoryOp) -> Result<HistoryOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.or_storage()?;
        write::ensure_tenant(&tx, tenant).await?;
        write::lock_entities(&tx, &[tenant], &[op.entity_id()]).await?;
        // A refused edit returns before the commit: dropping the transaction rolls it back.
        let outcome = history::apply_op(&tx, tenant, op).await?;
        tx.commit().await.or_storage()?;
        Ok(outcome)
    }

    async fn type_attr_counts(&self, tenant: &str) -> Result<Vec<TypeAttrCount>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT type, attr, kind, sum(n)::bigint FROM type_attr_counts WHERE tenant = $1
                 GROUP BY type, attr, kind HAVING sum(n) > 0 ORDER BY type, attr, kind",
                &[&tenant],
            )
            .await
            .or_storage()?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let attr: String = r.get(1);
                TypeAttrCount {
                    entity_type: r.get(0),
                    attr: (!attr.is_empty()).then_some(attr),
                    kind: r.get(2),
                    entities: r.get::<_, i64>(3).max(0) as u64,
                }
            })
            .collect())
    }

    async fn tenant_exists(&self, tenant: &str) -> Result<bool> {
        if tenant == hanbat_store::DEFAULT_TENANT {
            return Ok(true);
        }
        let client = self.client().await?;
        Ok(client.query_opt("SELECT 1 FROM tenants WHERE name = $1", &[&tenant]).await.or_storage()?.is_some())
    }

    async fn put_doc(&self, tenant: &str, kind: DocKind, id: &str, doc: &Value) -> Result<()> {
        let client = self.client().await?;
        let node = self.membership.node();
        let notice = cluster::doc_notice(node, kind, tenant, id);
        // One statement: the tenant is recorded with its first document, a new subscription's
        // lease goes to this node, and the other nodes hear of the change, all atomically.
        let row = client
            .query_one(
                "WITH t AS (INSERT INTO tenants(name) VALUES ($1) ON CONFLICT DO NOTHING),
                 d AS (
                     INSERT INTO docs(tenant, kind, id, body) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (tenant, kind, id) DO UPDATE SET body = excluded.body RETURNING 1
                 ),
                 lease AS (
                     INSERT INTO subscription_leases(tenant, id, node, expires, renewed)
                     SELECT $1, $3, $6, now() + $7 * interval '1 second', now() WHERE $2 = 'subscription'
                     ON CONFLICT DO NOTHING RETURNING 1
                 ),
                 notice AS (SELECT pg_notify('hanbat_docs', $5) FROM d WHERE $5::text IS NOT NULL)
                 SELECT (SELECT count(*) FROM lease), (SELECT count(*) FROM notice)",
                &[&tenant, &kind.as_str(), &id, &Json(doc), &notice, &node, &cluster::LEASE.as_secs_f64()],
            )
            .await
            .or_storage()?;
        if row.get::<_, i64>(0) > 0 {
            self.membership.hold(tenant, id);
        }
        Ok(())
    }

    async fn get_doc(&self, tenant: &str, kind: DocKind, id: &str) -> Result<Option<Value>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT body FROM docs WHERE tenant = $1 AND kind = $2 AND id = $3",
                &[&tenant, &kind.as_str(), &id],
            )
            .await
            .or_storage()?;
        Ok(row.map(|r| r.get::<_, Json<Value>>(0).0))
    }

    async fn list_docs(&self, tenant: Option<&str>, kind: DocKind) -> Result<Vec<(String, String, Value)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT tenant, id, body FROM docs WHERE kind = $1 AND ($2::text IS NULL OR tenant = $2)
                 ORDER BY tenant, id",
                &[&kind.as_str(), &tenant],
            )
            .await
            .or_storage()?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get::<_, Json<Value>>(2).0)).collect())
    }

    async fn delete_doc(&self, tenant: &str, kind: DocKind, id: &str) -> Result<bool> {
        let client = self.client().await?;
        let notice = cluster::doc_notice(self.membership.node(), kind, tenant, id);
        let row = client
            .query_one(
                "WITH t AS (INSERT INTO tenants(name) VALUES ($1) ON CONFLICT DO NOTHING),
                 d AS (DELETE FROM docs WHERE tenant = $1 AND kind = $2 AND id = $3 RETURNING 1),
                 lease AS (DELETE FROM subscription_leases WHERE $2 = 'subscription' AND tenant = $1 AND id = $3),
                 notice AS (SELECT pg_notify('hanbat_docs', $4) FROM d WHERE $4::text IS NOT NULL)
                 SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM notice)",
                &[&tenant, &kind.as_str(), &id, &notice],
            )
            .await
            .or_storage()?;
        if kind == DocKind::Subscription {
            self.membership.release(tenant, id);
        }
        Ok(row.get::<_, i64>(0) > 0)
    }
}
