//! Migrations on a real server: an empty database is brought to the current version, running
//! them again changes nothing, and nodes starting together do not race.

#![allow(clippy::unwrap_used)] // a test: failing loudly is the point

use hanbat_store::{Store, WriteOp};
use hanbat_store_postgres::testing::TestDatabase;
use hanbat_store_postgres::{Options, PgStore, schema};

async fn versions(url: &str) -> Vec<i32> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let rows = client.query("SELECT version FROM schema_migrations ORDER BY version", &[]).await.unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn migrating_an_empty_database_then_again_is_a_no_op() {
    let Some(db) = TestDatabase::create().await else { return };
    let store = PgStore::connect(&db.url, Options::default()).await.unwrap();
    let expected: Vec<i32> = (1..=schema::VERSION).collect();
    assert_eq!(versions(&db.url).await, expected);
    let entity = hanbat_model::Entity::new("urn:ngsi-ld:M:1", vec!["https://example.org/M".into()]);
    let results = store.write("", vec![WriteOp::Create(entity)]).await.unwrap();
    assert!(results[0].is_ok());
    drop(store);
    // Again: nothing applied twice, data untouched.
    let store = PgStore::connect(&db.url, Options::default()).await.unwrap();
    assert_eq!(versions(&db.url).await, expected);
    assert!(store.get("", "urn:ngsi-ld:M:1").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    let Some(db) = TestDatabase::create().await else { return };
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { PgStore::connect(&url, Options::default()).await.map(drop) })
        })
        .collect();
    for s in starts {
        s.await.unwrap().unwrap();
    }
    assert_eq!(versions(&db.url).await, (1..=schema::VERSION).collect::<Vec<_>>());
}
