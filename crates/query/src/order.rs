//! Entity ordering (§4.23 of V1.9.1): `orderBy` (URI parameter or the `orderBy` member of
//! OrderingParams, §5.2.43), with `collation` and, for ordering by distance, a reference
//! geometry (`orderFrom` / `coordinates` + `geometry`).
//!
//! Each item is a path with an optional direction: `name`, `name.sub;desc`, `name.createdAt`,
//! `address[city]`, `id`, `type`, `createdAt`, `location;dist-asc`. Paths are parsed by the
//! q-language parser, so they address exactly what a q term would, and are evaluated by the
//! same code. Values of different data types rank numbers (and instants) first, then strings,
//! then booleans, then anything else; an entity the path does not reach ranks last in either
//! direction (§4.23.2: absent values last).

use crate::Name;
use crate::geoquery::{entity_distance_m, reference_geometry};
use crate::q::{self, Expr, Path, Predicate, QueryOptions, sort_target};
use crate::value::Target;
use geo::Geometry;
use hanbat_model::{Context, Entity, NgsiError, Result};
use serde_json::Value as Json;
use std::cmp::Ordering;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// A parsed `orderBy` with its collation and distance reference.
#[derive(Debug, Clone)]
pub struct EntityOrder {
    keys: Vec<OrderKey>,
    collation: Collation,
}

#[derive(Debug, Clone)]
struct OrderKey {
    by: OrderPath,
    descending: bool,
}

#[derive(Debug, Clone)]
enum OrderPath {
    Id,
    Type,
    Path(Path),
    /// Metres from the reference geometry to the GeoProperty (expanded name).
    Distance(String, Box<Geometry<f64>>),
}

/// How strings compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collation {
    /// By Unicode code point (the default: no collation asked for).
    CodePoint,
    /// Linguistic order in the manner of the Unicode Collation Algorithm's root collation:
    /// base letters first (case and accents ignored), then accents, then case. Language
    /// tailorings (e.g. `de-u-co-phonebk`) are accepted and ordered by the root collation.
    Root,
}

impl Collation {
    /// A `collation` parameter: a BCP 47 language tag (RFC 6067 extensions included) or `und`.
    pub fn parse(tag: &str) -> Result<Self> {
        let well_formed = !tag.is_empty()
            && tag.split('-').enumerate().all(|(i, part)| {
                (1..=8).contains(&part.len())
                    && if i == 0 {
                        part.chars().all(|c| c.is_ascii_alphabetic())
                    } else {
                        part.chars().all(|c| c.is_ascii_alphanumeric())
                    }
            });
        if well_formed {
            Ok(Self::Root)
        } else {
            Err(NgsiError::bad_data(format!("collation: '{tag}' is not a BCP 47 language tag (e.g. und, de, ko-KR)")))
        }
    }

    fn compare(self, a: &str, b: &str) -> Ordering {
        match self {
            Self::CodePoint => a.cmp(b),
            Self::Root => {
                let base = |s: &str| {
                    s.nfd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).collect::<String>()
                };
                let marks = |s: &str| s.nfd().filter(|c| is_combining_mark(*c)).collect::<String>();
                base(a)
                    .cmp(&base(b))
                    .then_with(|| marks(a).cmp(&marks(b)))
                    // Lower case before upper case at the third level, as the root collation does.
                    .then_with(|| {
                        let case = |s: &str| s.chars().map(|c| c.is_uppercase()).collect::<Vec<_>>();
                        case(a).cmp(&case(b))
                    })
                    .then_with(|| a.cmp(b))
            }
        }
    }
}

/// The distance reference of an ordering by distance: `geometry` (default Point) and
/// `coordinates` (a JSON array, or its text as in the `orderFrom` URI parameter).
#[derive(Debug, Clone, Default)]
pub struct DistanceFrom<'a> {
    pub geometry: Option<&'a str>,
    pub coordinates: Option<&'a Json>,
}

