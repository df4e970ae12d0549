//! Query planning: which index yields the candidate rows of an [`EntityQuery`], and when a
//! count is answered by an index alone.
//!
//! Candidates come from one *source*: the ids of the query, the type index (`entity_types`), the
//! numeric index of one attribute that a top-level `q` conjunct compares with a number
//! (`entity_nums`), the R*Tree of the geo-query's GeoProperty (`entity_geo`), or the tenant's
//! whole table. Each index source is probed with a capped count and the smallest wins; when
//! even the smallest is large and no count is asked for, a scan in page order that stops at the
//! page's end is cheaper than materialising the candidates, so the type index (or the table)
//! drives. Whatever the source, types are checked in SQL and every candidate then goes
//! through [`EntityQuery::matches`]: indexes narrow, the evaluator decides.
//!
//! `count=true` over a query that the indexes express exactly (types and/or numeric ranges on
//! one attribute, nothing else) is counted in SQL without decoding an entity.

use crate::{codec, name_id, storage};
use hanbat_model::Result;
use hanbat_query::q::{Expr, NumericRange};
use hanbat_store::{EntityQuery, Order, Page, PageScan};
use rusqlite::Connection;
use rusqlite::types::Value as Sql;
use std::ops::Bound;

/// Index probes count up to this many candidates: beyond it a source is "large".
const PROBE_CAP: i64 = 50_000;
/// Integers beyond 2^53 lose precision as REAL: an exact count leaves them to the evaluator.
const EXACT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Where candidate rows come from.
enum Source {
    Ids(Vec<String>),
    Types(Vec<i64>),
    Numbers(Numbers),
    Geo { attr: i64, rect: [f64; 4] },
    All,
}

/// The numeric ranges that `q` conjuncts put on one attribute.
struct Numbers {
    attr: i64,
    ranges: Vec<(Bound<f64>, Bound<f64>)>,
}

impl Numbers {
    /// `value` conditions: every range for single-valued attributes (they all hold of the one
    /// number), only the first for the others (each range may hold of another element).
    fn conditions(&self, single: bool, args: &mut Vec<Sql>) -> String {
        let ranges = if single { &self.ranges[..] } else { &self.ranges[..1] };
        let mut sql = String::new();
        for (lower, upper) in ranges {
            for (bound, incl, excl) in [(lower, ">=", ">"), (upper, "<=", "<")] {
                match bound {
                    Bound::Included(v) => push_cond(&mut sql, incl, *v, args),
                    Bound::Excluded(v) => push_cond(&mut sql, excl, *v, args),
                    Bound::Unbounded => {}
                }
            }
        }
        sql
    }

    /// The rids with a number in the ranges (a rid may repeat: array elements).
    fn rids(&self, tenant: i64, args: &mut Vec<Sql>) -> String {
        let mut sql = String::new();
        for single in [true, false] {
            if !sql.is_empty() {
                sql.push_str(" UNION ALL ");
            }
            args.extend([Sql::from(tenant), Sql::from(self.attr), Sql::from(single as i64)]);
            sql.push_str("SELECT rid FROM entity_nums WHERE tenant = ? AND attr = ? AND single = ?");
            sql.push_str(&self.conditions(single, args));
        }
        sql
    }
}

fn push_cond(sql: &mut String, op: &str, v: f64, args: &mut Vec<Sql>) {
    sql.push_str(&format!(" AND value {op} ?"));
    args.push(Sql::from(v));
}

fn marks(n: usize) -> String {
    vec!["?"; n].join(",")
}

impl Source {
    /// SQL selecting the candidates' rids (not for `Ids` and `All`).
    fn rids(&self, tenant: i64, args: &mut Vec<Sql>) -> Option<String> {
        match self {
            Source::Types(types) => {
                args.push(Sql::from(tenant));
                args.extend(types.iter().map(|t| Sql::from(*t)));
                Some(format!("SELECT rid FROM entity_types WHERE tenant = ? AND type IN ({})", marks(types.len())))
            }
            Source::Numbers(n) => Some(n.rids(tenant, args)),
            Source::Geo { attr, rect: [x0, x1, y0, y1] } => {
                args.extend([*x1, *x0, *y1, *y0].map(Sql::from));
                args.extend([Sql::from(tenant), Sql::from(*attr)]);
                Some(
                    "SELECT rid FROM entity_geo WHERE min_x <= ? AND max_x >= ? AND min_y <= ? AND max_y >= ? \
                     AND tenant = ? AND attr = ?"
                        .to_string(),
                )
            }
            Source::Ids(_) | Source::All => None,
        }
    }

