//! History as stores keep and answer it: every committed change is recorded (in the same
//! transaction) as attribute instances; the temporal API reads and edits them.

use crate::ops::SCOPE_IRI;
use crate::{AttrChangeKind, Change, ChangeKind, EntityQuery};
use hanbat_model::{AttrValue, Attribute, Entity, Timestamp};
use hanbat_temporal::aggregate::Periods;
use hanbat_temporal::{AggrMethod, Aggregation, Origin, Sample, SampleValue, TimeFilter, TimeProperty};
use indexmap::IndexMap;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;

/// A temporal query (§5.7.3, §5.7.4): which entities, which attributes, which instants.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    /// Entity selection; `q`, `scopeQ` and geo-queries are evaluated on the latest instance of
    /// each attribute. Its `limit`/`offset`/`count` page the entities.
    pub select: EntityQuery,
    /// Attributes to return (expanded); empty: all.
    pub attrs: Vec<String>,
    /// Instances to return by datasetId (`@none`: the default instance); `None`: all.
    pub dataset_ids: Option<Vec<String>>,
    pub time: TimeFilter,
    pub aggregation: Option<Aggregation>,
    /// Leave out entities that have no instance in the time window (queries do; retrieving one
    /// entity does not).
    pub skip_empty: bool,
    /// At most this many instances per entity (all attributes together); more are cut and the
    /// response says so (§6.3.10, 206 + Content-Range).
    pub max_instances: usize,
}

/// One entity's history as a query returns it.
#[derive(Debug, Clone, Default)]
pub struct TemporalEntity {
    /// Id, types, scopes, times; `attrs` holds the instances (each with `instance_id`,
    /// `observed_at`, `created_at`/`modified_at` = when recorded, `deleted_at` for deletions), in
    /// ascending order of the query's time property.
    pub entity: Entity,
    /// With aggregation instead of instances: per attribute, its kind and per method the rows
    /// `[value, startAt, endAt]`.
    pub aggregated: IndexMap<String, AggregatedAttr>,
    /// Set when instances were cut at `max_instances`.
    pub page: Option<InstancePage>,
}

/// The part of an entity's history a cut response holds, in traversal order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstancePage {
    /// The instant of the first instance returned (the most recent one when descending).
    pub first: i64,
    /// The instant of the last instance returned.
    pub last: i64,
    /// Most recent first (`lastN`).
    pub descending: bool,
}

#[derive(Debug, Clone)]
pub struct AggregatedAttr {
    /// NGSI-LD attribute kind (`Property`, `Relationship`, …).
    pub kind: &'static str,
    pub methods: Vec<(AggrMethod, Vec<Value>)>,
}

#[derive(Debug, Clone, Default)]
pub struct HistoryPage {
    pub entities: Vec<TemporalEntity>,
    pub count: Option<u64>,
}

/// Edits of recorded history by the temporal API (§5.6.12–5.6.16); they never change the
/// current state of an entity. (Adding instances goes through the normal write path:
/// `WriteOp::Temporal`.)
#[derive(Debug, Clone)]
pub enum HistoryOp {
    DeleteEntity {
        id: String,
    },
    /// Every instance of an attribute (of one datasetId, or of all with `all`).
    DeleteAttr {
        id: String,
        attr: String,
        dataset_id: Option<String>,
        all: bool,
    },
    /// Replaces members of one instance (by its `instanceId`).
    PatchInstance {
        id: String,
        attr: String,
        instance_id: String,
        /// Boxed: an attribute is far larger than the other variants.
        fragment: Box<Attribute>,
    },
    DeleteInstance {
        id: String,
        attr: String,
        instance_id: String,
    },
}

impl HistoryOp {
    pub fn entity_id(&self) -> &str {
        match self {
            Self::DeleteEntity { id }
            | Self::DeleteAttr { id, .. }
            | Self::PatchInstance { id, .. }
            | Self::DeleteInstance { id, .. } => id,
        }
    }
}

/// What a history edit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryOutcome {
    Updated,
}

// ---- What both stores share: recording a change, shaping instances, answering a query ----
//
// Stores differ in how they keep samples (SQLite: a log compacted into chunks; PostgreSQL: a
// partitioned table of instances); what a change records and how a temporal query selects,
// windows, cuts and aggregates them is defined once, here.

/// One attribute instance a committed change records in history.
#[derive(Debug, Clone)]
pub struct RecordedInstance {
    /// Expanded attribute name (`scope` for changes of the entity's scopes).
    pub name: String,
    /// The datasetId, empty for the default instance.
    pub dataset: String,
    pub unit: Option<String>,
    /// With a placeholder origin: the store assigns it when it stores the sample.
    pub sample: Sample,
}