impl EntityOrder {
    /// `items` as in `orderBy` (already split on commas), names expanded with `ctx`.
    pub fn parse(items: &[String], ctx: &Context, collation: Option<&str>, from: DistanceFrom<'_>) -> Result<Self> {
        if items.is_empty() {
            return Err(NgsiError::bad_data("orderBy: no member to order by"));
        }
        let collation = collation.map(Collation::parse).transpose()?.unwrap_or(Collation::CodePoint);
        let mut keys = Vec::with_capacity(items.len());
        for item in items {
            let (path, direction) = item.split_once(';').unwrap_or((item.as_str(), "asc"));
            let path = path.trim();
            let (descending, distance) = match direction.trim() {
                "asc" => (false, false),
                "desc" => (true, false),
                "dist-asc" => (false, true),
                "dist-desc" => (true, true),
                other => {
                    return Err(NgsiError::bad_data(format!(
                        "orderBy: '{other}' is not a direction (asc, desc, dist-asc, dist-desc)"
                    )));
                }
            };
            let by = if distance {
                OrderPath::Distance(Name::expand(path, ctx).iri, Box::new(reference(&from, item)?))
            } else {
                match path {
                    "id" => OrderPath::Id,
                    "type" => OrderPath::Type,
                    _ => OrderPath::Path(member_path(path, ctx)?),
                }
            };
            keys.push(OrderKey { by, descending });
        }
        Ok(Self { keys, collation })
    }

    /// `Some(descending)` when the order is by entity id alone, which stores answer from their
    /// index without loading every match.
    pub fn by_id_only(&self) -> Option<bool> {
        match self.keys.as_slice() {
            [OrderKey { by: OrderPath::Id, descending }] if self.collation == Collation::CodePoint => Some(*descending),
            _ => None,
        }
    }