    /// Candidates, counted up to [`PROBE_CAP`] + 1 (types: exactly, from the counters).
    fn estimate(&self, conn: &Connection, tenant: i64) -> Result<i64> {
        if let Source::Types(types) = self {
            // The discovery counters hold each type's entity count (attr 0): no index walk.
            let mut args = vec![Sql::from(tenant)];
            args.extend(types.iter().map(|t| Sql::from(*t)));
            let sql = format!(
                "SELECT coalesce(sum(n), 0) FROM type_attr_counts WHERE tenant = ? AND type IN ({}) AND attr = 0 AND kind = ''",
                marks(types.len())
            );
            return conn
                .prepare_cached(&sql)
                .and_then(|mut s| s.query_row(rusqlite::params_from_iter(args), |r| r.get(0)))
                .map_err(storage);
        }
        let mut args = Vec::new();
        let Some(rids) = self.rids(tenant, &mut args) else { return Ok(i64::MAX) };
        let sql = format!("SELECT count(*) FROM (SELECT rid FROM ({rids}) LIMIT {})", PROBE_CAP + 1);
        conn.prepare_cached(&sql)
            .and_then(|mut s| s.query_row(rusqlite::params_from_iter(args), |r| r.get(0)))
            .map_err(storage)
    }
}

/// What the query asks of the indexes, with names resolved to ids; `None` when a name the
/// query requires is unknown to the store, so that nothing can match.
struct Needs {
    types: Option<Vec<i64>>,
    numbers: Vec<Numbers>,
    geo: Option<(i64, [f64; 4])>,
}

fn needs(conn: &Connection, q: &EntityQuery) -> Result<Option<Needs>> {
    let types = match q.candidate_types() {
        None => None,
        Some(names) => {
            let mut ids = Vec::new();
            for t in names {
                ids.extend(name_id(conn, t)?);
            }
            if ids.is_empty() {
                return Ok(None);
            }
            Some(ids)
        }
    };
    let mut numbers: Vec<Numbers> = Vec::new();
    for range in q.q.iter().flat_map(|q| q.conjuncts()).filter_map(numeric_range) {
        let Some(attr) = name_id(conn, range.attr)? else { return Ok(None) };
        match numbers.iter_mut().find(|n| n.attr == attr) {
            Some(n) => n.ranges.push((range.lower, range.upper)),
            None => numbers.push(Numbers { attr, ranges: vec![(range.lower, range.upper)] }),
        }
    }
    let geo = match &q.geo {
        Some(g) => match g.search_bbox() {
            Some(rect) => {
                let Some(attr) = name_id(conn, &g.geoproperty.iri)? else { return Ok(None) };
                Some((attr, [rect.min().x, rect.max().x, rect.min().y, rect.max().y]))
            }
            None => None,
        },
        None => None,
    };
    Ok(Some(Needs { types, numbers, geo }))
}

fn numeric_range(e: &Expr) -> Option<NumericRange<'_>> {
    match e {
        Expr::Term(t) => t.numeric_range(),
        _ => None,
    }
}

