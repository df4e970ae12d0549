//! The temporal query model of §4.11 and §6.18/6.19 of V1.8: which time property, which window,
//! `lastN`, and aggregation (`aggrMethods`, `aggrPeriodDuration`).

use chrono::{DateTime, Months, TimeZone, Utc};
use hanbat_model::{NgsiError, Result, Timestamp};

/// `timeproperty`: which instant of an attribute instance the window applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeProperty {
    #[default]
    ObservedAt,
    CreatedAt,
    ModifiedAt,
    DeletedAt,
}

impl TimeProperty {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "observedAt" => Ok(Self::ObservedAt),
            "createdAt" => Ok(Self::CreatedAt),
            "modifiedAt" => Ok(Self::ModifiedAt),
            "deletedAt" => Ok(Self::DeletedAt),
            other => Err(NgsiError::bad_data(format!(
                "timeproperty={other} is not one of observedAt, createdAt, modifiedAt, deletedAt"
            ))),
        }
    }
}

/// `timerel` with its instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeRel {
    /// Strictly before.
    Before(i64),
    /// At or after.
    After(i64),
    /// From the first instant (included) to the second (excluded).
    Between(i64, i64),
}

impl TimeRel {
    /// Parses `timerel`, `timeAt` and `endTimeAt`; all absent means no window.
    pub fn from_params(
        timerel: Option<&str>,
        time_at: Option<&str>,
        end_time_at: Option<&str>,
    ) -> Result<Option<Self>> {
        let instant = |name: &str, v: &str| {
            Timestamp::parse(v).map(|t| t.micros()).map_err(|_| {
                NgsiError::bad_data(format!("{name}='{v}' is not an ISO 8601 date-time such as 2024-05-01T00:00:00Z"))
            })
        };
        let Some(rel) = timerel else {
            if time_at.is_some() || end_time_at.is_some() {
                return Err(NgsiError::bad_data("timeAt and endTimeAt need timerel (before, after or between)"));
            }
            return Ok(None);
        };
        let at = instant("timeAt", time_at.ok_or_else(|| NgsiError::bad_data(format!("timerel={rel} needs timeAt")))?)?;
        match rel {
            "before" => Ok(Some(Self::Before(at))),
            "after" => Ok(Some(Self::After(at))),
            "between" => {
                let end = end_time_at.ok_or_else(|| NgsiError::bad_data("timerel=between needs endTimeAt"))?;
                let end = instant("endTimeAt", end)?;
                if end <= at {
                    return Err(NgsiError::bad_data("endTimeAt must be after timeAt"));
                }
                Ok(Some(Self::Between(at, end)))
            }
            other => Err(NgsiError::bad_data(format!("timerel={other} is not one of before, after, between"))),
        }
    }

    pub fn contains(&self, t: i64) -> bool {
        match *self {
            Self::Before(at) => t < at,
            Self::After(at) => t >= at,
            Self::Between(from, to) => t >= from && t < to,
        }
    }

    /// The window as a half-open range [from, to), open ends as the extreme values.
    pub fn bounds(&self) -> (i64, i64) {
        match *self {
            Self::Before(at) => (i64::MIN, at),
            Self::After(at) => (at, i64::MAX),
            Self::Between(from, to) => (from, to),
        }
    }
}

/// An aggregation method (§4.5.19 of V1.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggrMethod {
    TotalCount,
    DistinctCount,
    Sum,
    Avg,
    Min,
    Max,
    Stddev,
    Sumsq,
}

impl AggrMethod {
    pub const ALL: [AggrMethod; 8] =
        [Self::TotalCount, Self::DistinctCount, Self::Sum, Self::Avg, Self::Min, Self::Max, Self::Stddev, Self::Sumsq];

    pub fn name(self) -> &'static str {
        match self {
            Self::TotalCount => "totalCount",
            Self::DistinctCount => "distinctCount",
            Self::Sum => "sum",
            Self::Avg => "avg",
            Self::Min => "min",
            Self::Max => "max",
            Self::Stddev => "stddev",
            Self::Sumsq => "sumsq",
        }
    }

    pub fn parse_list(s: &str) -> Result<Vec<Self>> {
        let mut methods = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let m = Self::ALL.into_iter().find(|m| m.name() == name).ok_or_else(|| {
                NgsiError::bad_data(format!(
                    "aggrMethods: '{name}' is not one of totalCount, distinctCount, sum, avg, min, max, stddev, sumsq"
                ))
            })?;
            if !methods.contains(&m) {
                methods.push(m);
            }
        }
        if methods.is_empty() {
            return Err(NgsiError::bad_data("aggrMethods must name at least one method"));
        }
        Ok(methods)
    }
}

/// Adds `n` of one designator (`H`, `M`, …) to a duration being parsed.
type Unit = dyn Fn(&mut IsoDuration, f64);

/// An ISO 8601 duration (`P1Y2M3DT4H5M6.5S`, `P2W`): calendar months plus exact microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IsoDuration {
    pub months: u32,
    pub micros: i64,
}

