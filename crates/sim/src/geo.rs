//! The shipped boundary data (`assets/geo`, © NGII) and metric offsets around a point.

use serde_json::{Value, json};
use std::sync::OnceLock;

const SIGUNGU: &str = include_str!("../../../assets/geo/daejeon-sigungu.geojson");
const EMD: &str = include_str!("../../../assets/geo/daejeon-emd.geojson");

/// Attribution that must accompany the boundaries wherever they are shown.
pub(crate) const ATTRIBUTION: &str = "Boundaries: © 국토지리정보원 (NGII), data.go.kr, 2023-09-15";

fn features(doc: &'static str, cell: &'static OnceLock<Vec<Value>>) -> &'static [Value] {
    cell.get_or_init(|| {
        // The files are compiled in and checked by the tests: failing here is a build defect.
        let parsed: Value = serde_json::from_str(doc).expect("shipped GeoJSON is valid");
        parsed.get("features").and_then(Value::as_array).cloned().unwrap_or_default()
    })
}

fn find(doc: &'static str, cell: &'static OnceLock<Vec<Value>>, code: &str) -> Option<&'static Value> {
    features(doc, cell)
        .iter()
        .find(|f| f.pointer("/properties/code").and_then(Value::as_str) == Some(code))
        .and_then(|f| f.get("geometry"))
}

/// One MultiPolygon covering the areas with these administrative codes (districts: 5 digits,
/// neighbourhoods: 8 digits).
pub(crate) fn area(codes: &[&str]) -> Value {
    static SIGUNGU_FEATURES: OnceLock<Vec<Value>> = OnceLock::new();
    static EMD_FEATURES: OnceLock<Vec<Value>> = OnceLock::new();
    let mut polygons = Vec::new();
    for code in codes {
        let geometry =
            if code.len() == 5 { find(SIGUNGU, &SIGUNGU_FEATURES, code) } else { find(EMD, &EMD_FEATURES, code) };
        let Some(geometry) = geometry else { continue };
        let coordinates = geometry.get("coordinates").cloned().unwrap_or(Value::Null);
        match (geometry.get("type").and_then(Value::as_str), coordinates) {
            (Some("Polygon"), polygon) => polygons.push(polygon),
            (Some("MultiPolygon"), Value::Array(parts)) => polygons.extend(parts),
            _ => {}
        }
    }
    json!({"type": "MultiPolygon", "coordinates": polygons})
}

/// The point `east_m` metres east and `north_m` metres north of `origin` (lon, lat), rounded to
/// about 10 cm: sites span a few hundred metres, where the local flat-earth error is negligible.
pub(crate) fn offset(origin: [f64; 2], east_m: f64, north_m: f64) -> [f64; 2] {
    let lat = origin[1].to_radians();
    let lon = origin[0] + east_m / (111_320.0 * lat.cos());
    let lat = origin[1] + north_m / 110_574.0;
    [crate::ngsi::round(lon, 6), crate::ngsi::round(lat, 6)]
}
