//! Delivery: one sender task per subscription with pending notifications, drawing on a bounded
//! pool of send permits; retries with exponential backoff; status counters.
//!
//! A subscription has at most one notification in flight, so its notifications arrive in
//! commit order and a slow or dead receiver holds back only its own subscription (and at most
//! one permit of the pool while a request is open, none while it waits to retry).

use crate::Inner;
use crate::payload;
use crate::registry::{Entry, Job, Spec};
use crate::transport::Outgoing;
use hanbat_model::{Entity, Timestamp};
use hanbat_query::LinkResolver;
use hanbat_store::ChangeKind;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Queues a job for `entry` and starts its sender if none runs. Never blocks: when the queue is
/// full the oldest pending notification is dropped and counted.
pub fn enqueue(inner: &Arc<Inner>, entry: &Arc<Entry>, job: Job) {
    let start = {
        let mut q = entry.queue.lock();
        if q.jobs.len() >= inner.config.queue_capacity {
            q.jobs.pop_front();
            let dropped = entry.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if dropped.is_power_of_two() {
                tracing::warn!(subscription = %entry.id, dropped, "notification queue full: dropping the oldest");
            }
        }
        q.jobs.push_back(job);
        !std::mem::replace(&mut q.running, true)
    };
    if start {
        let (inner, entry) = (inner.clone(), entry.clone());
        inner.runtime.clone().spawn(async move { drain(inner, entry).await });
    }
}

/// Sends what the subscription's queue holds until it is empty.
async fn drain(inner: Arc<Inner>, entry: Arc<Entry>) {
    let mut last_sent: Option<Instant> = None;
    loop {
        if entry.is_deleted() || inner.is_stopping() {
            let mut q = entry.queue.lock();
            q.jobs.clear();
            q.running = false;
            return;
        }
        let spec = entry.spec();
        let throttle = spec.sub.throttling.map(Duration::from_secs_f64);
        if let (Some(t), Some(last)) = (throttle, last_sent) {
            // Notifications inside the throttling window wait for its end and then go out
            // together, each entity in its latest state: nothing is lost, the rate is bounded.
            let until = last + t;
            if Instant::now() < until {
                tokio::time::sleep_until(until.into()).await;
                continue;
            }
        }
        let jobs: Vec<Job> = {
            let mut q = entry.queue.lock();
            if q.jobs.is_empty() {
                q.running = false;
                return;
            }
            let n = if throttle.is_some() { q.jobs.len() } else { q.jobs.len().min(inner.config.max_batch.max(1)) };
            q.jobs.drain(..n).collect()
        };
        let jobs = if throttle.is_some() { latest_per_entity(jobs) } else { jobs };
        let data = render(&inner, &entry, &spec, jobs).await;
        if data.is_empty() {
            continue;
        }
        let json_ld = spec.sub.notification.endpoint.wants_json_ld();
        let out = Outgoing {
            body: payload::notification(&spec, data, json_ld),
            content_type: if json_ld { "application/ld+json" } else { "application/json" },
            link: (!json_ld).then(|| hanbat_context::link_header(&spec.notify.link_url)),
            tenant: (!entry.tenant.is_empty()).then(|| entry.tenant.clone()),
        };
        last_sent = Some(Instant::now());
        send_with_retries(&inner, &entry, out).await;
    }
}

/// Keeps the last job per entity (throttled subscriptions), in the order of those last jobs.
fn latest_per_entity(jobs: Vec<Job>) -> Vec<Job> {
    let mut last: HashMap<String, usize> = HashMap::new();
    for (i, job) in jobs.iter().enumerate() {
        if let Job::Change { change, .. } = job {
            last.insert(change.id.clone(), i);
        }
    }
    jobs.into_iter()
        .enumerate()
        .filter(|(i, job)| match job {
            Job::Change { change, .. } => last.get(&change.id) == Some(i),
            Job::Snapshot { .. } => true,
        })
        .map(|(_, job)| job)
        .collect()
}

