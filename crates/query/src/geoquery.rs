//! Geo-queries (§4.10): `georel`, `geometry`, `coordinates`, `geoproperty`.
//!
//! The reference geometry is validated as GeoJSON (RFC 7946: positions are `[longitude,
//! latitude(, altitude)]` in WGS 84, rings closed with at least four positions) and converted to
//! a [`geo::Geometry`]. Relations follow the DE-9IM definitions the spec refers to (OGC Simple
//! Features), computed by `geo`'s `Relate` on longitude/latitude taken as planar coordinates, as
//! MongoDB and PostGIS `geometry` do; `near` measures metres on the sphere (haversine) between
//! the closest points of the two geometries.

use crate::Name;
use crate::cursor::{Cursor, is_name_char};
use crate::value::is_json_number;
use geo::{
    BoundingRect, Closest, Coord, CoordsIter, Distance as _, Geometry, GeometryCollection, Haversine,
    HaversineClosestPoint, Intersects, LineString, MultiLineString, MultiPoint, MultiPolygon, Point, Polygon, Rect,
    Relate,
};
use hanbat_model::{AttrValue, Context, Entity, NgsiError, Result};
use serde_json::Value as Json;
use std::fmt;

/// The geometry types a query may use (§4.10 `geometry`).
pub const GEOMETRY_TYPES: [&str; 6] =
    ["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"];

/// Metres per degree of arc on the sphere of `geo`'s haversine (mean Earth radius).
const METRES_PER_DEGREE: f64 = 6_371_008.8 * std::f64::consts::PI / 180.0;

/// A parsed geo-query.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoQuery {
    pub georel: GeoRel,
    /// The reference geometry, longitude as x and latitude as y.
    pub geometry: Geometry<f64>,
    /// The same geometry as GeoJSON (`{"type": …, "coordinates": …}`), e.g. for PostGIS's
    /// `ST_GeomFromGeoJSON`.
    pub geojson: Json,
    /// The GeoProperty tested (default `location`).
    pub geoproperty: Name,
}

/// `georel`: how an entity's geometry must relate to the reference geometry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GeoRel {
    /// `near;maxDistance==m` / `near;minDistance==m`: metres on the sphere between the closest
    /// points of the two geometries.
    Near(Distance),
    /// The entity's geometry is within the reference geometry.
    Within,
    /// The entity's geometry contains the reference geometry.
    Contains,
    Intersects,
    /// Topologically equal.
    Equals,
    Disjoint,
    Overlaps,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Distance {
    /// At most this many metres.
    Max(f64),
    /// At least this many metres.
    Min(f64),
}

impl GeoRel {
    /// Parses `georel`.
    pub fn parse(text: &str) -> Result<Self> {
        let mut cur = Cursor::new("georel", text);
        let word = cur.take_while(|c| c.is_ascii_alphabetic());
        let rel = match word {
            "near" => return near(&mut cur),
            "within" => Self::Within,
            "contains" => Self::Contains,
            "intersects" => Self::Intersects,
            "equals" => Self::Equals,
            "disjoint" => Self::Disjoint,
            "overlaps" => Self::Overlaps,
            "" => {
                return Err(cur.unexpected(
                    "a geo-relationship (near, within, contains, intersects, equals, disjoint or overlaps)",
                ));
            }
            other => {
                return Err(cur.error_at(
                    0,
                    format_args!(
                        "unknown geo-relationship '{other}' (expected near, within, contains, intersects, equals, disjoint or overlaps)"
                    ),
                ));
            }
        };
        if !cur.at_end() {
            return Err(cur.error_at(cur.pos(), format_args!("'{word}' takes no modifier")));
        }
        Ok(rel)
    }
}

/// After `near`: exactly one `;maxDistance==n` or `;minDistance==n`, n a positive finite JSON
/// number (the grammar's `PositiveNumber`).
fn near(cur: &mut Cursor<'_>) -> Result<GeoRel> {
    if !cur.eat(";") {
        return Err(cur.unexpected("';maxDistance==<metres>' or ';minDistance==<metres>' after 'near'"));
    }
    let at = cur.pos();
    let which = cur.take_while(|c| c.is_ascii_alphabetic());
    let make: fn(f64) -> Distance = match which {
        "maxDistance" => Distance::Max,
        "minDistance" => Distance::Min,
        _ => return Err(cur.error_at(at, "expected maxDistance or minDistance after 'near;'")),
    };
    if !cur.eat("==") {
        return Err(cur.unexpected(format_args!("'==' after '{which}'")));
    }
    let at = cur.pos();
    let number = cur.take_while(|c| c != ';');
    let metres = match is_json_number(number).then(|| serde_json::from_str::<f64>(number)) {
        Some(Ok(m)) if m.is_finite() && m > 0.0 => m,
        Some(Ok(m)) if m.is_finite() => {
            return Err(cur.error_at(at, format_args!("{which} must be a positive number of metres, not '{number}'")));
        }
        Some(_) => return Err(cur.error_at(at, format_args!("{which} {number} is out of range"))),
        None => {
            return Err(cur.error_at(at, format_args!("{which} must be a positive number of metres, not '{number}'")));
        }
    };
    if !cur.at_end() {
        return Err(cur.error_at(cur.pos(), "'near' takes exactly one distance (maxDistance or minDistance)"));
    }
    Ok(GeoRel::Near(make(metres)))
}

