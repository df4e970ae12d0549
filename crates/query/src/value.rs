//! Query Term values (§4.9 `Value`, `ComparableValue`, `URI`) and how they compare with what
//! entities hold.
//!
//! Comparison is by data type (§4.9: "If there is no equality between the target value data type
//! and the Query Term value data type … not matching"): numbers numerically, strings lexically
//! (by code point), booleans with booleans, dates and date-times as instants, times as times of
//! day. A mismatch is "incomparable" (`None`), never an error.

use chrono::{NaiveDate, NaiveTime};
use hanbat_model::Timestamp;
use hanbat_model::time::{parse_date_micros, parse_datetime_micros};
use serde_json::{Number, Value as Json};
use std::cmp::Ordering;
use std::fmt;

/// A literal of a Query Term.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A JSON number (RFC 8259 syntax; integers are kept exact).
    Number(Number),
    /// A double-quoted JSON string, unescaped.
    String(String),
    /// Unquoted text that is none of the other literals: a URI (`urn:ngsi-ld:City:Pisa`) or a
    /// bare term (`commercial`). Equal to a string target with the same text; grammar-wise it is
    /// only valid after `==` / `!=`. With `expandValues`, it holds the expanded IRI.
    Text(String),
    Bool(bool),
    /// `2024-01-01`: compared as the instant of its midnight UTC.
    Date(NaiveDate),
    /// `2024-01-01T10:00:00Z`: compared as an instant.
    DateTime(Timestamp),
    /// `12:00:00`: compared as a time of day.
    Time(NaiveTime),
}

impl Value {
    /// Whether the value is a `ComparableValue` of the grammar: usable with `>`, `<`, … and as
    /// a range bound.
    pub fn is_comparable(&self) -> bool {
        !matches!(self, Self::Text(_) | Self::Bool(_))
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    /// The text of a string or unquoted value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) | Self::Text(s) => Some(s),
            _ => None,
        }
    }

    /// Microseconds since the Unix epoch of a date (its midnight UTC) or date-time.
    pub fn instant_micros(&self) -> Option<i64> {
        match self {
            Self::DateTime(t) => Some(t.micros()),
            Self::Date(d) => d.and_hms_opt(0, 0, 0).map(|dt| dt.and_utc().timestamp_micros()),
            _ => None,
        }
    }

    /// The kind of literal, for "same data type" checks of ranges.
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Self::Number(_) => Kind::Number,
            Self::String(_) | Self::Text(_) => Kind::String,
            Self::Bool(_) => Kind::Bool,
            Self::Date(_) | Self::DateTime(_) => Kind::Instant,
            Self::Time(_) => Kind::Time,
        }
    }

    /// Orders two literals of the same kind (range bounds); `None` across kinds.
    pub(crate) fn cmp_literal(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Self::Number(a), Self::Number(b)) => cmp_numbers(a, b),
            (Self::Time(a), Self::Time(b)) => Some(a.cmp(b)),
            (Self::Bool(a), Self::Bool(b)) => Some(a.cmp(b)),
            _ => match (self.as_str(), other.as_str()) {
                (Some(a), Some(b)) => Some(a.cmp(b)),
                _ => Some(self.instant_micros()?.cmp(&other.instant_micros()?)),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Number,
    String,
    Bool,
    Instant,
    Time,
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::String(s) => write!(f, "{}", Json::String(s.clone())),
            Self::Text(s) => f.write_str(s),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Date(d) => write!(f, "{}", d.format("%Y-%m-%d")),
            Self::DateTime(t) => f.write_str(&t.to_text()),
            Self::Time(t) => write!(f, "{}", t.format("%H:%M:%S%.f")),
        }
    }
}

/// Why an unquoted token is not a valid literal although it looks like one.
pub(crate) type LiteralError = String;