/// Chooses the source of candidates (see the module documentation).
fn choose(conn: &Connection, tenant: i64, q: &EntityQuery, needs: Needs) -> Result<Source> {
    if let Some(ids) = q.candidate_ids() {
        return Ok(Source::Ids(ids.into_iter().map(String::from).collect()));
    }
    let mut options: Vec<Source> = Vec::new();
    if let Some(types) = &needs.types {
        options.push(Source::Types(types.clone()));
    }
    options.extend(needs.numbers.into_iter().map(Source::Numbers));
    if let Some((attr, rect)) = needs.geo {
        options.push(Source::Geo { attr, rect });
    }
    let fallback = || needs.types.clone().map(Source::Types).unwrap_or(Source::All);
    if options.len() <= 1 && !matches!(options.first(), Some(Source::Numbers(_) | Source::Geo { .. })) {
        return Ok(fallback());
    }
    let mut best: Option<(i64, Source)> = None;
    for option in options {
        let estimate = option.estimate(conn, tenant)?;
        if best.as_ref().is_none_or(|(b, _)| estimate < *b) {
            best = Some((estimate, option));
        }
    }
    Ok(match best {
        Some((estimate, source)) if estimate <= PROBE_CAP || q.count => source,
        _ => fallback(),
    })
}

/// Runs the query: candidates in page order through [`EntityQuery::matches`], one page kept,
/// every match counted when asked to (in SQL when the indexes express the query exactly).
pub(crate) fn run_query(conn: &Connection, tenant: i64, q: &EntityQuery) -> Result<Page> {
    let Some(needs) = needs(conn, q)? else {
        return Ok(Page { entities: Vec::new(), count: q.count.then_some(0) });
    };
    let types = needs.types.clone().unwrap_or_default();
    if q.count
        && let Some(count) = exact_count(conn, tenant, q, &needs)?
    {
        let page = if q.limit == 0 {
            Vec::new()
        } else {
            let uncounted = EntityQuery { count: false, ..q.clone() };
            scan(conn, tenant, &uncounted, choose(conn, tenant, &uncounted, needs)?, &types)?.entities
        };
        return Ok(Page { entities: page, count: Some(count) });
    }
    let source = choose(conn, tenant, q, needs)?;
    scan(conn, tenant, q, source, &types)
}

/// Streams the source's rows in page order through the evaluator. `types` (when the source is
/// not the type index) are checked in SQL first, before a document is decoded.
fn scan(conn: &Connection, tenant: i64, q: &EntityQuery, source: Source, types: &[i64]) -> Result<Page> {
    // `+e.tenant` keeps SQLite off the (tenant, id) index for every source but ids: with it,
    // SQLite walked the tenant's every row and sorted them by rid before the first one came
    // out (EXPLAIN QUERY PLAN: "USE TEMP B-TREE FOR ORDER BY"); without it, rows come by rid
    // straight from the candidates' sorted list, or the table itself, and the scan stops at
    // the page's end.
    let tenant_term = if matches!(source, Source::Ids(_)) { "e.tenant = ?" } else { "+e.tenant = ?" };
    let mut sql = format!("SELECT e.doc FROM entities e WHERE {tenant_term}");
    let mut args: Vec<Sql> = vec![tenant.into()];
    match &source {
        Source::Ids(ids) => {
            sql.push_str(&format!(" AND e.id IN ({})", marks(ids.len())));
            args.extend(ids.iter().map(|i| Sql::from(i.clone())));
        }
        Source::All => {}
        other => {
            let mut rid_args = Vec::new();
            if let Some(rids) = other.rids(tenant, &mut rid_args) {
                sql.push_str(&format!(" AND e.rid IN ({rids})"));
                args.extend(rid_args);
            }
        }
    }
    if !types.is_empty() && !matches!(source, Source::Types(_)) {
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM entity_types t WHERE t.tenant = e.tenant AND t.rid = e.rid AND t.type IN ({}))",
            marks(types.len())
        ));
        args.extend(types.iter().map(|t| Sql::from(*t)));
    }
    sql.push_str(match q.order_by_id {
        None => " ORDER BY e.rid",
        Some(Order::Ascending) => " ORDER BY e.id",
        Some(Order::Descending) => " ORDER BY e.id DESC",
    });
    let mut stmt = conn.prepare_cached(&sql).map_err(storage)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args)).map_err(storage)?;
    let mut scan = PageScan::new(q);
    while let Some(row) = rows.next().map_err(storage)? {
        let bytes: &[u8] = row.get_ref(0).map_err(storage)?.as_blob().map_err(storage)?;
        if !scan.offer(codec::decode(bytes)?) {
            break;
        }
    }
    Ok(scan.finish())
}

