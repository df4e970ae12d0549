//! The schema, as numbered migrations embedded in the binary and applied at start.
//!
//! `schema_migrations` records each applied version; a start applies the missing ones, each in
//! its own transaction, under a session advisory lock so that nodes starting together migrate
//! once (the others wait, then find nothing to do).

use tokio_postgres::Client;

/// Advisory lock key of migrations and partition upkeep ("hanbat" in ASCII).
const MIGRATION_LOCK: i64 = 0x68_61_6e_62_61_74;

/// Text columns that are keys use the "C" collation: byte order, as the embedded store sorts
/// (`orderBy=id`, discovery), independent of the database's locale, and btree-prefix friendly.
const MIGRATIONS: &[&str] = &[
    // 1: entities, discovery counters, documents, tenants.
    r#"
    CREATE TABLE tenants(name text COLLATE "C" PRIMARY KEY);
    -- `rid` orders query pages (creation order); `doc` is the entity's serde form
    -- (bytea from migration 5).
    CREATE TABLE entities(
        tenant text COLLATE "C" NOT NULL,
        id text COLLATE "C" NOT NULL,
        rid bigserial NOT NULL,
        types text[] COLLATE "C" NOT NULL,
        doc jsonb NOT NULL,
        -- The earliest expiresAt of the entity or its attributes (§4.22), for the expiry sweep.
        expires bigint,
        -- Bounding box (x: longitude, y: latitude) of the `location` GeoProperty's instances:
        -- geo-queries on `location` prefilter with it (GiST, no PostGIS needed).
        location_box box,
        PRIMARY KEY(tenant, id)
    );
    CREATE UNIQUE INDEX entities_by_rid ON entities(tenant, rid);
    CREATE INDEX entities_by_type ON entities USING gin(types);
    CREATE INDEX entities_by_expiry ON entities(expires) WHERE expires IS NOT NULL;
    CREATE INDEX entities_by_location ON entities USING gist(location_box);
    -- attr '' (kind ''): the number of entities of the type.
    CREATE TABLE type_attr_counts(
        tenant text COLLATE "C" NOT NULL, type text COLLATE "C" NOT NULL, attr text COLLATE "C" NOT NULL,
        kind text COLLATE "C" NOT NULL, n bigint NOT NULL,
        PRIMARY KEY(tenant, type, attr, kind)
    );
    CREATE TABLE docs(
        tenant text COLLATE "C" NOT NULL, kind text COLLATE "C" NOT NULL, id text COLLATE "C" NOT NULL,
        body jsonb NOT NULL,
        PRIMARY KEY(tenant, kind, id)
    );
    "#,
    // 2: history. `t_entities` keeps what the temporal API reports of an entity, also after it
    // is deleted; `t_instances` holds one row per attribute instance, the sample in the chunk
    // codec of hanbat-temporal (a few bytes for a number), partitioned by the month it was
    // recorded (retention drops whole partitions; BRIN keeps time ranges cheap to find).
    r#"
    CREATE TABLE t_entities(
        tid bigserial PRIMARY KEY,
        tenant text COLLATE "C" NOT NULL, id text COLLATE "C" NOT NULL,
        types text[] NOT NULL, scopes text[] NOT NULL DEFAULT '{}',
        created bigint NOT NULL, modified bigint NOT NULL, deleted bigint,
        UNIQUE(tenant, id)
    );
    -- Instance ids: never reused, also across partitions.
    CREATE SEQUENCE t_instance_ids;
    CREATE TABLE t_instances(
        tid bigint NOT NULL,
        attr text COLLATE "C" NOT NULL,
        dataset text COLLATE "C" NOT NULL,
        inst bigint NOT NULL DEFAULT nextval('t_instance_ids'),
        recorded bigint NOT NULL,
        observed bigint,
        data bytea NOT NULL
    ) PARTITION BY RANGE (recorded);
    CREATE INDEX t_instances_by_series ON t_instances(tid, attr, dataset);
    CREATE INDEX t_instances_by_time ON t_instances USING brin(recorded);
    CREATE TABLE t_instances_default PARTITION OF t_instances DEFAULT;
    -- Creates the monthly partition holding `at` (µs since the epoch) unless it exists.
    CREATE FUNCTION hanbat_month_partition(at bigint) RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        start timestamptz := date_trunc('month', to_timestamp(at / 1e6) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
        name text := 't_instances_' || to_char(start AT TIME ZONE 'UTC', 'YYYYMM');
    BEGIN
        IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF t_instances FOR VALUES FROM (%s) TO (%s)', name,
                (extract(epoch FROM start) * 1e6)::bigint,
                (extract(epoch FROM start + interval '1 month') * 1e6)::bigint);
        END IF;
    EXCEPTION WHEN check_violation THEN
        -- Rows of that month already sit in the default partition: they stay there.
        RAISE NOTICE 'partition % not created: %', name, SQLERRM;
    END $$;
    "#,
    // 3: several nodes (see `cluster`). `nodes`: membership by heartbeat. `change_log`: the
    // changes a node committed while it had peers, one row per write transaction, for the
    // other nodes to publish; `xid` is the writing transaction (a reader takes only rows of
    // transactions older than its snapshot's xmin, so a row committed late is never skipped).
    // `subscription_leases`: which node delivers each subscription, until when.
    r#"
    CREATE TABLE nodes(
        id text COLLATE "C" PRIMARY KEY,
        started timestamptz NOT NULL DEFAULT now(),
        heartbeat timestamptz NOT NULL
    );
    CREATE TABLE change_log(
        xid bigint NOT NULL DEFAULT pg_current_xact_id()::text::bigint,
        seq bigserial NOT NULL,
        written timestamptz NOT NULL DEFAULT now(),
        node text COLLATE "C" NOT NULL,
        changes bytea NOT NULL,
        PRIMARY KEY(xid, seq)
    );
    CREATE INDEX change_log_by_time ON change_log(written);
    CREATE TABLE subscription_leases(
        tenant text COLLATE "C" NOT NULL,
        id text COLLATE "C" NOT NULL,
        node text COLLATE "C" NOT NULL DEFAULT '',
        expires timestamptz NOT NULL DEFAULT '-infinity',
        -- When the holder last renewed: a node taking the lease over replays the changes
        -- logged since then.
        renewed timestamptz NOT NULL DEFAULT '-infinity',
        PRIMARY KEY(tenant, id)
    );
    CREATE INDEX subscription_leases_by_node ON subscription_leases(node);
    INSERT INTO subscription_leases(tenant, id) SELECT tenant, id FROM docs WHERE kind = 'subscription';
    "#,
    // 4: discovery counters in slots. One row per (type, attribute, kind) made every writer of
    // a type wait for the previous one's commit (a create rate of one per fsync); each
    // connection now adds to the slot of its backend, and readers sum the slots.
    r#"
    ALTER TABLE type_attr_counts ADD COLUMN slot smallint NOT NULL DEFAULT 0;
    ALTER TABLE type_attr_counts DROP CONSTRAINT type_attr_counts_pkey;
    ALTER TABLE type_attr_counts ADD PRIMARY KEY (tenant, type, attr, kind, slot);
    "#,
    // 5: an entity's `doc` is its serde JSON as bytes. No SQL reads inside it (queries are
    // evaluated in Rust), and jsonb cost the server a parse on every write and a print on every
    // read, and reordered the attributes (jsonb sorts keys).
    r#"
    ALTER TABLE entities ALTER COLUMN doc TYPE bytea USING convert_to(doc::text, 'UTF8');
    "#,
];

