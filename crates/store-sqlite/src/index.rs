//! Secondary indexes of entity values for the query planner ([`crate::plan`]):
//!
//! - `entity_nums(tenant, attr, single, value, rid)`: every number a q-language comparison on a
//!   top-level attribute can see — the value of each instance, the numeric elements of array and
//!   list values, the `@value` of JSON-LD value objects. `single` is 1 when the attribute has
//!   one instance holding one number: only then can several ranges on the attribute be
//!   intersected (with arrays, `a>5;a<3` holds for `[1, 9]`).
//! - `entity_geo`: an R*Tree of the bounding box of each GeoProperty instance, with the tenant,
//!   attribute and rid as auxiliary columns; `entity_geo_keys` maps rids to R*Tree rows for
//!   deletion.
//!
//! Both are supersets: the planner uses them to find candidates, and every candidate still goes
//! through the query's own evaluation, so a value indexed that does not match costs a decode,
//! never a wrong answer. What must hold is the other direction: every value that can match is
//! indexed.

use hanbat_model::{AttrValue, Entity};
pub(crate) use hanbat_query::comparable_numbers as numbers;
use rusqlite::{Transaction, params};
use serde_json::Value as Json;
use std::collections::HashSet;

/// The bounding boxes `[min_x, max_x, min_y, max_y]` of the entity's GeoProperty instances, from
/// their raw coordinates (a superset of what a valid geometry covers; an invalid one matches
/// nothing anyway).
pub(crate) fn boxes(entity: &Entity) -> Vec<(&str, [f64; 4])> {
    let mut out = Vec::new();
    for (name, instances) in &entity.attrs {
        for inst in instances {
            if let AttrValue::GeoProperty(v) = &inst.value {
                let mut b = [f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY];
                extend_box(v.get("coordinates").unwrap_or(&Json::Null), &mut b);
                if b[0] <= b[1] && b[2] <= b[3] {
                    out.push((name.as_str(), b));
                }
            }
        }
    }
    out
}

fn extend_box(coordinates: &Json, b: &mut [f64; 4]) {
    let Json::Array(items) = coordinates else { return };
    if let (Some(x), Some(y)) = (items.first().and_then(Json::as_f64), items.get(1).and_then(Json::as_f64)) {
        (b[0], b[1], b[2], b[3]) = (b[0].min(x), b[1].max(x), b[2].min(y), b[3].max(y));
    } else {
        items.iter().for_each(|i| extend_box(i, b));
    }
}

/// What the index holds for an entity before a write.
pub(crate) enum Indexed<'a> {
    /// Nothing: the entity is new (or its earlier rows are not known: they stay, a harmless
    /// superset, and every row of the new state is written).
    Nothing,
    /// The rows of this state of the entity.
    Entity(&'a Entity),
}

/// Brings the index rows of `rid` from those of `before` to those of `entity` (none when it
/// was deleted). Only the rows that differ are deleted or inserted, by primary key: a sensor
/// update changes a number or two of an entity's dozen, and most updates change no number or
/// geometry at all. (Deleting by primary key is also why `entity_nums` needs no index by rid,
/// which cost every write a second B-tree update per number.)
pub(crate) fn refresh(
    tx: &Transaction,
    name_id: &mut dyn FnMut(&Transaction, &str) -> rusqlite::Result<i64>,
    tenant: i64,
    rid: i64,
    before: Indexed<'_>,
    entity: Option<&Entity>,
) -> rusqlite::Result<()> {
    let nums = entity.map(numbers).unwrap_or_default();
    let geo = entity.map(boxes).unwrap_or_default();
    let (old_nums, old_geo) = match before {
        Indexed::Nothing => (Vec::new(), None),
        Indexed::Entity(previous) => (numbers(previous), Some(boxes(previous))),
    };
    if old_nums != nums {
        let new_keys: HashSet<_> = nums.iter().map(num_key).collect();
        let old_keys: HashSet<_> = old_nums.iter().map(num_key).collect();
        // Deletions first: 0.0 and -0.0 are one row to SQLite but two keys here.
        for (name, value, single) in old_nums.iter().filter(|n| !new_keys.contains(&num_key(n))) {
            let attr = name_id(tx, name)?;
            tx.prepare_cached(
                "DELETE FROM entity_nums WHERE tenant = ?1 AND attr = ?2 AND single = ?3 AND value = ?4 AND rid = ?5",
            )?
            .execute(params![tenant, attr, single, value, rid])?;
        }
        for (name, value, single) in nums.iter().filter(|n| !old_keys.contains(&num_key(n))) {
            let attr = name_id(tx, name)?;
            tx.prepare_cached(
                "INSERT OR IGNORE INTO entity_nums(tenant, attr, single, value, rid) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![tenant, attr, single, value, rid])?;
        }
    }
    let geo_changed = match &old_geo {
        None => !geo.is_empty(),
        Some(old) => *old != geo,
    };
    if geo_changed {
        if old_geo.is_some() {
            tx.prepare_cached("DELETE FROM entity_geo WHERE gid IN (SELECT gid FROM entity_geo_keys WHERE rid = ?1)")?
                .execute([rid])?;
            tx.prepare_cached("DELETE FROM entity_geo_keys WHERE rid = ?1")?.execute([rid])?;
        }
        for (name, [x0, x1, y0, y1]) in geo {
            let attr = name_id(tx, name)?;
            tx.prepare_cached("INSERT INTO entity_geo_keys(rid) VALUES (?1)")?.execute([rid])?;
            let gid = tx.last_insert_rowid();
            tx.prepare_cached(
                "INSERT INTO entity_geo(gid, min_x, max_x, min_y, max_y, tenant, attr, rid)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![gid, x0, x1, y0, y1, tenant, attr, rid])?;
        }
    }
    Ok(())
}

/// A number's row, comparable (f64 is not `Eq`).
fn num_key<'a>(&(name, value, single): &(&'a str, f64, bool)) -> (&'a str, u64, bool) {
    (name, value.to_bits(), single)
}