/// Classifies an unquoted token: `true`/`false`, a JSON number, a date, a date-time, a time, or
/// else text (URIs, bare terms). A token shaped like a number or date but invalid (`1e400`,
/// `2024-13-01`) is an error rather than silently text, so typos do not turn into no-match.
pub(crate) fn classify_unquoted(token: &str) -> Result<Value, LiteralError> {
    match token {
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        _ => {}
    }
    if is_json_number(token) {
        return serde_json::from_str::<Number>(token)
            .map(Value::Number)
            .map_err(|_| format!("the number {token} is out of range"));
    }
    let bytes = token.as_bytes();
    let date_shaped = bytes.len() >= 10
        && bytes[..4].iter().all(u8::is_ascii_digit)
        && bytes[4] == b'-'
        && bytes[5..7].iter().all(u8::is_ascii_digit)
        && bytes[7] == b'-'
        && bytes[8..10].iter().all(u8::is_ascii_digit);
    if date_shaped && bytes.len() == 10 {
        return NaiveDate::parse_from_str(token, "%Y-%m-%d")
            .map(Value::Date)
            .map_err(|_| format!("'{token}' is not a valid date"));
    }
    if date_shaped && bytes[10] == b'T' {
        return Timestamp::parse(token).map(Value::DateTime).map_err(|_| format!("'{token}' is not a valid date-time"));
    }
    let time_shaped =
        bytes.len() >= 5 && bytes[..2].iter().all(u8::is_ascii_digit) && bytes[2] == b':' && bytes[3].is_ascii_digit();
    if time_shaped {
        return parse_time(token).map(Value::Time).ok_or_else(|| format!("'{token}' is not a valid time"));
    }
    Ok(Value::Text(token.to_string()))
}

/// RFC 8259 §6 `number`: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
pub(crate) fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(c) if c.is_ascii_digit() => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Times as NGSI-LD writes them (`hh:mm:ss`, optional fraction, optional `Z`).
pub(crate) fn parse_time(s: &str) -> Option<NaiveTime> {
    let s = s.strip_suffix('Z').unwrap_or(s);
    ["%H:%M:%S%.f", "%H:%M:%S", "%H:%M"].iter().find_map(|fmt| NaiveTime::parse_from_str(s, fmt).ok())
}

fn instant_of_text(s: &str) -> Option<i64> {
    parse_datetime_micros(s).or_else(|| parse_date_micros(s))
}

/// Numbers compare exactly when both are integers, else as doubles.
pub(crate) fn cmp_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