/// Applies the missing migrations and makes sure the partitions of this month and the next
/// exist. Idempotent; concurrent callers serialise on the advisory lock.
pub async fn migrate(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
    let result = migrate_locked(client).await;
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await;
    result.and(unlocked.map(drop))
}

async fn migrate_locked(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations(version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let applied: i32 = client.query_one("SELECT coalesce(max(version), 0) FROM schema_migrations", &[]).await?.get(0);
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied.max(0) as usize) {
        let version = index as i32 + 1;
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO schema_migrations(version) VALUES ($1)", &[&version]).await?;
        tx.commit().await?;
        tracing::info!(version, "applied PostgreSQL migration");
    }
    ensure_partitions(client).await
}

/// The partitions of the current and the next month (run at start and by the maintenance task,
/// so a month's partition exists before its first instance is recorded).
pub async fn ensure_partitions(client: &Client) -> Result<(), tokio_postgres::Error> {
    // One implicit transaction: the lock serialises partition DDL between nodes.
    client
        .batch_execute(&format!(
            "SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
             SELECT hanbat_month_partition((extract(epoch FROM now()) * 1e6)::bigint);
             SELECT hanbat_month_partition((extract(epoch FROM now() + interval '1 month') * 1e6)::bigint);"
        ))
        .await
}

/// The number of migrations this build knows (tests check that a database is at this version).
pub const VERSION: i32 = MIGRATIONS.len() as i32;