/// The number of matches, counted in SQL, when the query is exactly what the indexes express:
/// plain type selectors and/or numeric ranges on one attribute. `None` otherwise.
fn exact_count(conn: &Connection, tenant: i64, q: &EntityQuery, needs: &Needs) -> Result<Option<u64>> {
    let plain_types = q.entities.iter().all(|s| s.ids.is_empty() && s.id_pattern.is_none());
    if !plain_types
        || (!q.entities.is_empty() && needs.types.is_none())
        || !q.with_any_attr.is_empty()
        || q.scope.is_some()
        || q.geo.is_some()
        || needs.numbers.len() > 1
    {
        return Ok(None);
    }
    if let Some(query) = &q.q
        && !query.conjuncts().all(|c| numeric_range(c).is_some())
    {
        return Ok(None);
    }
    let mut args: Vec<Sql> = Vec::new();
    let type_check = |alias: &str, args: &mut Vec<Sql>| match &needs.types {
        Some(types) => {
            args.extend(types.iter().map(|t| Sql::from(*t)));
            format!(
                " AND EXISTS (SELECT 1 FROM entity_types t WHERE t.tenant = {alias}.tenant AND t.rid = {alias}.rid AND t.type IN ({}))",
                marks(types.len())
            )
        }
        None => String::new(),
    };
    let sql = match (needs.numbers.first(), &needs.types) {
        (None, None) => {
            args.push(Sql::from(tenant));
            "SELECT count(*) FROM entities WHERE tenant = ?".to_string()
        }
        (None, Some(types)) => {
            args.push(Sql::from(tenant));
            args.extend(types.iter().map(|t| Sql::from(*t)));
            format!(
                "SELECT count(DISTINCT rid) FROM entity_types WHERE tenant = ? AND type IN ({})",
                marks(types.len())
            )
        }
        (Some(numbers), _) => {
            // Single numbers of exact magnitude are counted here; the rest (array elements,
            // multi-instance attributes, huge integers) go through the evaluator below.
            args.extend([Sql::from(tenant), Sql::from(numbers.attr)]);
            let mut sql = format!(
                "SELECT count(*) FROM entity_nums n WHERE n.tenant = ? AND n.attr = ? AND n.single = 1 AND abs(n.value) < {EXACT_LIMIT}"
            );
            sql.push_str(&numbers.conditions(true, &mut args).replace(" value ", " n.value "));
            sql.push_str(&type_check("n", &mut args));
            sql
        }
    };
    let mut count: u64 = conn
        .prepare_cached(&sql)
        .and_then(|mut s| s.query_row(rusqlite::params_from_iter(args), |r| r.get::<_, i64>(0)))
        .map_err(storage)?
        .max(0) as u64;
    if let Some(numbers) = needs.numbers.first() {
        // Three index ranges rather than one OR, which would scan the attribute's every number.
        let mut args: Vec<Sql> = vec![Sql::from(tenant)];
        let mut parts = Vec::new();
        for (single, extra) in [
            (0, None),
            (1, Some(format!(" AND value >= {EXACT_LIMIT}"))),
            (1, Some(format!(" AND value <= -{EXACT_LIMIT}"))),
        ] {
            args.extend([Sql::from(tenant), Sql::from(numbers.attr)]);
            let condition = match extra {
                None => numbers.conditions(false, &mut args),
                Some(huge) => huge,
            };
            parts.push(format!(
                "SELECT rid FROM entity_nums WHERE tenant = ? AND attr = ? AND single = {single}{condition}"
            ));
        }
        let mut sql =
            format!("SELECT e.doc FROM entities e WHERE +e.tenant = ? AND e.rid IN ({})", parts.join(" UNION ALL "));
        sql.push_str(&type_check("e", &mut args));
        let mut stmt = conn.prepare_cached(&sql).map_err(storage)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args)).map_err(storage)?;
        while let Some(row) = rows.next().map_err(storage)? {
            let entity = codec::decode(row.get_ref(0).map_err(storage)?.as_blob().map_err(storage)?)?;
            if q.matches(&entity) {
                count += 1;
            }
        }
    }
    Ok(Some(count))
}