impl fmt::Display for GeoRel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Near(Distance::Max(m)) => write!(f, "near;maxDistance=={m}"),
            Self::Near(Distance::Min(m)) => write!(f, "near;minDistance=={m}"),
            Self::Within => f.write_str("within"),
            Self::Contains => f.write_str("contains"),
            Self::Intersects => f.write_str("intersects"),
            Self::Equals => f.write_str("equals"),
            Self::Disjoint => f.write_str("disjoint"),
            Self::Overlaps => f.write_str("overlaps"),
        }
    }
}

impl GeoQuery {
    /// From the GET parameters, `coordinates` as JSON text (`[8,40]`, `[[[0,0],[1,0],…]]`).
    pub fn parse(
        georel: &str,
        geometry: &str,
        coordinates: &str,
        geoproperty: Option<&str>,
        ctx: &Context,
    ) -> Result<Self> {
        let coordinates = serde_json::from_str::<Json>(coordinates).map_err(|e| {
            // serde_json counts lines and columns from 1 and, at the end of the input, points
            // at the last character rather than past it.
            let at = if e.is_eof() {
                coordinates.chars().count()
            } else {
                let before: usize =
                    coordinates.lines().take(e.line().saturating_sub(1)).map(|l| l.chars().count() + 1).sum();
                before + e.column().saturating_sub(1)
            };
            NgsiError::bad_data(format!("coordinates: not a JSON array at {at}: {}", json_problem(&e)))
        })?;
        Self::new(georel, geometry, &coordinates, geoproperty, ctx)
    }

    /// From already-parsed members (POST query bodies, subscriptions). `coordinates` is the
    /// array, or a string holding its JSON text (both forms occur in the wild).
    pub fn new(
        georel: &str,
        geometry: &str,
        coordinates: &Json,
        geoproperty: Option<&str>,
        ctx: &Context,
    ) -> Result<Self> {
        if let Json::String(text) = coordinates {
            return Self::parse(georel, geometry, text, geoproperty, ctx);
        }
        let georel = GeoRel::parse(georel)?;
        if !GEOMETRY_TYPES.contains(&geometry) {
            return Err(NgsiError::bad_data(format!(
                "geometry: '{geometry}' is not a supported geometry (Point, MultiPoint, LineString, MultiLineString, Polygon or MultiPolygon)"
            )));
        }
        let reference = convert(geometry, coordinates)
            .map_err(|why| NgsiError::bad_data(format!("coordinates: not a valid {geometry}: {why}")))?;
        let geoproperty = match geoproperty {
            None => Name::expand("location", ctx),
            Some(text) => {
                if text.is_empty() || !text.chars().all(|c| is_name_char(c) && c != '{' && c != '}') {
                    return Err(NgsiError::bad_data(format!("geoproperty: '{text}' is not an attribute name")));
                }
                Name::expand(text, ctx)
            }
        };
        let geojson = serde_json::json!({"type": geometry, "coordinates": coordinates});
        Ok(Self { georel, geometry: reference, geojson, geoproperty })
    }

    /// From optional GET parameters: `None` when none of georel, geometry and coordinates is
    /// given, an error when only some are.
    pub fn from_params(
        georel: Option<&str>,
        geometry: Option<&str>,
        coordinates: Option<&str>,
        geoproperty: Option<&str>,
        ctx: &Context,
    ) -> Result<Option<Self>> {
        match (georel, geometry, coordinates) {
            (None, None, None) => Ok(None),
            (Some(r), Some(g), Some(c)) => Self::parse(r, g, c, geoproperty, ctx).map(Some),
            _ => {
                let missing: Vec<&str> = [("georel", georel), ("geometry", geometry), ("coordinates", coordinates)]
                    .into_iter()
                    .filter(|(_, v)| v.is_none())
                    .map(|(n, _)| n)
                    .collect();
                Err(NgsiError::bad_data(format!(
                    "a geo-query needs georel, geometry and coordinates: {} missing",
                    missing.join(" and ")
                )))
            }
        }
    }

