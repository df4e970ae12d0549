//! Injected sensor faults with their ground truth, so that anomaly detectors can be scored.
//!
//! Each device with continuous measurements gets its own random stream of anomalies (about one
//! every four simulated days). An anomaly corrupts one attribute's reported values for a while;
//! the device's real state, its alerts and every other value stay exactly as without injection.

use crate::devices::{KindSpec, Reading, Sample};
use crate::signal::{exp_s, uniform};
use chrono::{DateTime, Utc};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnomalyKind {
    /// One sample far off.
    Spike,
    /// The value freezes.
    Stuck,
    /// An error that grows steadily.
    Drift,
    /// A constant bias.
    Offset,
    /// The attribute stops being reported.
    Dropout,
}

const KINDS: [AnomalyKind; 5] =
    [AnomalyKind::Spike, AnomalyKind::Stuck, AnomalyKind::Drift, AnomalyKind::Offset, AnomalyKind::Dropout];

/// One line of the ground-truth file: `attribute` of `entity` was corrupted in the samples
/// observed from `start` to `end` (inclusive; equal for a spike).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyLabel {
    pub entity: String,
    pub attribute: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub kind: AnomalyKind,
}

const MEAN_GAP_S: f64 = 4.0 * 86_400.0;

struct Active {
    attr: &'static str,
    kind: AnomalyKind,
    until: DateTime<Utc>,
    /// Relative size of the fault (share of the value's magnitude).
    size: f64,
    frozen: Option<f64>,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

pub(crate) struct Injector {
    rng: ChaCha8Rng,
    next: DateTime<Utc>,
    active: Option<Active>,
}

fn after(t: DateTime<Utc>, seconds: f64) -> DateTime<Utc> {
    t + chrono::Duration::milliseconds((seconds * 1000.0) as i64)
}

impl Injector {
    pub fn new(mut rng: ChaCha8Rng, start: DateTime<Utc>) -> Self {
        // Not in the first hour: the first report creates the entity and should be clean.
        let next = after(start, 3600.0 + exp_s(&mut rng, MEAN_GAP_S));
        Self { rng, next, active: None }
    }

    /// Corrupts `sample` if an anomaly is in progress; returns the label of one that has ended.
    pub fn apply(
        &mut self,
        entity: &str,
        spec: &KindSpec,
        now: DateTime<Utc>,
        sample: &mut Sample,
    ) -> Option<AnomalyLabel> {
        if self.active.as_ref().is_some_and(|a| now > a.until) {
            let label = self.close(entity);
            self.next = after(now, exp_s(&mut self.rng, MEAN_GAP_S));
            return label;
        }
        if self.active.is_none() && now >= self.next {
            self.active = self.begin(spec, now, sample);
        }
        let active = self.active.as_mut()?;
        let index = sample.items.iter().position(|(name, _)| *name == active.attr)?;
        let value = match &sample.items[index].1 {
            Reading::Num(x) => *x,
            Reading::Int(i) => *i as f64,
            _ => return None,
        };
        let scale = value.abs().max(1.0);
        // None: the value is not reported at all.
        let corrupted = match active.kind {
            AnomalyKind::Spike | AnomalyKind::Offset => Some(value + active.size * scale),
            AnomalyKind::Stuck => Some(*active.frozen.get_or_insert(value)),
            AnomalyKind::Drift => {
                let hours = active.first.map_or(0.0, |f| (now - f).num_seconds() as f64 / 3600.0);
                Some(value + active.size * scale * (0.1 + hours))
            }
            AnomalyKind::Dropout => None,
        };
        active.first.get_or_insert(now);
        active.last = Some(now);
        match corrupted {
            None => {
                sample.items.remove(index);
            }
            Some(x) => {
                sample.items[index].1 = match sample.items[index].1 {
                    Reading::Int(_) => Reading::Int(x.round() as i64),
                    _ => Reading::Num(x),
                };
            }
        }
        None
    }

    fn begin(&mut self, spec: &KindSpec, now: DateTime<Utc>, sample: &Sample) -> Option<Active> {
        let candidates: Vec<&'static str> = spec
            .attrs
            .iter()
            .filter(|a| a.anomalies && matches!(sample.get(a.name), Some(Reading::Num(_) | Reading::Int(_))))
            .map(|a| a.name)
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let rng = &mut self.rng;
        let attr = candidates[rng.random_range(0..candidates.len())];
        let kind = KINDS[rng.random_range(0..KINDS.len())];
        let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
        let (duration_s, size) = match kind {
            AnomalyKind::Spike => (0.0, uniform(rng, 2.0, 5.0)),
            AnomalyKind::Stuck => (uniform(rng, 1200.0, 3.0 * 3600.0), 0.0),
            AnomalyKind::Drift => (uniform(rng, 2.0 * 3600.0, 12.0 * 3600.0), sign * uniform(rng, 0.04, 0.12)),
            AnomalyKind::Offset => (uniform(rng, 3600.0, 6.0 * 3600.0), sign * uniform(rng, 0.2, 0.5)),
            AnomalyKind::Dropout => (uniform(rng, 600.0, 2.0 * 3600.0), 0.0),
        };
        Some(Active { attr, kind, until: after(now, duration_s), size, frozen: None, first: None, last: None })
    }

    /// Ends the anomaly in progress, if it has touched any sample.
    pub fn close(&mut self, entity: &str) -> Option<AnomalyLabel> {
        let active = self.active.take()?;
        Some(AnomalyLabel {
            entity: entity.to_string(),
            attribute: active.attr.to_string(),
            start: active.first?,
            end: active.last?,
            kind: active.kind,
        })
    }
}