    pub fn compare(&self, a: &Entity, b: &Entity) -> Ordering {
        for key in &self.keys {
            let ord = match &key.by {
                OrderPath::Id => directed(Some(self.collation.compare(&a.id, &b.id)), key.descending),
                OrderPath::Type => {
                    let first = |e: &'_ Entity| e.types.first().cloned();
                    compare_present(first(a), first(b), key.descending, |x, y| self.collation.compare(x, y))
                }
                OrderPath::Path(p) => {
                    let (x, y) = (sort_target(p, a), sort_target(p, b));
                    compare_present(x, y, key.descending, |x, y| self.compare_targets(*x, *y))
                }
                OrderPath::Distance(geoproperty, from) => compare_present(
                    entity_distance_m(a, geoproperty, from),
                    entity_distance_m(b, geoproperty, from),
                    key.descending,
                    f64::total_cmp,
                ),
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }

    fn compare_targets(&self, a: Target<'_>, b: Target<'_>) -> Ordering {
        let (ra, rb) = (rank(&a), rank(&b));
        if ra != rb {
            return ra.cmp(&rb);
        }
        match (a, b) {
            (Target::Instant(x), Target::Instant(y)) => x.cmp(&y),
            _ if ra == 0 => number(&a).total_cmp(&number(&b)),
            _ => match (a.as_str(), b.as_str()) {
                (Some(x), Some(y)) => self.collation.compare(x, y),
                _ => json_text(&a).cmp(&json_text(&b)),
            },
        }
    }
}

fn reference(from: &DistanceFrom<'_>, item: &str) -> Result<Geometry<f64>> {
    let Some(coordinates) = from.coordinates else {
        return Err(NgsiError::bad_data(format!(
            "orderBy={item}: ordering by distance needs the reference coordinates (orderFrom)"
        )));
    };
    let parsed;
    let coordinates = match coordinates {
        Json::String(text) => {
            parsed = serde_json::from_str::<Json>(text)
                .map_err(|_| NgsiError::bad_data(format!("orderFrom: '{text}' is not a JSON array of coordinates")))?;
            &parsed
        }
        Json::Array(_) => coordinates,
        other => return Err(NgsiError::bad_data(format!("coordinates must be a JSON array, not {other}"))),
    };
    if !coordinates.is_array() {
        return Err(NgsiError::bad_data(format!("coordinates must be a JSON array, not {coordinates}")));
    }
    reference_geometry(from.geometry.unwrap_or("Point"), coordinates)
}

/// A path of `orderBy` parsed as the path of a q existence term.
fn member_path(text: &str, ctx: &Context) -> Result<Path> {
    let expr = q::Query::parse_with(text, ctx, &QueryOptions::default())
        .map_err(|e| NgsiError::bad_data(format!("orderBy: {}", e.detail)))?
        .into_expr();
    match expr {
        Expr::Term(t) if t.predicate == Predicate::Exists && !matches!(t.path, Path::Linked(_)) => Ok(t.path),
        _ => Err(NgsiError::bad_data(format!("orderBy: '{text}' is not an attribute path"))),
    }
}

/// Orders two possibly absent keys: absent last whatever the direction.
fn compare_present<T>(a: Option<T>, b: Option<T>, descending: bool, cmp: impl Fn(&T, &T) -> Ordering) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => directed(Some(cmp(&x, &y)), descending),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn directed(ord: Option<Ordering>, descending: bool) -> Ordering {
    let ord = ord.unwrap_or(Ordering::Equal);
    if descending { ord.reverse() } else { ord }
}

/// §4.23.2: numbers and instants, then strings, then booleans, then other JSON values.
fn rank(t: &Target<'_>) -> u8 {
    match t {
        Target::Instant(_) | Target::Json(Json::Number(_)) => 0,
        Target::Str(_) | Target::Json(Json::String(_)) => 1,
        Target::Json(Json::Bool(_)) => 2,
        Target::Json(_) => 3,
    }
}

fn number(t: &Target<'_>) -> f64 {
    match t {
        Target::Json(Json::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Target::Instant(micros) => *micros as f64,
        _ => f64::NAN,
    }
}

fn json_text(t: &Target<'_>) -> String {
    match t {
        Target::Json(v) => v.to_string(),
        Target::Str(s) => (*s).to_string(),
        Target::Instant(m) => m.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hanbat_model::jsonld::core_context;

    #[test]
    fn root_collation_ranks_accents_with_their_base_letter() {
        let mut names = vec!["b", "á", "A", "a"];
        names.sort_by(|a, b| Collation::Root.compare(a, b));
        assert_eq!(names, ["a", "A", "á", "b"]);
        names.sort_by(|a, b| Collation::CodePoint.compare(a, b));
        assert_eq!(names, ["A", "a", "b", "á"]);
        assert_eq!(Collation::Root.compare("Ähre", "Zebra"), Ordering::Less);
    }

    #[test]
    fn collation_tags_are_checked() {
        for ok in ["und", "de", "de-u-co-phonebk", "ko-KR"] {
            assert_eq!(Collation::parse(ok).ok(), Some(Collation::Root), "{ok}");
        }
        for bad in ["", "!!nope", "not a bcp47 tag!!", "de--x", "toolongsubtag1"] {
            assert!(Collation::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn directions_and_distance_need_their_parts() {
        let ctx = core_context();
        let items = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
        assert!(EntityOrder::parse(&items("name;up"), &ctx, None, DistanceFrom::default()).is_err());
        assert!(EntityOrder::parse(&items("location;dist-asc"), &ctx, None, DistanceFrom::default()).is_err());
        let text = Json::String("8,40".into());
        let from = DistanceFrom { geometry: None, coordinates: Some(&text) };
        assert!(EntityOrder::parse(&items("location;dist-asc"), &ctx, None, from).is_err());
        let by_id = EntityOrder::parse(&items("id;desc"), &ctx, None, DistanceFrom::default()).ok();
        assert_eq!(by_id.and_then(|o| o.by_id_only()), Some(true));
    }
}