fn recorded(name: &str, attr: &Attribute, at: i64) -> RecordedInstance {
    RecordedInstance {
        name: name.to_string(),
        dataset: attr.dataset_id.clone().unwrap_or_default(),
        unit: attr.unit_code.clone(),
        sample: Sample::from_instance(Origin { record: 0, index: 0 }, at, attr),
    }
}

/// The instances a committed change records: those it created or updated, deletion markers,
/// changes of scope; or, for temporal writes, every instance of its payload.
pub fn recorded_instances(change: &Change) -> Vec<RecordedInstance> {
    let at = change.at.micros();
    if let Some(history) = &change.history {
        return history.iter().flat_map(|(name, instances)| instances.iter().map(|a| recorded(name, a, at))).collect();
    }
    let mut items = Vec::with_capacity(change.attrs.len() + 1);
    if let Some(sample) = scope_change(change) {
        items.push(RecordedInstance { name: SCOPE_IRI.to_string(), dataset: String::new(), unit: None, sample });
    }
    for c in &change.attrs {
        match c.kind {
            AttrChangeKind::Created | AttrChangeKind::Updated => {
                if let Some(attr) = change.entity.instance(&c.name, c.dataset_id.as_deref()) {
                    items.push(recorded(&c.name, attr, at));
                }
            }
            AttrChangeKind::Deleted => {
                // The deleted instance: in the entity before an update, in the last state of a
                // deleted entity.
                let before = change.previous.as_deref().unwrap_or(&change.entity);
                let deleted = before.instance(&c.name, c.dataset_id.as_deref());
                let value = deleted.map_or(AttrValue::Null, |a| hanbat_temporal::codec::null_of_kind(&a.value));
                let mut marker = Attribute::new(value);
                marker.dataset_id = c.dataset_id.clone();
                // The deletion of a transient instance expires with it.
                marker.expires_at = deleted.and_then(|a| a.expires_at.clone());
                items.push(recorded(&c.name, &marker, at));
            }
        }
    }
    items
}

/// Scope is history too (§4.5.6 of V1.9): a Property instance per change of an entity's scopes,
/// observed when it was modified; clearing the scopes records a deletion with `[]`.
fn scope_change(change: &Change) -> Option<Sample> {
    let before = change.previous.as_ref().map(|p| p.scopes.as_slice()).unwrap_or_default();
    let after = if change.kind == ChangeKind::Deleted { &[][..] } else { change.entity.scopes.as_slice() };
    if before == after {
        return None;
    }
    let at = change.at.micros();
    let value = Value::Array(after.iter().cloned().map(Value::String).collect());
    let origin = Origin { record: 0, index: 0 };
    if after.is_empty() {
        let deleted = SampleValue::Deleted(Box::new(Attribute::property(value)));
        return Some(Sample { origin, recorded: at, observed: None, value: deleted });
    }
    let mut attr = Attribute::property(value);
    attr.observed_at = Some(change.at.clone());
    Some(Sample::from_instance(origin, at, &attr))
}

/// The attribute instance a sample stands for.
pub fn instance_of(sample: &Sample, unit: Option<&str>, dataset: &str) -> Attribute {
    let mut a = match &sample.value {
        SampleValue::Integer(i) => Attribute::property((*i).into()),
        SampleValue::Float(f) => {
            Attribute::property(serde_json::Number::from_f64(*f).map(Into::into).unwrap_or_default())
        }
        SampleValue::Instance(a) | SampleValue::Deleted(a) => (**a).clone(),
    };
    if sample.is_numeric() {
        a.unit_code = unit.map(str::to_string);
    }
    if matches!(sample.value, SampleValue::Deleted(_)) {
        a.deleted_at = Some(Timestamp::from_micros(sample.recorded));
    }
    a.observed_at = sample.observed.map(Timestamp::from_micros);
    a.created_at = Some(Timestamp::from_micros(sample.recorded));
    a.modified_at = Some(Timestamp::from_micros(sample.recorded));
    a.instance_id = Some(sample.origin.instance_id());
    a.dataset_id = (!dataset.is_empty()).then(|| dataset.to_string());
    a
}