/// One element of a target value: what a Query Term value is compared with.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// A JSON value held by the entity (never an array: arrays are flattened by the caller).
    Json(&'a Json),
    /// A string that is not a JSON value of the entity (relationship objects, vocab IRIs,
    /// language texts, `unitCode`, `datasetId`).
    Str(&'a str),
    /// A system or metadata instant (`observedAt`, `createdAt`, `modifiedAt`).
    Instant(i64),
}

impl<'a> Target<'a> {
    pub(crate) fn as_str(&self) -> Option<&'a str> {
        match *self {
            Self::Json(Json::String(s)) => Some(s),
            Self::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Orders a target element against a Query Term value; `None` when their data types differ.
pub(crate) fn compare(target: Target<'_>, value: &Value) -> Option<Ordering> {
    match target {
        Target::Str(s) => compare_str(s, value),
        Target::Instant(micros) => match value {
            Value::String(s) => Some(micros.cmp(&instant_of_text(s)?)),
            _ => Some(micros.cmp(&value.instant_micros()?)),
        },
        Target::Json(json) => match (json, value) {
            (Json::Number(a), Value::Number(b)) => cmp_numbers(a, b),
            (Json::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Json::String(s), _) => compare_str(s, value),
            (Json::Object(o), _) => {
                // JSON-LD value objects: {"@type": "DateTime", "@value": "…"} and friends.
                let literal = o.get("@value")?;
                let kind = o.get("@type").and_then(Json::as_str).map(|t| t.rsplit(['/', '#', ':']).next().unwrap_or(t));
                match (kind, literal.as_str()) {
                    (Some("DateTime" | "Date"), Some(text)) => compare(Target::Instant(instant_of_text(text)?), value),
                    (Some("Time"), Some(text)) => compare_time(parse_time(text)?, value),
                    _ => compare(Target::Json(literal), value),
                }
            }
            _ => None,
        },
    }
}

fn compare_str(s: &str, value: &Value) -> Option<Ordering> {
    match value {
        Value::String(q) | Value::Text(q) => Some(s.cmp(q.as_str())),
        Value::DateTime(_) | Value::Date(_) => Some(instant_of_text(s)?.cmp(&value.instant_micros()?)),
        Value::Time(t) => Some(parse_time(s)?.cmp(t)),
        Value::Number(_) | Value::Bool(_) => None,
    }
}

fn compare_time(time: NaiveTime, value: &Value) -> Option<Ordering> {
    match value {
        Value::Time(t) => Some(time.cmp(t)),
        Value::String(s) => Some(time.cmp(&parse_time(s)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lit(s: &str) -> Value {
        classify_unquoted(s).unwrap()
    }

    #[test]
    fn classifies_unquoted_literals() {
        assert_eq!(lit("true"), Value::Bool(true));
        assert_eq!(lit("-12"), Value::Number((-12).into()));
        assert!(matches!(lit("1.5e3"), Value::Number(n) if n.as_f64() == Some(1500.0)));
        assert!(matches!(lit("2024-01-01"), Value::Date(_)));
        assert!(matches!(lit("2024-01-01T10:00:00Z"), Value::DateTime(_)));
        assert!(matches!(lit("2024-01-01T10:00:00.123+09:00"), Value::DateTime(_)));
        assert!(matches!(lit("12:00:00"), Value::Time(_)));
        assert!(matches!(lit("12:00:00.5Z"), Value::Time(_)));
        for text in ["urn:ngsi-ld:City:Pisa", "commercial", "01", "+5", "inf", "NaN", "1.", ".5", "-", "2024"] {
            let expected = if text == "2024" { Value::Number(2024.into()) } else { Value::Text(text.into()) };
            assert_eq!(lit(text), expected, "{text}");
        }
        for bad in ["1e400", "2024-13-01", "2024-02-30T00:00:00Z", "25:00:00", "2024-01-01Tnoon"] {
            assert!(classify_unquoted(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn compares_by_data_type() {
        let n = json!(5);
        assert_eq!(compare(Target::Json(&n), &lit("5.0")), Some(Ordering::Equal));
        assert_eq!(compare(Target::Json(&n), &Value::String("5".into())), None);
        let big = json!(u64::MAX);
        assert_eq!(compare(Target::Json(&big), &Value::Number(u64::MAX.into())), Some(Ordering::Equal));
        let s = json!("2024-01-01T10:00:00Z");
        assert_eq!(compare(Target::Json(&s), &lit("2024-01-01")), Some(Ordering::Greater));
        assert_eq!(compare(Target::Json(&s), &Value::String("2024".into())), Some(Ordering::Greater));
        let typed = json!({"@type": "DateTime", "@value": "2024-01-01T00:00:00Z"});
        assert_eq!(compare(Target::Json(&typed), &lit("2024-01-01")), Some(Ordering::Equal));
        let time = json!({"@type": "https://uri.etsi.org/ngsi-ld/Time", "@value": "08:00:00Z"});
        assert_eq!(compare(Target::Json(&time), &lit("12:00:00")), Some(Ordering::Less));
        let instant = Target::Instant(lit("2020-01-02T00:00:00Z").instant_micros().unwrap());
        assert_eq!(compare(instant, &Value::String("2020-01-01T00:00:00Z".into())), Some(Ordering::Greater));
        assert_eq!(compare(instant, &Value::Bool(true)), None);
        let obj = json!({"a": 1});
        assert_eq!(compare(Target::Json(&obj), &lit("1")), None);
    }
}
