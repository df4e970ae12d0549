//! Aggregation of samples into periods (`aggrMethods` over `aggrPeriodDuration`).
//!
//! Accumulators are O(1) per sample except `distinctCount`; a year of minute samples of one
//! attribute aggregates while the chunks are decoded, with no intermediate list.

use crate::query::{AggrMethod, IsoDuration};
use serde_json::{Value, json};
use std::collections::HashSet;

/// Running state of every method for one period.
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    count: u64,
    numbers: u64,
    sum: f64,
    sumsq: f64,
    /// Welford's running mean and sum of squared deviations, for a stable `stddev`.
    mean: f64,
    m2: f64,
    min: Option<f64>,
    max: Option<f64>,
    min_text: Option<String>,
    max_text: Option<String>,
    distinct: HashSet<String>,
    track_distinct: bool,
}

impl Accumulator {
    pub fn new(methods: &[AggrMethod]) -> Self {
        Self { track_distinct: methods.contains(&AggrMethod::DistinctCount), ..Self::default() }
    }

    pub fn add_number(&mut self, x: f64) {
        self.count += 1;
        self.numbers += 1;
        self.sum += x;
        self.sumsq += x * x;
        let delta = x - self.mean;
        self.mean += delta / self.numbers as f64;
        self.m2 += delta * (x - self.mean);
        self.min = Some(self.min.map_or(x, |m| m.min(x)));
        self.max = Some(self.max.map_or(x, |m| m.max(x)));
        if self.track_distinct {
            self.distinct.insert(x.to_string());
        }
    }

    /// A non-numeric value: counted, and compared as text for min/max when no number is seen.
    pub fn add_value(&mut self, v: &Value) {
        if let Some(x) = v.as_f64() {
            return self.add_number(x);
        }
        self.count += 1;
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if self.min_text.as_ref().is_none_or(|m| text < *m) {
            self.min_text = Some(text.clone());
        }
        if self.max_text.as_ref().is_none_or(|m| text > *m) {
            self.max_text = Some(text.clone());
        }
        if self.track_distinct {
            self.distinct.insert(text);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The result of one method; `null` when it does not apply to the values seen.
    pub fn result(&self, method: AggrMethod) -> Value {
        let numeric = self.numbers > 0;
        match method {
            AggrMethod::TotalCount => json!(self.count),
            AggrMethod::DistinctCount => json!(self.distinct.len()),
            AggrMethod::Sum if numeric => number(self.sum),
            AggrMethod::Sumsq if numeric => number(self.sumsq),
            AggrMethod::Avg if numeric => number(self.sum / self.numbers as f64),
            // The sample standard deviation (n - 1), as Stellio computes it (SQL `stddev_samp`):
            // undefined for a single value. See docs/decisions.md.
            AggrMethod::Stddev if self.numbers > 1 => number((self.m2 / (self.numbers - 1) as f64).max(0.0).sqrt()),
            AggrMethod::Min if numeric => self.min.map_or(Value::Null, number),
            AggrMethod::Max if numeric => self.max.map_or(Value::Null, number),
            AggrMethod::Min => self.min_text.clone().map_or(Value::Null, Value::String),
            AggrMethod::Max => self.max_text.clone().map_or(Value::Null, Value::String),
            _ => Value::Null,
        }
    }
}

/// Integral results print as integers (`3`, not `3.0`), as clients compare them.
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 { json!(x as i64) } else { json!(x) }
}

/// Periods `[start, end)` covering a window, each with its accumulator.
#[derive(Debug, Clone)]
pub struct Periods {
    period: IsoDuration,
    methods: Vec<AggrMethod>,
    /// The window's end (exclusive) when known.
    end: Option<i64>,
    buckets: Vec<(i64, i64, Accumulator)>,
}

impl Periods {
    /// `start`: the window's start (`timeAt`), or `None` to start at the first sample.
    pub fn new(methods: &[AggrMethod], period: IsoDuration, start: Option<i64>, end: Option<i64>) -> Self {
        let mut p = Self { period, methods: methods.to_vec(), end, buckets: Vec::new() };
        if let Some(s) = start {
            p.open(s);
        }
        p
    }