/// A patched instance (§5.6.15): merge-patch of `fragment`'s members (value, observedAt,
/// unitCode, sub-attributes) into the instance `sample` stands for; keeps origin and record time.
pub fn patch_sample(sample: &Sample, unit: Option<&str>, fragment: &Attribute) -> Sample {
    let mut current = instance_of(sample, unit, "");
    if !fragment.value.is_null() {
        current.value = fragment.value.clone();
    }
    if fragment.observed_at.is_some() {
        current.observed_at = fragment.observed_at.clone();
    }
    if fragment.unit_code.is_some() {
        current.unit_code = fragment.unit_code.clone();
    }
    for (name, subs) in &fragment.sub {
        current.sub.insert(name.clone(), subs.clone());
    }
    Sample::from_instance(sample.origin, sample.recorded, &current)
}

/// A sample with the unit code of the chunk or row it came from.
pub type UnitSample = (Sample, Option<Arc<str>>);

/// The samples of one temporal entity: (attribute IRI, datasetId) → samples, in any order.
pub type Series = IndexMap<(Arc<str>, String), Vec<UnitSample>>;

/// One instance inside the query's window: (instant of the time property, sample, unit,
/// datasetId).
type Timed = (i64, Sample, Option<Arc<str>>, String);

/// Whether the sample is an instance of a transient attribute (§4.22) past its expiry, or
/// the deletion of one: gone from history too. Its expiresAt bounds the storage of the
/// Property, not only its current value (§5.2.5 as the Antares tests read it); the entity's
/// own expiry leaves history, like a deletion.
pub fn expired(sample: &Sample, now: &Timestamp) -> bool {
    matches!(&sample.value, SampleValue::Instance(a) | SampleValue::Deleted(a)
        if a.expires_at.as_ref().is_some_and(|at| at <= now))
}

/// The instant a sample is filtered and ordered by, for the query's time property.
fn time_of(sample: &Sample, property: TimeProperty) -> Option<i64> {
    match property {
        TimeProperty::ObservedAt => sample.observed,
        TimeProperty::CreatedAt | TimeProperty::ModifiedAt => Some(sample.recorded),
        TimeProperty::DeletedAt => matches!(sample.value, SampleValue::Deleted(_)).then_some(sample.recorded),
    }
}

/// The samples inside the window, per attribute (deletions included: they are history too);
/// instances without the time property are outside any window on it.
fn windowed(series: Series, q: &HistoryQuery) -> IndexMap<Arc<str>, Vec<Timed>> {
    let property = q.time.property;
    let now = Timestamp::now();
    let mut by_attr: IndexMap<Arc<str>, Vec<Timed>> = IndexMap::new();
    for ((iri, dataset), samples) in series {
        let wanted = q
            .dataset_ids
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|d| if dataset.is_empty() { d == "@none" } else { *d == dataset }));
        if !wanted {
            continue;
        }
        let mut kept: Vec<Timed> = Vec::with_capacity(samples.len());
        for (s, unit) in samples {
            if expired(&s, &now) {
                continue;
            }
            let t = match time_of(&s, property) {
                Some(t) => t,
                None if q.time.rel.is_none() && property == TimeProperty::ObservedAt => s.recorded,
                None => continue,
            };
            if q.time.rel.is_some_and(|r| !r.contains(t)) {
                continue;
            }
            kept.push((t, s, unit, dataset.clone()));
        }
        // An instance is identified by its observedAt within a series: a later write of the
        // same instant replaces the earlier one. Sorted per series, where the datasetId is one:
        // comparing it per pair of samples cost more than the rest of an aggregation.
        if property == TimeProperty::ObservedAt {
            // Chunks are mostly in time order already: checking is cheaper than a merge pass.
            if !kept.is_sorted_by_key(|(t, s, ..)| (*t, s.origin)) {
                kept.sort_by_key(|(t, s, ..)| (*t, s.origin));
            }
            kept.dedup_by(|later, earlier| {
                let same = later.0 == earlier.0;
                if same {
                    std::mem::swap(later, earlier);
                }
                same
            });
        }
        let slot = by_attr.entry(iri).or_default();
        if slot.is_empty() {
            *slot = kept;
        } else {
            slot.extend(kept);
        }
    }
    by_attr.retain(|_, v| !v.is_empty());
    by_attr
}

/// The entity with every windowed instance: q, scopeQ and geo-queries on history hold when
/// some instance in the window satisfies each term (§5.7.4.4).
fn windowed_entity(base: &Entity, windowed: &IndexMap<Arc<str>, Vec<Timed>>) -> Entity {
    let mut e = base.clone();
    for (iri, samples) in windowed {
        let instances = samples.iter().map(|(_, s, unit, dataset)| instance_of(s, unit.as_deref(), dataset)).collect();
        e.attrs.insert(iri.to_string(), instances);
    }
    e
}