    /// From a GeoQuery object (§5.2.13): `{"georel": …, "geometry": …, "coordinates": …,
    /// "geoproperty": …}`.
    pub fn from_json(object: &Json, ctx: &Context) -> Result<Self> {
        let Some(o) = object.as_object() else {
            return Err(NgsiError::bad_data(format!("geoQ must be an object, not {object}")));
        };
        let string = |name: &str| -> Result<Option<&str>> {
            match o.get(name) {
                None => Ok(None),
                Some(Json::String(s)) => Ok(Some(s)),
                Some(other) => Err(NgsiError::bad_data(format!("geoQ: '{name}' must be a string, not {other}"))),
            }
        };
        let required = |name: &str| -> Result<&str> {
            string(name)?.ok_or_else(|| NgsiError::bad_data(format!("geoQ: '{name}' is missing")))
        };
        let coordinates = o.get("coordinates").ok_or_else(|| NgsiError::bad_data("geoQ: 'coordinates' is missing"))?;
        Self::new(required("georel")?, required("geometry")?, coordinates, string("geoproperty")?, ctx)
    }

    /// Whether some instance of the entity's geoproperty relates to the reference geometry as
    /// `georel` says. Entities without that GeoProperty do not match (§4.10), whatever the
    /// relation (`disjoint` included).
    pub fn matches(&self, entity: &Entity) -> bool {
        entity.attrs.get(&self.geoproperty.iri).into_iter().flatten().any(|inst| match &inst.value {
            AttrValue::GeoProperty(v) => from_geojson(v).is_ok_and(|g| self.matches_geometry(&g)),
            _ => false,
        })
    }

    /// Whether a geometry relates to the reference geometry as `georel` says.
    pub fn matches_geometry(&self, target: &Geometry<f64>) -> bool {
        // `geo`'s DE-9IM graph asserts its own topological consistency and panics on some
        // invalid geometries (self-intersecting or collapsed rings, which GeoJSON only
        // discourages and entities may hold). Such a geometry relates to nothing: the panic is
        // contained here so that no stored entity can crash a query. This relies on unwinding,
        // the default (no profile of the workspace sets `panic = "abort"`).
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.relate(target))).unwrap_or(false)
    }

    fn relate(&self, target: &Geometry<f64>) -> bool {
        let reference = &self.geometry;
        match self.georel {
            GeoRel::Near(Distance::Max(m)) => distance_m(target, reference).is_some_and(|d| d <= m),
            GeoRel::Near(Distance::Min(m)) => distance_m(target, reference).is_some_and(|d| d >= m),
            GeoRel::Within => target.relate(reference).is_within(),
            GeoRel::Contains => target.relate(reference).is_contains(),
            GeoRel::Intersects => target.intersects(reference),
            GeoRel::Disjoint => !target.intersects(reference),
            // Identical coordinates are equal even where DE-9IM is undefined (self-intersecting
            // polygons, which RFC 7946 discourages but ETSI's own fixtures use).
            GeoRel::Equals => target == reference || target.relate(reference).is_equal_topo(),
            GeoRel::Overlaps => target.relate(reference).is_overlaps(),
        }
    }

    /// The bounding box of the reference geometry.
    pub fn bbox(&self) -> Option<Rect<f64>> {
        self.geometry.bounding_rect()
    }

    /// A rectangle that every matching geometry intersects, for an R-tree or bbox prefilter;
    /// `None` when matches can lie anywhere (`disjoint`, `near;minDistance`).
    pub fn search_bbox(&self) -> Option<Rect<f64>> {
        match self.georel {
            GeoRel::Disjoint | GeoRel::Near(Distance::Min(_)) => None,
            GeoRel::Near(Distance::Max(m)) => self.bbox().map(|b| expand_bbox(b, m)),
            _ => self.bbox(),
        }
    }
}

