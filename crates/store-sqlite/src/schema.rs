//! The schema, as numbered migrations applied at open (`PRAGMA user_version` records the last).

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: entities, their types, discovery counters, documents.
    "
    CREATE TABLE tenants(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE names(id INTEGER PRIMARY KEY, iri TEXT NOT NULL UNIQUE);
    CREATE TABLE entities(
        rid INTEGER PRIMARY KEY,
        tenant INTEGER NOT NULL,
        id TEXT NOT NULL,
        doc BLOB NOT NULL,
        UNIQUE(tenant, id)
    );
    CREATE TABLE entity_types(
        tenant INTEGER NOT NULL, type INTEGER NOT NULL, rid INTEGER NOT NULL,
        PRIMARY KEY(tenant, type, rid)
    ) WITHOUT ROWID;
    CREATE TABLE type_attr_counts(
        tenant INTEGER NOT NULL, type INTEGER NOT NULL, attr INTEGER NOT NULL, kind TEXT NOT NULL, n INTEGER NOT NULL,
        PRIMARY KEY(tenant, type, attr, kind)
    ) WITHOUT ROWID;
    CREATE TABLE docs(
        tenant INTEGER NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY(tenant, kind, id)
    ) WITHOUT ROWID;
    ",
    // 2: history. Each committed change appends one `t_log` record (the attribute instances it
    // wrote, in the codec of hanbat-temporal); compaction moves log records into per-series
    // chunks (`t_chunks`, a few bytes per numeric sample). `t_entities` keeps what the temporal
    // API reports of an entity after it is deleted.
    "
    CREATE TABLE t_entities(
        tid INTEGER PRIMARY KEY,
        tenant INTEGER NOT NULL, id TEXT NOT NULL,
        types TEXT NOT NULL, scopes TEXT NOT NULL DEFAULT '[]',
        created INTEGER NOT NULL, modified INTEGER NOT NULL, deleted INTEGER,
        UNIQUE(tenant, id)
    );
    -- AUTOINCREMENT: record ids are instance ids; they must never be reused once compacted away.
    CREATE TABLE t_log(rec INTEGER PRIMARY KEY AUTOINCREMENT, tid INTEGER NOT NULL, body BLOB NOT NULL);
    CREATE INDEX t_log_by_entity ON t_log(tid);
    CREATE TABLE t_series(
        sid INTEGER PRIMARY KEY, tid INTEGER NOT NULL, attr INTEGER NOT NULL, dataset TEXT NOT NULL,
        UNIQUE(tid, attr, dataset)
    );
    CREATE TABLE t_chunks(
        sid INTEGER NOT NULL, first_rec INTEGER NOT NULL, n INTEGER NOT NULL,
        obs_min INTEGER, obs_max INTEGER, rec_min INTEGER NOT NULL, rec_max INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY(sid, first_rec)
    ) WITHOUT ROWID;
    ",
    // 3: transient data (§4.22): the earliest expiresAt of an entity or its attributes, so the
    // expiry sweep finds due entities by index instead of scanning.
    "
    ALTER TABLE entities ADD COLUMN expires INTEGER;
    CREATE INDEX entities_by_expiry ON entities(expires) WHERE expires IS NOT NULL;
    ",
    // 4: compaction writes each pass's samples as new chunks (never rewriting the open one);
    // `small` counts a series' chunks below the target size, so that they get merged now and
    // then rather than rewritten on every pass.
    "
    ALTER TABLE t_series ADD COLUMN small INTEGER NOT NULL DEFAULT 0;
    ",
    // 5: query indexes (see `index`): the numbers of top-level attributes for q comparisons,
    // and an R*Tree of GeoProperty bounding boxes for geo-queries. Filled from the stored
    // entities by `index::backfill` (BACKFILL_INDEXES).
    "
    CREATE TABLE entity_nums(
        tenant INTEGER NOT NULL, attr INTEGER NOT NULL, single INTEGER NOT NULL, value REAL NOT NULL,
        rid INTEGER NOT NULL,
        PRIMARY KEY(tenant, attr, single, value, rid)
    ) WITHOUT ROWID;
    CREATE INDEX entity_nums_by_rid ON entity_nums(rid);
    CREATE TABLE entity_geo_keys(gid INTEGER PRIMARY KEY, rid INTEGER NOT NULL);
    CREATE INDEX entity_geo_keys_by_rid ON entity_geo_keys(rid);
    CREATE VIRTUAL TABLE entity_geo USING rtree(gid, min_x, max_x, min_y, max_y, +tenant INTEGER, +attr INTEGER, +rid INTEGER);
    ",
    // 6: how many of a chunk's samples have no observedAt (NULL: written before this was
    // counted). `lastN` on observedAt may skip a chunk only when it has none: those samples are
    // ordered by their recording time, which `obs_max` does not bound. The indexes cover what
    // `lastN` sorts chunks by, so that it reads no chunk data until it picks the chunk.
    "
    ALTER TABLE t_chunks ADD COLUMN unobserved INTEGER;
    CREATE INDEX t_chunks_by_observed ON t_chunks(sid, obs_max, obs_min, unobserved);
    CREATE INDEX t_chunks_by_recorded ON t_chunks(sid, rec_max, rec_min);
    ",
];

/// The migration (index in [`MIGRATIONS`]) after which the query indexes are built from the
/// stored entities.
const BACKFILL_INDEXES: usize = 4;

/// Applies the migrations the database has not seen yet, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let applied: usize = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))?.try_into().unwrap_or(0);
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        if index == BACKFILL_INDEXES {
            crate::index::backfill(&tx)?;
        }
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// Connection settings shared by the writer and the readers.
pub fn configure(conn: &Connection, writer: bool) -> rusqlite::Result<()> {
    // The writer runs some 30 distinct statements; with rusqlite's default cache of 16 they
    // were evicted and compiled again on every commit (a third of the writer's time, perf).
    conn.set_prepared_statement_cache_capacity(256);
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk (fsync of the WAL) before the writer acknowledges it, so an
    // acknowledged write survives kill -9 and power loss; group commit amortises the fsync.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    // 64 MiB of page cache for the writer, 8 MiB per reader (negative = KiB): readers are many
    // and the OS page cache is shared by all of them.
    conn.pragma_update(None, "cache_size", if writer { -65536 } else { -8192 })?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    if writer {
        // Checkpoint in larger steps: fewer, longer checkpoints cost less than many small ones.
        conn.pragma_update(None, "wal_autocheckpoint", 4000)?;
    }
    Ok(())
}