/// When each of the entity's scopes held (§4.18): a scope instance from its time until the next
/// one's, the last until now and on; (from, until, scopes), in time order. An entity without
/// scope history holds its current scopes throughout.
fn scope_validity(entity: &Entity, series: &Series, property: TimeProperty) -> Vec<(i64, i64, Vec<String>)> {
    let mut changes: Vec<(i64, Vec<String>)> = series
        .iter()
        .filter(|((iri, _), _)| &**iri == SCOPE_IRI)
        .flat_map(|(_, samples)| samples.iter())
        .map(|(s, unit)| {
            let t = time_of(s, property).unwrap_or(s.recorded);
            let scopes = match instance_of(s, unit.as_deref(), "").value {
                AttrValue::Property(Value::Array(items)) => {
                    items.iter().filter_map(Value::as_str).map(str::to_string).collect()
                }
                AttrValue::Property(Value::String(one)) => vec![one],
                _ => Vec::new(),
            };
            (t, scopes)
        })
        .collect();
    if changes.is_empty() {
        return vec![(i64::MIN, i64::MAX, entity.scopes.clone())];
    }
    changes.sort_by_key(|(t, _)| *t);
    let untils: Vec<i64> = changes.iter().skip(1).map(|(t, _)| *t).chain([i64::MAX]).collect();
    changes.into_iter().zip(untils).map(|((from, scopes), until)| (from, until, scopes)).collect()
}

/// A temporal query as a store runs it: the store streams temporal entities (in `tid` or id
/// order) through [`Self::selects`] and, for those, loads their samples into [`Self::offer`]
/// until it says the page is complete; [`Self::finish`] gives the page.
pub struct HistoryScan<'q> {
    q: &'q HistoryQuery,
    /// The selector part of the query, decided on the entity row alone.
    light: EntityQuery,
    /// With a scopeQ: the rest of the selection (q, geo-query), the scope being decided over
    /// time by [`scope_validity`].
    unscoped: Option<EntityQuery>,
    /// q, scope, geo and `attrs` as a filter need the windowed instances.
    needs_instances: bool,
    page: Vec<TemporalEntity>,
    matched: u64,
    /// Instances left in this response (§6.3.10): once spent, later entities are listed with
    /// empty attributes (their instances are for the next page).
    budget: usize,
}

impl<'q> HistoryScan<'q> {
    pub fn new(q: &'q HistoryQuery) -> Self {
        let s = &q.select;
        Self {
            q,
            light: EntityQuery { entities: s.entities.clone(), ..Default::default() },
            unscoped: s.scope.as_ref().map(|_| EntityQuery { scope: None, ..s.clone() }),
            needs_instances: s.q.is_some() || s.geo.is_some() || s.scope.is_some() || !s.with_any_attr.is_empty(),
            page: Vec::new(),
            matched: 0,
            budget: q.max_instances,
        }
    }

    /// Whether the entity (id, types, scopes, times; no attributes) may match: only those are
    /// worth loading.
    pub fn selects(&self, entity: &Entity) -> bool {
        self.light.matches(entity)
    }

    /// The attributes to load samples of (empty: all).
    pub fn attrs_to_load(&self) -> &[String] {
        if self.needs_instances { &[] } else { &self.q.attrs }
    }

    /// `lastN` when a store may read only each series' latest instances: nothing else (q,
    /// scopeQ, geo-query, aggregation) needs the older ones.
    pub fn last_n(&self) -> Option<usize> {
        self.q.time.last_n.filter(|_| !self.needs_instances && self.q.aggregation.is_none())
    }

    /// The query's time window on its time property, to prune storage with. A scopeQ needs
    /// the scope's whole history: the scope valid in the window may have been set before it.
    pub fn window(&self) -> Option<(i64, i64)> {
        if self.unscoped.is_some() {
            return None;
        }
        self.q.time.rel.map(|r| r.bounds())
    }

