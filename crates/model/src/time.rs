//! Instants as NGSI-LD writes them: ISO 8601 date-times in UTC.
//!
//! System times (`createdAt`, `modifiedAt`, `deletedAt`) are generated here with microsecond
//! precision. User times (`observedAt`, `expiresAt`, …) keep the text the user sent, so that a
//! value reads back exactly as it was written (`…:00Z` and `…:00.000Z` are both common), while
//! comparisons and the temporal API use the parsed instant.

use crate::error::{NgsiError, Result};
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;

/// A point in time: microseconds since the Unix epoch, plus the text it was given as, if any.
#[derive(Clone, Debug)]
pub struct Timestamp {
    micros: i64,
    text: Option<Box<str>>,
}

impl Timestamp {
    pub fn now() -> Self {
        Self::from_micros(Utc::now().timestamp_micros())
    }

    pub fn from_micros(micros: i64) -> Self {
        Self { micros, text: None }
    }

    pub fn micros(&self) -> i64 {
        self.micros
    }

    pub fn millis(&self) -> i64 {
        self.micros.div_euclid(1000)
    }

    /// Parses an ISO 8601 date-time. Accepts an explicit offset (`Z`, `+09:00`) and, like
    /// Orion-LD, a date-time without offset, taken as UTC. The original text is kept.
    pub fn parse(text: &str) -> Result<Self> {
        let micros = parse_micros(text).ok_or_else(|| {
            NgsiError::bad_data(format!("'{text}' is not an ISO 8601 date-time (e.g. 2024-05-01T12:00:00Z)"))
        })?;
        Ok(Self { micros, text: Some(text.into()) })
    }

    /// Parses a user-supplied NGSI-LD DateTime (§4.6.3): ISO 8601 in UTC, ending in `Z`; an
    /// offset such as `+02:00` is refused. The original text is kept.
    pub fn parse_utc(text: &str) -> Result<Self> {
        if !text.ends_with(['Z', 'z']) {
            return Err(NgsiError::bad_data(format!(
                "'{text}' is not an NGSI-LD DateTime: it must be in UTC and end with Z (e.g. 2024-05-01T12:00:00Z)"
            )));
        }
        Self::parse(text)
    }

    /// The text as sent by the user, or the canonical UTC form for generated instants.
    pub fn to_text(&self) -> String {
        match &self.text {
            Some(t) => t.to_string(),
            None => format_micros(self.micros),
        }
    }

    /// The canonical form (UTC, `Z`, microseconds only when non-zero).
    pub fn canonical(&self) -> String {
        format_micros(self.micros)
    }
}

fn parse_micros(text: &str) -> Option<i64> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Some(dt.with_timezone(&Utc).timestamp_micros());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, fmt) {
            return Some(Utc.from_utc_datetime(&naive).timestamp_micros());
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(dt) = DateTime::parse_from_str(text, fmt) {
            return Some(dt.with_timezone(&Utc).timestamp_micros());
        }
    }
    None
}

/// Parses an ISO 8601 date (`2024-05-01`) to its midnight UTC.
pub fn parse_date_micros(text: &str) -> Option<i64> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0)?).timestamp_micros())
}

/// Parses a date-time as [`Timestamp::parse`] does, returning only the instant.
pub fn parse_datetime_micros(text: &str) -> Option<i64> {
    parse_micros(text)
}

pub fn format_micros(micros: i64) -> String {
    match DateTime::<Utc>::from_timestamp_micros(micros) {
        Some(dt) => {
            let format = if micros % 1_000_000 == 0 {
                SecondsFormat::Secs
            } else if micros % 1000 == 0 {
                SecondsFormat::Millis
            } else {
                SecondsFormat::Micros
            };
            dt.to_rfc3339_opts(format, true)
        }
        None => "1970-01-01T00:00:00Z".to_string(),
    }
}

impl PartialEq for Timestamp {
    fn eq(&self, other: &Self) -> bool {
        self.micros == other.micros
    }
}
impl Eq for Timestamp {}
impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timestamp {
    fn cmp(&self, other: &Self) -> Ordering {
        self.micros.cmp(&other.micros)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// Stored form: generated instants as integer microseconds (no date parsing on reads), user
/// instants as their text.
impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match &self.text {
            Some(text) => s.serialize_str(text),
            None => s.serialize_i64(self.micros),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("microseconds since the epoch or an ISO 8601 date-time")
            }
            fn visit_i64<E: serde::de::Error>(self, micros: i64) -> std::result::Result<Timestamp, E> {
                Ok(Timestamp::from_micros(micros))
            }
            fn visit_u64<E: serde::de::Error>(self, micros: u64) -> std::result::Result<Timestamp, E> {
                i64::try_from(micros).map(Timestamp::from_micros).map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> std::result::Result<Timestamp, E> {
                let micros = parse_micros(text).ok_or_else(|| E::custom(format!("bad date-time '{text}'")))?;
                Ok(Timestamp { micros, text: Some(text.into()) })
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_user_text_and_orders_by_instant() {
        let a = Timestamp::parse("2020-09-01T12:03:00.000Z").unwrap();
        let b = Timestamp::parse("2020-09-01T21:03:00+09:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_text(), "2020-09-01T12:03:00.000Z");
        assert_eq!(b.canonical(), "2020-09-01T12:03:00Z");
        assert!(Timestamp::parse("yesterday").is_err());
        assert!(Timestamp::parse("2020-13-01T00:00:00Z").is_err());
    }

    #[test]
    fn generated_instants_format_with_needed_precision() {
        assert_eq!(format_micros(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_micros(1_500_000), "1970-01-01T00:00:01.500Z");
        assert_eq!(format_micros(1_000_001), "1970-01-01T00:00:01.000001Z");
    }
}