/// A rectangle (degrees) holding every point within `metres` (on the sphere) of `rect`, for
/// `near` on an index of bounding boxes: the radius as an angle on latitudes, and on longitudes
/// widened for the rectangle's highest latitude (J. P. Matuschek, "Finding Points Within a
/// Distance of a Latitude/Longitude Using Bounding Coordinates"). When a pole is in reach or the
/// result would cross the antimeridian, all longitudes are covered.
pub fn expand_bbox(rect: Rect<f64>, metres: f64) -> Rect<f64> {
    let radius = metres / METRES_PER_DEGREE;
    let min_lat = rect.min().y - radius;
    let max_lat = rect.max().y + radius;
    let whole = (-180.0, 180.0);
    let (min_lon, max_lon) = if min_lat <= -90.0 || max_lat >= 90.0 {
        whole
    } else {
        let widest = rect.min().y.abs().max(rect.max().y.abs()).to_radians();
        let ratio = radius.to_radians().sin() / widest.cos();
        if ratio >= 1.0 {
            whole
        } else {
            let dlon = ratio.asin().to_degrees();
            let (a, b) = (rect.min().x - dlon, rect.max().x + dlon);
            if a < -180.0 || b > 180.0 { whole } else { (a, b) }
        }
    };
    Rect::new(Coord { x: min_lon, y: min_lat.max(-90.0) }, Coord { x: max_lon, y: max_lat.min(90.0) })
}

/// Converts a GeoJSON geometry (as an entity's GeoProperty holds it, GeometryCollection
/// included), validating it as the reference geometries are.
pub fn geometry_from_geojson(value: &Json) -> Result<Geometry<f64>> {
    from_geojson(value).map_err(|why| NgsiError::bad_data(format!("not a valid GeoJSON geometry: {why}")))
}

fn from_geojson(value: &Json) -> std::result::Result<Geometry<f64>, String> {
    let kind = value.get("type").and_then(Json::as_str).ok_or("it has no string 'type'")?;
    if kind == "GeometryCollection" {
        let parts =
            value.get("geometries").and_then(Json::as_array).ok_or("a GeometryCollection needs 'geometries'")?;
        let parts = parts.iter().map(from_geojson).collect::<std::result::Result<Vec<_>, _>>()?;
        return Ok(Geometry::GeometryCollection(GeometryCollection::new_from(parts)));
    }
    let coordinates = value.get("coordinates").ok_or_else(|| format!("a {kind} needs 'coordinates'"))?;
    convert(kind, coordinates)
}

fn convert(kind: &str, c: &Json) -> std::result::Result<Geometry<f64>, String> {
    Ok(match kind {
        "Point" => Geometry::Point(Point(position(c, "")?)),
        "MultiPoint" => Geometry::MultiPoint(MultiPoint(
            non_empty(c, "", "a MultiPoint")?
                .iter()
                .enumerate()
                .map(|(i, p)| position(p, &format!("[{i}]")).map(Point))
                .collect::<std::result::Result<_, _>>()?,
        )),
        "LineString" => Geometry::LineString(line(c, "")?),
        "MultiLineString" => Geometry::MultiLineString(MultiLineString(
            non_empty(c, "", "a MultiLineString")?
                .iter()
                .enumerate()
                .map(|(i, l)| line(l, &format!("[{i}]")))
                .collect::<std::result::Result<_, _>>()?,
        )),
        "Polygon" => Geometry::Polygon(polygon(c, "")?),
        "MultiPolygon" => Geometry::MultiPolygon(MultiPolygon(
            non_empty(c, "", "a MultiPolygon")?
                .iter()
                .enumerate()
                .map(|(i, p)| polygon(p, &format!("[{i}]")))
                .collect::<std::result::Result<_, _>>()?,
        )),
        other => return Err(format!("'{other}' is not a GeoJSON geometry type")),
    })
}

/// `at` locates the part in the coordinates array, e.g. `[0][3]`.
fn non_empty<'a>(v: &'a Json, at: &str, what: &str) -> std::result::Result<&'a Vec<Json>, String> {
    match v.as_array() {
        Some(items) if !items.is_empty() => Ok(items),
        Some(_) => Err(format!("{what}{} has no positions", where_(at))),
        None => Err(format!("{what}{} must be an array, not {v}", where_(at))),
    }
}

fn where_(at: &str) -> String {
    if at.is_empty() { String::new() } else { format!(" at {at}") }
}

fn position(v: &Json, at: &str) -> std::result::Result<Coord<f64>, String> {
    let numbers: Option<Vec<f64>> =
        v.as_array().and_then(|items| items.iter().map(Json::as_f64).collect::<Option<Vec<_>>>());
    let Some(n) = numbers.filter(|n| (2..=3).contains(&n.len())) else {
        return Err(format!("the position{} must be [longitude, latitude], not {v}", where_(at)));
    };
    let (lon, lat) = (n[0], n[1]);
    if !(-180.0..=180.0).contains(&lon) {
        return Err(format!("the longitude {lon}{} is outside -180..180", where_(at)));
    }
    if !(-90.0..=90.0).contains(&lat) {
        return Err(format!("the latitude {lat}{} is outside -90..90", where_(at)));
    }
    Ok(Coord { x: lon, y: lat })
}

