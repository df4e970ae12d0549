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
    // 7: index rows are deleted by primary key, from the entity's previous state (`index`):
    // the index by rid cost every write a second B-tree update per number.
    "
    DROP INDEX entity_nums_by_rid;
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

/// Makes a database that has no tables yet return the pages it frees to the file system on
/// request ([`release_free_pages`]). SQLite fixes this when the first table is created, so a
/// database created before this setting keeps its free pages for reuse instead.
pub fn enable_incremental_vacuum(conn: &Connection) -> rusqlite::Result<()> {
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    if tables == 0 {
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    }
    Ok(())
}

/// Pages in the database file that hold nothing.
pub fn free_pages(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))
}

/// Free pages kept in the file after a maintenance pass, beyond those the pass freed itself
/// (16 MiB of 4 KiB pages): the history log refills that much between passes, and pages
/// returned to the file system would only be allocated again.
const KEPT_FREE_PAGES: i64 = 4096;
/// At most this many pages (128 MiB) are returned per pass, so that one pass never holds the
/// writer long.
const RELEASED_PER_PASS: i64 = 32_768;

/// Returns free pages to the file system, keeping as many as the pass just freed (the log's
/// working size: compaction emptied it and ingestion fills it again) plus a margin. Without
/// this, the file keeps its largest size for good: the log of a bulk load, or the history that
/// retention pruned, would stay on disk as free pages.
pub fn release_free_pages(conn: &Connection, free_before_pass: i64) -> rusqlite::Result<()> {
    let free = free_pages(conn)?;
    let keep = (free - free_before_pass).max(0) + KEPT_FREE_PAGES;
    if free > keep {
        // The pragma frees one page per step: it is run to completion like a query.
        let mut vacuum =
            conn.prepare(&format!("PRAGMA incremental_vacuum({})", (free - keep).min(RELEASED_PER_PASS)))?;
        let mut steps = vacuum.query([])?;
        while steps.next()?.is_some() {}
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
        // The WAL file otherwise keeps the size of the largest transaction or the longest
        // stretch without a complete checkpoint (70 MB after a bulk load of history) for good.
        conn.pragma_update(None, "journal_size_limit", 16 * 1024 * 1024)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_pages(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap()
    }

    /// 64 MiB written and deleted: the maintenance pass that freed it keeps it, the next one
    /// returns it to the file system down to the margin; a database made before incremental vacuum keeps
    /// its pages (and the call does no harm).
    #[test]
    fn free_pages_are_returned_beyond_the_margin() {
        let dir = tempfile::tempdir().unwrap();
        for (name, incremental) in [("new.db", true), ("old.db", false)] {
            let mut conn = Connection::open(dir.path().join(name)).unwrap();
            if incremental {
                enable_incremental_vacuum(&conn).unwrap();
            }
            configure(&conn, true).unwrap();
            migrate(&mut conn).unwrap();
            conn.execute_batch("CREATE TABLE filler(b BLOB)").unwrap();
            let tx = conn.transaction().unwrap();
            for _ in 0..64 {
                tx.execute("INSERT INTO filler VALUES (zeroblob(1048576))", []).unwrap();
            }
            tx.commit().unwrap();
            conn.execute_batch("DELETE FROM filler").unwrap();
            let before = file_pages(&conn);
            let free = free_pages(&conn).unwrap();
            assert!(free > 16_000, "{free} free pages");
            // A pass that freed all of it keeps it: the log will fill it again.
            release_free_pages(&conn, 0).unwrap();
            assert_eq!(file_pages(&conn), before);
            // The next pass freed nothing: everything above the margin goes.
            let tx = conn.transaction().unwrap();
            release_free_pages(&tx, free).unwrap();
            tx.commit().unwrap();
            let after = file_pages(&conn);
            if incremental {
                assert_eq!(free_pages(&conn).unwrap(), KEPT_FREE_PAGES);
                // The pointer-map pages of the released ones go with them.
                assert!(after <= before - (free - KEPT_FREE_PAGES), "{before} pages, then {after}");
            } else {
                assert_eq!(after, before);
            }
        }
    }
}