    fn open(&mut self, start: i64) {
        let end = if self.period.is_zero() { self.end.unwrap_or(i64::MAX) } else { self.period.add_to(start) };
        self.buckets.push((start, end, Accumulator::new(&self.methods)));
    }

    /// The accumulator of the period holding `t` (samples must come in ascending `t`).
    pub fn at(&mut self, t: i64) -> &mut Accumulator {
        if self.buckets.is_empty() {
            self.open(t);
        }
        loop {
            let (start, end) = self.buckets.last().map(|b| (b.0, b.1)).unwrap_or((t, t));
            if t < end || end <= start {
                break;
            }
            self.open(end);
        }
        let last = self.buckets.len() - 1;
        &mut self.buckets[last].2
    }

    /// Per method, `[[value, startAt, endAt], …]` for every period holding samples; a period's
    /// end is clipped to the last sample when the window has no end.
    pub fn results(&self, last_sample: Option<i64>) -> Vec<(AggrMethod, Vec<Value>)> {
        self.methods
            .iter()
            .map(|&m| {
                let rows = self
                    .buckets
                    .iter()
                    .filter(|(_, _, acc)| !acc.is_empty())
                    .map(|(start, end, acc)| {
                        let end = if *end == i64::MAX { last_sample.map_or(*start, |l| l + 1) } else { *end };
                        json!([
                            acc.result(m),
                            hanbat_model::time::format_micros(*start),
                            hanbat_model::time::format_micros(end)
                        ])
                    })
                    .collect();
                (m, rows)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_against_hand_computed_values() {
        let mut acc = Accumulator::new(&AggrMethod::ALL);
        for x in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            acc.add_number(x);
        }
        assert_eq!(acc.result(AggrMethod::TotalCount), json!(8));
        assert_eq!(acc.result(AggrMethod::DistinctCount), json!(5));
        assert_eq!(acc.result(AggrMethod::Sum), json!(40));
        assert_eq!(acc.result(AggrMethod::Avg), json!(5));
        // Σ(x - 5)² = 32 over n - 1 = 7.
        assert_eq!(acc.result(AggrMethod::Stddev), json!((32.0f64 / 7.0).sqrt()));
        assert_eq!(acc.result(AggrMethod::Sumsq), json!(232));
        assert_eq!(acc.result(AggrMethod::Min), json!(2));
        assert_eq!(acc.result(AggrMethod::Max), json!(9));
    }

    #[test]
    fn text_values_count_and_compare() {
        let mut acc = Accumulator::new(&[AggrMethod::DistinctCount]);
        for v in ["on", "off", "on"] {
            acc.add_value(&json!(v));
        }
        assert_eq!(acc.result(AggrMethod::TotalCount), json!(3));
        assert_eq!(acc.result(AggrMethod::DistinctCount), json!(2));
        assert_eq!(acc.result(AggrMethod::Avg), Value::Null);
        let mut one = Accumulator::new(&[]);
        one.add_number(3.0);
        assert_eq!(one.result(AggrMethod::Stddev), Value::Null);
        assert_eq!(acc.result(AggrMethod::Max), json!("on"));
    }

    #[test]
    fn periods_split_the_window() {
        let hour = IsoDuration::parse("PT1H").unwrap();
        let mut p = Periods::new(&[AggrMethod::TotalCount], hour, Some(0), Some(3 * 3_600_000_000));
        for t in [0, 10, 3_600_000_000, 2 * 3_600_000_000 + 5] {
            p.at(t).add_number(1.0);
        }
        let rows = &p.results(None)[0].1;
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], json!([2, "1970-01-01T00:00:00Z", "1970-01-01T01:00:00Z"]));
    }
}