/// The entities of `data` for these jobs.
async fn render(inner: &Inner, entry: &Entry, spec: &Spec, jobs: Vec<Job>) -> Vec<Map<String, Value>> {
    let ctx = &spec.notify.ctx;
    let q_depth = if spec.linked_q { spec.query.q.as_ref().map_or(0, |q| q.link_depth()) } else { 0 };
    let join_depth = spec.sub.notification.join_depth();
    let mut data = Vec::with_capacity(jobs.len());
    for job in jobs {
        match job {
            Job::Change { change, trigger } => {
                let links = if change.kind != ChangeKind::Deleted && q_depth.max(join_depth) > 0 {
                    Links::fetch(inner, &entry.tenant, &change.entity, q_depth.max(join_depth)).await
                } else {
                    Links::default()
                };
                if q_depth > 0
                    && change.kind != ChangeKind::Deleted
                    && !spec.query.q.as_ref().is_none_or(|q| q.matches_with(&change.entity, &links))
                {
                    continue;
                }
                let out = payload::change_entity(spec, &change, trigger, ctx);
                data.extend(payload::with_linked(spec, &change.entity, out, &links.0, ctx));
            }
            Job::Snapshot { entities } => {
                for e in &entities {
                    let links = if join_depth > 0 {
                        Links::fetch(inner, &entry.tenant, e, join_depth).await
                    } else {
                        Links::default()
                    };
                    let out = payload::snapshot_entity(spec, e, ctx);
                    data.extend(payload::with_linked(spec, e, out, &links.0, ctx));
                }
            }
        }
    }
    data
}

/// The entities that relationships lead to, as deep as the subscription's `q` or `join`
/// follows them.
#[derive(Default)]
struct Links(HashMap<String, Entity>);

/// At most this many linked entities are read for one entity of a notification.
const MAX_LINKED: usize = 100;

impl Links {
    async fn fetch(inner: &Inner, tenant: &str, entity: &Entity, depth: usize) -> Self {
        let mut found: HashMap<String, Entity> = HashMap::new();
        let mut frontier = targets(entity);
        for _ in 0..depth {
            let mut next = Vec::new();
            for id in frontier {
                if found.len() >= MAX_LINKED || found.contains_key(&id) || id == entity.id {
                    continue;
                }
                if let Ok(Some(e)) = inner.store.get(tenant, &id).await {
                    next.extend(targets(&e));
                    found.insert(id, e);
                }
            }
            frontier = next;
        }
        Self(found)
    }
}

impl LinkResolver for Links {
    fn resolve(&self, id: &str) -> Option<Cow<'_, Entity>> {
        self.0.get(id).map(Cow::Borrowed)
    }
}

/// The ids every Relationship and ListRelationship of `entity` points to.
fn targets(entity: &Entity) -> Vec<String> {
    entity.attrs.values().flatten().flat_map(|a| a.value.targets()).map(str::to_string).collect()
}

/// Sends `out`, retrying failures with exponential backoff (or the endpoint's `cooldown`) up to
/// the configured number of retries; the endpoint is read afresh for each attempt, so that
/// fixing a broken endpoint also delivers what is pending.
async fn send_with_retries(inner: &Arc<Inner>, entry: &Arc<Entry>, out: Outgoing) {
    let mut failures = 0u32;
    loop {
        let spec = entry.spec();
        let endpoint = &spec.sub.notification.endpoint;
        let timeout = endpoint.timeout.filter(|t| *t > 0.0).map(|ms| Duration::from_secs_f64(ms / 1000.0));
        let result = {
            let Ok(_permit) = inner.senders.acquire().await else { return };
            inner.transports.send(endpoint, &out, timeout.unwrap_or(inner.config.timeout)).await
        };
        record(inner, entry, result.is_ok());
        let Err(why) = result else { return };
        failures += 1;
        if failures > inner.config.retries || entry.is_deleted() || inner.is_stopping() {
            entry.abandoned.fetch_add(1, Ordering::Relaxed);
            inner.stats.abandoned.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(subscription = %entry.id, uri = %endpoint.uri, error = %why, attempts = failures, "notification abandoned");
            return;
        }
        tracing::debug!(subscription = %entry.id, uri = %endpoint.uri, error = %why, "notification failed; retrying");
        let delay = match endpoint.cooldown.filter(|c| *c > 0.0) {
            Some(ms) => Duration::from_secs_f64(ms / 1000.0),
            None => inner.config.backoff.saturating_mul(1 << (failures - 1).min(16)).min(inner.config.max_backoff),
        };
        tokio::time::sleep(delay).await;
    }
}

/// Updates the status after an attempt (§5.2.14): every attempt counts in `timesSent`, failures
/// also in `timesFailed`; `status` tells how the last attempt went.
fn record(inner: &Inner, entry: &Entry, ok: bool) {
    entry.status.lock().record(ok, Timestamp::now());
    entry.dirty.store(true, Ordering::Release);
    if ok {
        inner.stats.sent.fetch_add(1, Ordering::Relaxed);
    } else {
        inner.stats.failed.fetch_add(1, Ordering::Relaxed);
    }
}
