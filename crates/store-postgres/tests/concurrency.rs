//! Concurrent writers on one database, as several nodes are: batches touching the same entities
//! in different orders, and the expiry sweep, neither deadlock nor lose updates; discovery
//! counters stay exact.

#![allow(clippy::unwrap_used)] // a test: failing loudly is the point

use hanbat_model::{Attribute, Entity, Timestamp};
use hanbat_store::{EntityQuery, HistoryQuery, Store, WriteOp};
use hanbat_store_postgres::testing::TestDatabase;
use hanbat_store_postgres::{Options, PgStore};
use std::sync::Arc;

const TYPE: &str = "https://example.org/C";
const COUNTER: &str = "https://example.org/counter";

fn id(i: usize) -> String {
    format!("urn:ngsi-ld:C:{i}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_batches_neither_deadlock_nor_lose_writes() {
    let Some(db) = TestDatabase::create().await else { return };
    // Two "nodes": two stores, two pools.
    let nodes = [
        Arc::new(PgStore::connect(&db.url, Options::default()).await.unwrap()),
        Arc::new(PgStore::connect(&db.url, Options::default()).await.unwrap()),
    ];
    let creates = (0..10).map(|i| WriteOp::Create(Entity::new(id(i), vec![TYPE.into()]))).collect();
    assert!(nodes[0].write("", creates).await.unwrap().iter().all(Result::is_ok));
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let store = nodes[w % 2].clone();
            tokio::spawn(async move {
                for round in 0..10 {
                    // Each writer walks the entities in its own order.
                    let mut order: Vec<usize> = (0..10).collect();
                    order.rotate_left((w * 3 + round) % 10);
                    if w % 2 == 1 {
                        order.reverse();
                    }
                    let ops = order
                        .into_iter()
                        .map(|i| {
                            let mut e = Entity::new(id(i), vec![TYPE.into()]);
                            e.attrs
                                .insert(COUNTER.into(), vec![Attribute::property(((w * 100 + round) as i64).into())]);
                            WriteOp::Merge { id: id(i), fragment: e }
                        })
                        .collect();
                    let results = store.write("", ops).await.unwrap();
                    assert!(results.iter().all(Result::is_ok));
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let counts = nodes[1].type_attr_counts("").await.unwrap();
    let of = |attr: Option<&str>| counts.iter().find(|c| c.attr.as_deref() == attr).map(|c| c.entities);
    assert_eq!(of(None), Some(10));
    assert_eq!(of(Some(COUNTER)), Some(10));
    // Every acknowledged write is in history: 6 writers × 10 rounds per entity.
    let history = HistoryQuery {
        select: EntityQuery { limit: 100, ..Default::default() },
        max_instances: usize::MAX,
        ..Default::default()
    };
    let page = nodes[0].history("", &history).await.unwrap();
    assert_eq!(page.entities.len(), 10);
    for e in &page.entities {
        assert_eq!(e.entity.attrs[COUNTER].len(), 60, "{}", e.entity.id);
    }
    // The expiry sweep of both nodes at once: nothing is due, nothing fails.
    let now = Timestamp::now();
    let (a, b) = tokio::join!(nodes[0].expire(&now), nodes[1].expire(&now));
    assert!(a.unwrap().is_empty() && b.unwrap().is_empty());
}