impl IsoDuration {
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || NgsiError::bad_data(format!("'{text}' is not an ISO 8601 duration such as PT1H, P1D or P1M"));
        let rest = text.strip_prefix('P').ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        let (date, time) = match rest.split_once('T') {
            Some((d, t)) if !t.is_empty() => (d, Some(t)),
            Some(_) => return Err(bad()),
            None => (rest, None),
        };
        let mut d = IsoDuration::default();
        let mut take = |part: &str, units: &[(char, &Unit)]| -> Result<()> {
            let mut number = String::new();
            let mut last_unit = 0usize;
            for c in part.chars() {
                if c.is_ascii_digit() || c == '.' || c == ',' {
                    number.push(if c == ',' { '.' } else { c });
                    continue;
                }
                let position = units.iter().position(|(u, _)| *u == c).ok_or_else(bad)?;
                if position < last_unit || number.is_empty() {
                    return Err(bad());
                }
                last_unit = position + 1;
                let n: f64 = number.parse().map_err(|_| bad())?;
                (units[position].1)(&mut d, n);
                number.clear();
            }
            if number.is_empty() { Ok(()) } else { Err(bad()) }
        };
        const DAY: f64 = 86_400_000_000.0;
        take(
            date,
            &[
                ('Y', &|d, n| d.months += (n * 12.0) as u32),
                ('M', &|d, n| d.months += n as u32),
                ('W', &|d, n| d.micros += (n * 7.0 * DAY) as i64),
                ('D', &|d, n| d.micros += (n * DAY) as i64),
            ],
        )?;
        if let Some(time) = time {
            take(
                time,
                &[
                    ('H', &|d, n| d.micros += (n * 3_600_000_000.0) as i64),
                    ('M', &|d, n| d.micros += (n * 60_000_000.0) as i64),
                    ('S', &|d, n| d.micros += (n * 1_000_000.0) as i64),
                ],
            )?;
        }
        Ok(d)
    }

    pub fn is_zero(&self) -> bool {
        self.months == 0 && self.micros == 0
    }

    /// `t + self`, with calendar months.
    pub fn add_to(&self, t: i64) -> i64 {
        let mut out = t;
        if self.months > 0 {
            let base = Utc.timestamp_micros(t).single().unwrap_or_default();
            let moved = base.checked_add_months(Months::new(self.months)).unwrap_or(DateTime::<Utc>::MAX_UTC);
            // chrono clamps to the month's end (Jan 31 + 1 month = Feb 29 in a leap year).
            out = moved.timestamp_micros();
        }
        out.saturating_add(self.micros)
    }
}

/// `aggrMethods` with `aggrPeriodDuration` (absent or zero: one period over the whole window).
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregation {
    pub methods: Vec<AggrMethod>,
    pub period: IsoDuration,
}

/// The time selection of a temporal query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TimeFilter {
    pub property: TimeProperty,
    pub rel: Option<TimeRel>,
    /// `lastN`: only the N latest instances (per attribute) in the window.
    pub last_n: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(IsoDuration::parse("PT1H").unwrap().micros, 3_600_000_000);
        assert_eq!(IsoDuration::parse("P1DT12H").unwrap().micros, 129_600_000_000);
        assert_eq!(IsoDuration::parse("P2W").unwrap().micros, 14 * 86_400_000_000);
        assert_eq!(IsoDuration::parse("P1Y2M").unwrap().months, 14);
        assert_eq!(IsoDuration::parse("PT0.5S").unwrap().micros, 500_000);
        assert!(IsoDuration::parse("PT0S").unwrap().is_zero());
        for bad in ["", "P", "1H", "PT", "PH", "P1H", "PT1D", "P1S", "PT1M1H", "P-1D", "PTxS"] {
            assert!(IsoDuration::parse(bad).is_err(), "{bad}");
        }
        let jan31 = Timestamp::parse("2024-01-31T00:00:00Z").unwrap().micros();
        let feb = IsoDuration::parse("P1M").unwrap().add_to(jan31);
        assert_eq!(hanbat_model::time::format_micros(feb), "2024-02-29T00:00:00Z");
    }

    #[test]
    fn timerel() {
        let at = Timestamp::parse("2024-01-01T00:00:00Z").unwrap().micros();
        let rel = TimeRel::from_params(Some("after"), Some("2024-01-01T00:00:00Z"), None).unwrap().unwrap();
        assert!(rel.contains(at) && !rel.contains(at - 1));
        assert!(
            TimeRel::from_params(Some("between"), Some("2024-01-02T00:00:00Z"), Some("2024-01-01T00:00:00Z")).is_err()
        );
        assert!(TimeRel::from_params(Some("between"), Some("2024-01-01T00:00:00Z"), None).is_err());
        assert!(TimeRel::from_params(Some("during"), Some("2024-01-01T00:00:00Z"), None).is_err());
        assert!(TimeRel::from_params(None, Some("2024-01-01T00:00:00Z"), None).is_err());
        assert!(TimeRel::from_params(Some("before"), Some("noon"), None).is_err());
        assert_eq!(TimeRel::from_params(None, None, None).unwrap(), None);
    }

    #[test]
    fn aggr_methods() {
        assert_eq!(AggrMethod::parse_list("avg,max,avg").unwrap(), vec![AggrMethod::Avg, AggrMethod::Max]);
        assert!(AggrMethod::parse_list("median").is_err());
        assert!(AggrMethod::parse_list("").is_err());
    }
}