    /// Evaluates one selected entity with its samples; returns `false` once the page is
    /// complete and nothing more needs reading.
    pub fn offer(&mut self, entity: Entity, series: Series) -> bool {
        let q = self.q;
        let valid = match &q.select.scope {
            Some(scope_q) => {
                let periods = scope_validity(&entity, &series, q.time.property);
                let (start, end) = q.time.rel.map(|r| r.bounds()).unwrap_or((i64::MIN, i64::MAX));
                let matching: Vec<(i64, i64)> = periods
                    .into_iter()
                    .filter(|(from, until, scopes)| *from <= end && *until > start && scope_q.matches(scopes))
                    .map(|(from, until, _)| (from, until))
                    .collect();
                if matching.is_empty() {
                    return true;
                }
                Some(matching)
            }
            None => None,
        };
        let mut instances = windowed(series, q);
        if let Some(periods) = &valid {
            // Only what was observed while a matching scope held (§4.18, annex C.5.16).
            for samples in instances.values_mut() {
                samples.retain(|(t, ..)| periods.iter().any(|(from, until)| from <= t && t < until));
            }
        }
        let select = self.unscoped.as_ref().unwrap_or(&q.select);
        if self.needs_instances && !select.matches(&windowed_entity(&entity, &instances)) {
            return true;
        }
        if !q.attrs.is_empty() {
            instances.retain(|iri, _| q.attrs.iter().any(|a| **a == **iri));
        }
        if q.skip_empty && q.time.rel.is_some() && instances.is_empty() {
            return true;
        }
        self.matched += 1;
        if self.matched as usize > q.select.offset && self.page.len() < q.select.limit {
            let built = build(entity, instances, q, &mut self.budget);
            self.page.push(built);
        }
        q.select.count || (self.matched as usize) < q.select.offset.saturating_add(q.select.limit)
    }

    pub fn finish(self) -> HistoryPage {
        HistoryPage { entities: self.page, count: self.q.select.count.then_some(self.matched) }
    }
}

/// Orders, cuts (`lastN`, then the page of instances) and shapes the windowed instances into
/// instances or aggregates.
fn build(
    entity: Entity,
    mut by_attr: IndexMap<Arc<str>, Vec<Timed>>,
    q: &HistoryQuery,
    budget: &mut usize,
) -> TemporalEntity {
    let mut out = TemporalEntity { entity, ..TemporalEntity::default() };
    for samples in by_attr.values_mut() {
        if !samples.is_sorted_by_key(|(t, s, _, _)| (*t, s.origin)) {
            samples.sort_by_key(|(t, s, _, _)| (*t, s.origin));
        }
        if let Some(n) = q.time.last_n
            && samples.len() > n
        {
            samples.drain(..samples.len() - n);
        }
    }
    if let Some(aggr) = &q.aggregation {
        let (start, end) = q.time.rel.map(|r| r.bounds()).unwrap_or((i64::MIN, i64::MAX));
        let start = (start != i64::MIN).then_some(start);
        let end = (end != i64::MAX).then_some(end);
        let core = hanbat_model::jsonld::core_context();
        for (iri, samples) in by_attr {
            let mut periods = Periods::new(&aggr.methods, aggr.period, start, end);
            let mut kind = "Property";
            for (t, s, unit, dataset) in &samples {
                let acc = periods.at(*t);
                match s.number() {
                    Some(x) => acc.add_number(x),
                    None => {
                        let inst = instance_of(s, unit.as_deref(), dataset);
                        kind = inst.value.type_name();
                        acc.add_value(&hanbat_model::render::key_value(&inst, &core, &Default::default()));
                    }
                }
            }
            let last = samples.last().map(|(t, ..)| *t);
            out.aggregated.insert(iri.to_string(), AggregatedAttr { kind, methods: periods.results(last) });
        }
        return out;
    }
    // The page of instances (§6.3.10): over the union of the entity's attributes, in traversal
    // order — most recent first with lastN, oldest first otherwise.
    let total: usize = by_attr.values().map(Vec::len).sum();
    if total > *budget {
        let descending = q.time.last_n.is_some();
        let mut all: Vec<(i64, Origin)> = by_attr.values().flatten().map(|(t, s, ..)| (*t, s.origin)).collect();
        all.sort_unstable();
        if descending {
            all.reverse();
        }
        let kept: HashSet<Origin> = all.iter().take(*budget).map(|(_, o)| *o).collect();
        for samples in by_attr.values_mut() {
            samples.retain(|(_, s, ..)| kept.contains(&s.origin));
        }
        let returned: Vec<i64> = all.iter().take(*budget).map(|(t, _)| *t).collect();
        *budget = 0;
        out.page = Some(InstancePage {
            first: returned.first().copied().unwrap_or_default(),
            last: returned.last().copied().unwrap_or_default(),
            descending,
        });
    }
    *budget = budget.saturating_sub(total);
    // An attribute cut away entirely stays, empty: the next page has its instances.
    for (iri, samples) in by_attr {
        let instances =
            samples.into_iter().map(|(_, s, unit, dataset)| instance_of(&s, unit.as_deref(), &dataset)).collect();
        out.entity.attrs.insert(iri.to_string(), instances);
    }
    out
}