/// Builds the indexes of every stored entity (the migration that introduces them).
pub(crate) fn backfill(tx: &Transaction) -> rusqlite::Result<()> {
    let mut name_id = |tx: &Transaction, iri: &str| -> rusqlite::Result<i64> {
        tx.prepare_cached("INSERT OR IGNORE INTO names(iri) VALUES (?1)")?.execute([iri])?;
        tx.prepare_cached("SELECT id FROM names WHERE iri = ?1")?.query_row([iri], |r| r.get(0))
    };
    let rows: Vec<(i64, i64, Vec<u8>)> = tx
        .prepare("SELECT rid, tenant, doc FROM entities")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (rid, tenant, doc) in rows {
        // An undecodable document is reported when it is read; it has nothing to index.
        if let Ok(entity) = crate::codec::decode(&doc) {
            refresh(tx, &mut name_id, tenant, rid, Indexed::Nothing, Some(&entity))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hanbat_model::jsonld::core_context;
    use hanbat_model::parse::{Mode, entity};
    use serde_json::json;

    fn parsed(value: Json) -> Entity {
        let Json::Object(object) = value else { panic!("not an object") };
        entity(object, &core_context(), Mode::Entity).unwrap()
    }

    #[test]
    fn numbers_and_boxes_cover_what_comparisons_see() {
        let e = parsed(json!({"id": "urn:ngsi-ld:T:1", "type": "T",
            "a": 3, "b": [1, "x", {"@value": 2}], "c": "7", "d": {"type": "Relationship", "object": "urn:x"},
            "loc": {"type": "GeoProperty", "value": {"type": "LineString", "coordinates": [[1.0, 5.0], [3.0, -2.0]]}}}));
        let mut nums: Vec<(String, f64, bool)> =
            numbers(&e).into_iter().map(|(n, v, s)| (n.rsplit('/').next().unwrap().to_string(), v, s)).collect();
        nums.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(nums, vec![("a".into(), 3.0, true), ("b".into(), 1.0, false), ("b".into(), 2.0, false)]);
        let b = boxes(&e);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].1, [1.0, 3.0, -2.0, 5.0]);
    }

    /// A database written before the indexes existed gets them when the migration runs.
    #[test]
    fn migration_backfills_the_indexes() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::schema::migrate(&mut conn).unwrap();
        let e = parsed(json!({"id": "urn:ngsi-ld:T:1", "type": "T", "a": 3,
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [127.0, 36.0]}}}));
        conn.execute_batch(
            "DROP TABLE entity_nums; DROP TABLE entity_geo; DROP TABLE entity_geo_keys;
             DROP INDEX t_chunks_by_observed; DROP INDEX t_chunks_by_recorded;
             ALTER TABLE t_chunks DROP COLUMN unobserved; PRAGMA user_version = 4;",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO entities(tenant, id, doc) VALUES (1, ?1, ?2)",
            rusqlite::params![e.id, crate::codec::encode(&e).unwrap()],
        )
        .unwrap();
        crate::schema::migrate(&mut conn).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM entity_nums WHERE value = 3 AND single = 1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        let g: i64 = conn
            .query_row(
                "SELECT count(*) FROM entity_geo WHERE min_x <= 127.0 AND max_x >= 127.0 AND tenant = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(g, 1);
    }
}