fn line(v: &Json, at: &str) -> std::result::Result<LineString<f64>, String> {
    let items = non_empty(v, at, "a LineString")?;
    if items.len() < 2 {
        return Err(format!("a LineString{} needs at least 2 positions", where_(at)));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, p)| position(p, &format!("{at}[{i}]")))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map(LineString)
}

fn polygon(v: &Json, at: &str) -> std::result::Result<Polygon<f64>, String> {
    let rings = non_empty(v, at, "a Polygon")?;
    let mut converted = Vec::with_capacity(rings.len());
    for (i, ring) in rings.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let positions = non_empty(ring, &at, "a ring")?;
        if positions.iter().any(|p| !p.is_array()) {
            // The classic mistake: LineString-shaped coordinates given for a Polygon.
            return Err(format!(
                "the ring at {at} must be an array of positions, not {ring} (Polygon coordinates nest three levels: [[[lon,lat],…]])"
            ));
        }
        if positions.len() < 4 {
            return Err(format!("the ring at {at} needs at least 4 positions (the last one repeating the first)"));
        }
        let coords = positions
            .iter()
            .enumerate()
            .map(|(j, p)| position(p, &format!("{at}[{j}]")))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if coords.first() != coords.last() {
            return Err(format!("the ring at {at} is not closed (its last position must repeat the first)"));
        }
        converted.push(LineString(coords));
    }
    let mut rings = converted.into_iter();
    let exterior = rings.next().unwrap_or_else(|| LineString(Vec::new()));
    Ok(Polygon::new(exterior, rings.collect()))
}

fn json_problem(e: &serde_json::Error) -> String {
    let text = e.to_string();
    // serde_json appends " at line L column C"; the position is reported separately.
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Metres from `reference` to the nearest instance of the entity's GeoProperty `geoproperty`
/// (an expanded name); `None` when the entity has no such valid geometry.
pub(crate) fn entity_distance_m(entity: &Entity, geoproperty: &str, reference: &Geometry<f64>) -> Option<f64> {
    entity
        .attrs
        .get(geoproperty)
        .into_iter()
        .flatten()
        .filter_map(|inst| match &inst.value {
            AttrValue::GeoProperty(v) => from_geojson(v).ok(),
            _ => None,
        })
        .filter_map(|g| distance_m(reference, &g))
        .reduce(f64::min)
}

/// A reference geometry from its type and coordinates (`orderFrom`, ordering by distance).
pub(crate) fn reference_geometry(geometry: &str, coordinates: &Json) -> Result<Geometry<f64>> {
    if !GEOMETRY_TYPES.contains(&geometry) {
        return Err(NgsiError::bad_data(format!("geometry: '{geometry}' is not a supported geometry")));
    }
    convert(geometry, coordinates)
        .map_err(|why| NgsiError::bad_data(format!("coordinates: not a valid {geometry}: {why}")))
}

/// Metres between the closest points of two geometries on the sphere; `None` if not computable.
fn distance_m(a: &Geometry<f64>, b: &Geometry<f64>) -> Option<f64> {
    if a.intersects(b) {
        return Some(0.0);
    }
    // Between non-intersecting geometries the closest pair involves a vertex of one of them.
    let one_way = |from: &Geometry<f64>, to: &Geometry<f64>| {
        from.coords_iter()
            .filter_map(|c| point_distance(Point(c), to))
            .fold(None, |best: Option<f64>, d| Some(best.map_or(d, |b| b.min(d))))
    };
    match (one_way(a, b), one_way(b, a)) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn point_distance(p: Point<f64>, to: &Geometry<f64>) -> Option<f64> {
    let d = match to.haversine_closest_point(&p) {
        Closest::Intersection(_) => 0.0,
        Closest::SinglePoint(q) => Haversine.distance(p, q),
        Closest::Indeterminate => f64::NAN,
    };
    if d.is_finite() {
        return Some(d);
    }
    to.coords_iter().map(|c| Haversine.distance(p, Point(c))).filter(|d| d.is_finite()).reduce(f64::min)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hanbat_model::jsonld::core_context;
    use proptest::prelude::*;
    use serde_json::json;

    fn gq(georel: &str, geometry: &str, coordinates: &str) -> GeoQuery {
        GeoQuery::parse(georel, geometry, coordinates, None, &core_context()).unwrap()
    }

    fn detail(georel: &str, geometry: &str, coordinates: &str) -> String {
        GeoQuery::parse(georel, geometry, coordinates, None, &core_context()).unwrap_err().detail
    }

    fn entity_at(geometry: Json) -> Entity {
        let mut e = Entity::new("urn:x:1", vec!["urn:T".into()]);
        e.attrs.insert(
            "https://uri.etsi.org/ngsi-ld/location".into(),
            vec![hanbat_model::Attribute::new(AttrValue::GeoProperty(geometry))],
        );
        e
    }

    #[test]
    fn georel_round_trips_and_defaults() {
        for text in [
            "near;maxDistance==500",
            "near;minDistance==10.5",
            "within",
            "contains",
            "intersects",
            "equals",
            "disjoint",
            "overlaps",
        ] {
            assert_eq!(GeoRel::parse(text).unwrap().to_string(), text);
        }
        let q = gq("within", "Point", "[1,2]");
        assert_eq!(q.geoproperty.iri, "https://uri.etsi.org/ngsi-ld/location");
        assert_eq!(q.geojson, json!({"type": "Point", "coordinates": [1, 2]}));
    }

    #[test]
    fn validation_errors_locate_the_problem() {
        for (georel, geometry, coordinates, expected) in [
            ("within;maxDistance==5", "Polygon", "[]", "georel: 'within' takes no modifier at 6"),
            (
                "",
                "Point",
                "[1,2]",
                "georel: unexpected end at 0, expected a geo-relationship (near, within, contains, intersects, equals, disjoint or overlaps)",
            ),
            ("near;distance==5", "Point", "[1,2]", "georel: expected maxDistance or minDistance after 'near;' at 5"),
            ("near;maxDistance=5", "Point", "[1,2]", "georel: unexpected '=' at 16, expected '==' after 'maxDistance'"),
            (
                "near;maxDistance==",
                "Point",
                "[1,2]",
                "georel: maxDistance must be a positive number of metres, not '' at 18",
            ),
            (
                "within",
                "point",
                "[1,2]",
                "geometry: 'point' is not a supported geometry (Point, MultiPoint, LineString, MultiLineString, Polygon or MultiPolygon)",
            ),
            (
                "within",
                "GeometryCollection",
                "[1,2]",
                "geometry: 'GeometryCollection' is not a supported geometry (Point, MultiPoint, LineString, MultiLineString, Polygon or MultiPolygon)",
            ),
            ("within", "Point", "[1,2", "coordinates: not a JSON array at 4: EOF while parsing a list"),
            ("within", "Point", "8,40", "coordinates: not a JSON array at 1: trailing characters"),
            (
                "within",
                "Point",
                "[1]",
                "coordinates: not a valid Point: the position must be [longitude, latitude], not [1]",
            ),
            (
                "within",
                "Point",
                "[1,2,3,4]",
                "coordinates: not a valid Point: the position must be [longitude, latitude], not [1,2,3,4]",
            ),
            (
                "within",
                "Point",
                "[\"1\",2]",
                "coordinates: not a valid Point: the position must be [longitude, latitude], not [\"1\",2]",
            ),
            ("within", "Point", "[181,0]", "coordinates: not a valid Point: the longitude 181 is outside -180..180"),
            ("within", "Point", "[0,-90.5]", "coordinates: not a valid Point: the latitude -90.5 is outside -90..90"),
            ("within", "MultiPoint", "[]", "coordinates: not a valid MultiPoint: a MultiPoint has no positions"),
            (
                "within",
                "MultiPoint",
                "[[0,0],[0,91]]",
                "coordinates: not a valid MultiPoint: the latitude 91 at [1] is outside -90..90",
            ),
            (
                "within",
                "LineString",
                "[[0,0]]",
                "coordinates: not a valid LineString: a LineString needs at least 2 positions",
            ),
            (
                "within",
                "LineString",
                "[0,0]",
                "coordinates: not a valid LineString: the position at [0] must be [longitude, latitude], not 0",
            ),
            (
                "within",
                "MultiLineString",
                "[[[0,0],[1,1]],[[0,0]]]",
                "coordinates: not a valid MultiLineString: a LineString at [1] needs at least 2 positions",
            ),
            (
                "within",
                "Polygon",
                "[[[0,0],[1,0],[0,1]]]",
                "coordinates: not a valid Polygon: the ring at [0] needs at least 4 positions (the last one repeating the first)",
            ),
            (
                "within",
                "Polygon",
                "[[[0,0],[1,0],[1,1],[0,1]]]",
                "coordinates: not a valid Polygon: the ring at [0] is not closed (its last position must repeat the first)",
            ),
            (
                "within",
                "Polygon",
                "[[0,0],[1,0],[1,1],[0,0]]",
                "coordinates: not a valid Polygon: the ring at [0] must be an array of positions, not [0,0] (Polygon coordinates nest three levels: [[[lon,lat],…]])",
            ),
            (
                "within",
                "MultiPolygon",
                "[[[[0,0],[1,0],[1,1],[0,0]]],[[[0,0],[1,0],[1,1],[0,200]]]]",
                "coordinates: not a valid MultiPolygon: the latitude 200 at [1][0][3] is outside -90..90",
            ),
            ("within", "Polygon", "{}", "coordinates: not a valid Polygon: a Polygon must be an array, not {}"),
        ] {
            assert_eq!(detail(georel, geometry, coordinates), expected, "{georel} {geometry} {coordinates}");
        }
        let ctx = core_context();
        assert_eq!(
            GeoQuery::parse("within", "Point", "[1,2]", Some("a b"), &ctx).unwrap_err().detail,
            "geoproperty: 'a b' is not an attribute name"
        );
    }

    #[test]
    fn constructors_for_get_post_and_subscriptions() {
        let ctx = core_context();
        assert_eq!(GeoQuery::from_params(None, None, None, Some("x"), &ctx).unwrap(), None);
        assert_eq!(
            GeoQuery::from_params(Some("near;maxDistance==5"), None, Some("[1,2]"), None, &ctx).unwrap_err().detail,
            "a geo-query needs georel, geometry and coordinates: geometry missing"
        );
        assert!(GeoQuery::from_params(Some("within"), Some("Point"), Some("[1,2]"), None, &ctx).unwrap().is_some());
        let body = json!({"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": [8, 40], "geoproperty": "observationSpace"});
        let q = GeoQuery::from_json(&body, &ctx).unwrap();
        assert_eq!(q.geoproperty.iri, "https://uri.etsi.org/ngsi-ld/observationSpace");
        let as_text = json!({"georel": "within", "geometry": "Point", "coordinates": "[8, 40]"});
        assert_eq!(GeoQuery::from_json(&as_text, &ctx).unwrap().geometry, Geometry::Point(Point::new(8.0, 40.0)));
        for (body, expected) in [
            (json!([]), "geoQ must be an object, not []"),
            (json!({"geometry": "Point", "coordinates": [1, 2]}), "geoQ: 'georel' is missing"),
            (
                json!({"georel": 5, "geometry": "Point", "coordinates": [1, 2]}),
                "geoQ: 'georel' must be a string, not 5",
            ),
            (json!({"georel": "within", "geometry": "Point"}), "geoQ: 'coordinates' is missing"),
        ] {
            assert_eq!(GeoQuery::from_json(&body, &ctx).unwrap_err().detail, expected);
        }
    }

    #[test]
    fn relations_on_entities() {
        let square = "[[[0,0],[4,0],[4,4],[0,4],[0,0]]]";
        let inside = entity_at(json!({"type": "Point", "coordinates": [1, 1]}));
        let edge = entity_at(json!({"type": "Point", "coordinates": [4, 2]}));
        let crossing = entity_at(json!({"type": "LineString", "coordinates": [[2, 2], [6, 2]]}));
        let big =
            entity_at(json!({"type": "Polygon", "coordinates": [[[-1, -1], [5, -1], [5, 5], [-1, 5], [-1, -1]]]}));
        let overlapping =
            entity_at(json!({"type": "Polygon", "coordinates": [[[2, 2], [6, 2], [6, 6], [2, 6], [2, 2]]]}));
        let collection = entity_at(json!({"type": "GeometryCollection", "geometries": [
            {"type": "Point", "coordinates": [50, 50]}, {"type": "Point", "coordinates": [1, 1]}]}));
        let invalid = entity_at(json!({"type": "Point", "coordinates": [500, 1]}));
        let cases: [(&str, [bool; 7]); 6] = [
            ("within", [true, false, false, false, false, false, false]),
            ("contains", [false, false, false, true, false, false, false]),
            ("intersects", [true, true, true, true, true, true, false]),
            ("disjoint", [false, false, false, false, false, false, false]),
            ("overlaps", [false, false, false, false, true, false, false]),
            ("equals", [false, false, false, false, false, false, false]),
        ];
        for (georel, expected) in cases {
            let q = gq(georel, "Polygon", square);
            let got = [&inside, &edge, &crossing, &big, &overlapping, &collection, &invalid].map(|e| q.matches(e));
            assert_eq!(got, expected, "{georel}");
        }
        let far = entity_at(json!({"type": "Point", "coordinates": [40, 40]}));
        assert!(gq("disjoint", "Polygon", square).matches(&far));
        assert!(!gq("disjoint", "Polygon", square).matches(&Entity::new("urn:x:2", vec![])));
        assert!(gq("equals", "Point", "[40,40]").matches(&far));
    }

    #[test]
    fn near_measures_metres_between_closest_points() {
        let square = entity_at(json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}));
        // A point inside the polygon is at distance 0.
        assert!(gq("near;maxDistance==1", "Point", "[0.5,0.5]").matches(&square));
        assert!(!gq("near;minDistance==1", "Point", "[0.5,0.5]").matches(&square));
        // 0.01° of longitude east of the edge at latitude 0.5: about 1112 m.
        assert!(gq("near;maxDistance==1200", "Point", "[1.01,0.5]").matches(&square));
        assert!(!gq("near;maxDistance==1000", "Point", "[1.01,0.5]").matches(&square));
        assert!(gq("near;minDistance==1000", "Point", "[1.01,0.5]").matches(&square));
        // Between two polygons, the gap between their edges counts.
        let other = "[[[1.02,0],[2,0],[2,1],[1.02,1],[1.02,0]]]";
        assert!(gq("near;maxDistance==2300", "Polygon", other).matches(&square));
        assert!(!gq("near;maxDistance==2000", "Polygon", other).matches(&square));
        assert!(gq("near;maxDistance==2300", "MultiPolygon", &format!("[{other}]")).matches(&square));
    }

    #[test]
    fn search_boxes() {
        let q = gq("within", "Polygon", "[[[0,0],[2,0],[2,1],[0,1],[0,0]]]");
        assert_eq!(q.search_bbox(), Some(Rect::new(Coord { x: 0.0, y: 0.0 }, Coord { x: 2.0, y: 1.0 })));
        assert_eq!(gq("disjoint", "Point", "[0,0]").search_bbox(), None);
        assert_eq!(gq("near;minDistance==5", "Point", "[0,0]").search_bbox(), None);
        let near = gq("near;maxDistance==111195", "Point", "[10,0]").search_bbox().unwrap();
        assert!((near.min().y + 1.0).abs() < 1e-4 && (near.max().x - 11.0).abs() < 1e-3, "{near:?}");
        let polar = gq("near;maxDistance==500000", "Point", "[10,88]").search_bbox().unwrap();
        assert_eq!((polar.min().x, polar.max().x, polar.max().y), (-180.0, 180.0, 90.0));
        let dateline = gq("near;maxDistance==500000", "Point", "[179,0]").search_bbox().unwrap();
        assert_eq!((dateline.min().x, dateline.max().x), (-180.0, 180.0));
    }

    /// Found by the fuzz test: `geo`'s relate panics ("topology position conflict") on these
    /// invalid polygons. The query answers "no match" (the panic message still reaches stderr).
    #[test]
    fn invalid_geometries_that_crash_relate_do_not_match() {
        let q = gq(
            "equals",
            "Polygon",
            "[[[0,-1],[1,1],[-2,-3],[0,-1]],[[-2,-1],[0,3],[3,0],[0,2],[-2,1],[3,-2],[-2,-1]]]",
        );
        let target = entity_at(
            json!({"type": "Polygon", "coordinates": [[[-2, 1], [3, 1], [-3, 1], [-2, 1]], [[-1, 1], [1, 1], [1, 0], [-1, 1]]]}),
        );
        assert!(!q.matches(&target));
    }

    proptest! {
        /// Every point within the distance of the centre lies in the expanded box.
        #[test]
        fn expanded_boxes_hold_every_point_in_reach(
            lon in -170.0f64..170.0, lat in -80.0f64..80.0, metres in 1.0f64..2_000_000.0,
            bearing in 0.0f64..360.0, fraction in 0.0f64..1.0,
        ) {
            use geo::Destination;
            let centre = Point::new(lon, lat);
            let rect = expand_bbox(Rect::new(centre.0, centre.0), metres);
            let p = Haversine.destination(centre, bearing, metres * fraction);
            prop_assert!(rect.min().x <= p.x() + 1e-9 && p.x() - 1e-9 <= rect.max().x, "{p:?} outside {rect:?}");
            prop_assert!(rect.min().y <= p.y() + 1e-9 && p.y() - 1e-9 <= rect.max().y, "{p:?} outside {rect:?}");
        }
    }
}
