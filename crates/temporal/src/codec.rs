//! Samples of one series (entity, attribute, datasetId) and their compressed chunk encoding.
//!
//! A chunk is a byte string of samples in write order. Timestamps are zig-zag varint
//! deltas of deltas (1 byte for a regular series instead of 8); numbers that fit an `i64` are varint deltas,
//! other numbers raw `f64`; anything else (strings, relationships, sub-attributes, a unit code
//! that differs from the chunk's) is the attribute's stored JSON. A numeric sample of a regular
//! series takes about 12 bytes instead of a ~150-byte JSON row.

use hanbat_model::{AttrValue, Attribute};
use serde_json::Value;

/// Where a sample came from: the history log record and the position in it. Stable for the
/// sample's life, it is the basis of the instance id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    pub record: i64,
    pub index: u32,
}

impl Origin {
    pub fn instance_id(&self) -> String {
        format!("urn:ngsi-ld:Instance:{:x}-{:x}", self.record, self.index)
    }

    pub fn parse_instance_id(id: &str) -> Option<Self> {
        let rest = id.strip_prefix("urn:ngsi-ld:Instance:")?;
        let (record, index) = rest.split_once('-')?;
        Some(Self { record: i64::from_str_radix(record, 16).ok()?, index: u32::from_str_radix(index, 16).ok()? })
    }
}

/// What one sample holds.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleValue {
    /// A plain numeric Property (unit code: the chunk's).
    Integer(i64),
    Float(f64),
    /// Any other instance (stored form, without times and ids).
    Instance(Box<Attribute>),
    /// The attribute was deleted at `recorded`; the instance is the NGSI-LD null of its kind
    /// (`"value"`, `"object"` … `"urn:ngsi-ld:null"`), so history shows what was deleted.
    Deleted(Box<Attribute>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub origin: Origin,
    /// When the broker recorded it (the instance's `createdAt`/`modifiedAt` in history).
    pub recorded: i64,
    /// `observedAt`, when the instance had one.
    pub observed: Option<i64>,
    pub value: SampleValue,
}

impl Sample {
    /// Builds a sample from an attribute instance as written; `unit` is the unit code that the
    /// series' chunks take as default.
    pub fn from_instance(origin: Origin, recorded: i64, attr: &Attribute) -> Self {
        let observed = attr.observed_at.as_ref().map(|t| t.micros());
        // An instance that expires (§4.22) keeps its expiresAt: history reports it with sysAttrs.
        let plain = attr.sub.is_empty() && attr.previous.is_none() && attr.expires_at.is_none();
        let value = match &attr.value {
            AttrValue::Property(Value::Number(n)) if plain => match n.as_i64() {
                Some(i) => SampleValue::Integer(i),
                None => match n.as_f64() {
                    Some(f) if f.is_finite() => SampleValue::Float(f),
                    _ => SampleValue::Instance(Box::new(stripped(attr))),
                },
            },
            AttrValue::Null => SampleValue::Deleted(Box::new(stripped(attr))),
            _ if crate::codec::is_null_of_kind(&attr.value) => SampleValue::Deleted(Box::new(stripped(attr))),
            _ => SampleValue::Instance(Box::new(stripped(attr))),
        };
        Self { origin, recorded, observed, value }
    }

    /// Whether the sample is a plain number (the unit code then comes from the chunk).
    pub fn is_numeric(&self) -> bool {
        matches!(self.value, SampleValue::Integer(_) | SampleValue::Float(_))
    }

    pub fn number(&self) -> Option<f64> {
        match &self.value {
            SampleValue::Integer(i) => Some(*i as f64),
            SampleValue::Float(f) => Some(*f),
            SampleValue::Instance(a) => match &a.value {
                AttrValue::Property(Value::Number(n)) => n.as_f64(),
                _ => None,
            },
            SampleValue::Deleted(_) => None,
        }
    }
}

/// Whether a value is the NGSI-LD null of its kind (a deletion marker).
pub fn is_null_of_kind(v: &AttrValue) -> bool {
    let null = |v: &Value| v.as_str() == Some(hanbat_model::entity::NGSI_LD_NULL);
    match v {
        AttrValue::Null => true,
        AttrValue::Relationship { object, .. } => null(object),
        AttrValue::LanguageProperty(m) => m.len() == 1 && m.get("@none").is_some_and(null),
        AttrValue::VocabProperty(v) | AttrValue::JsonProperty(v) => null(v),
        AttrValue::ListProperty(l) | AttrValue::ListRelationship(l) => l.len() == 1 && null(&l[0]),
        AttrValue::Property(_) | AttrValue::GeoProperty(_) => false,
    }
}

/// The NGSI-LD null of the kind of `v`: how a deletion of such an attribute is recorded.
pub fn null_of_kind(v: &AttrValue) -> AttrValue {
    let null = || Value::String(hanbat_model::entity::NGSI_LD_NULL.into());
    match v {
        AttrValue::Relationship { .. } => AttrValue::Relationship { object: null(), object_type: Vec::new() },
        AttrValue::LanguageProperty(_) => {
            AttrValue::LanguageProperty(std::iter::once(("@none".to_string(), null())).collect())
        }
        AttrValue::VocabProperty(_) => AttrValue::VocabProperty(null()),
        AttrValue::JsonProperty(_) => AttrValue::JsonProperty(null()),
        AttrValue::ListProperty(_) => AttrValue::ListProperty(vec![null()]),
        AttrValue::ListRelationship(_) => AttrValue::ListRelationship(vec![null()]),
        AttrValue::Property(_) | AttrValue::GeoProperty(_) | AttrValue::Null => AttrValue::Null,
    }
}

/// The attribute without what the sample stores separately.
fn stripped(attr: &Attribute) -> Attribute {
    let mut a = attr.clone();
    a.observed_at = None;
    a.created_at = None;
    a.modified_at = None;
    a.instance_id = None;
    a.dataset_id = None;
    a.deleted_at = None;
    a
}

const HAS_OBSERVED: u8 = 1;
const INTEGER: u8 = 2;
const FLOAT: u8 = 4;
const INSTANCE: u8 = 8;
const DELETED: u8 = 16;
const FORMAT_VERSION: u8 = 1;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Encodes samples (in the order given) into a chunk whose numeric samples carry `unit`.
pub fn encode(samples: &[Sample], unit: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + samples.len() * 12);
    out.push(FORMAT_VERSION);
    let unit = unit.unwrap_or("");
    put_varint(&mut out, unit.len() as u64);
    out.extend_from_slice(unit.as_bytes());
    put_varint(&mut out, samples.len() as u64);
    let (mut record, mut integer) = (0i64, 0i64);
    let (mut recorded, mut observed) = (DeltaOfDelta::default(), DeltaOfDelta::default());
    for s in samples {
        let flags = match &s.value {
            SampleValue::Integer(_) => INTEGER,
            SampleValue::Float(_) => FLOAT,
            SampleValue::Instance(_) => INSTANCE,
            SampleValue::Deleted(_) => DELETED,
        } | if s.observed.is_some() { HAS_OBSERVED } else { 0 };
        out.push(flags);
        put_varint(&mut out, zigzag(s.origin.record.wrapping_sub(record)));
        put_varint(&mut out, u64::from(s.origin.index));
        put_varint(&mut out, zigzag(recorded.encode(s.recorded)));
        record = s.origin.record;
        if let Some(o) = s.observed {
            put_varint(&mut out, zigzag(observed.encode(o)));
        }
        match &s.value {
            SampleValue::Integer(i) => {
                put_varint(&mut out, zigzag(i.wrapping_sub(integer)));
                integer = *i;
            }
            SampleValue::Float(f) => out.extend_from_slice(&f.to_le_bytes()),
            SampleValue::Instance(a) | SampleValue::Deleted(a) => {
                let json = serde_json::to_vec(a.as_ref()).unwrap_or_default();
                put_varint(&mut out, json.len() as u64);
                out.extend_from_slice(&json);
            }
        }
    }
    out
}

/// Delta-of-delta state of one timestamp column.
#[derive(Debug, Clone, Copy, Default)]
struct DeltaOfDelta {
    last: i64,
    delta: i64,
}

impl DeltaOfDelta {
    fn encode(&mut self, t: i64) -> i64 {
        let delta = t.wrapping_sub(self.last);
        let dod = delta.wrapping_sub(self.delta);
        (self.last, self.delta) = (t, delta);
        dod
    }

    fn decode(&mut self, dod: i64) -> i64 {
        self.delta = self.delta.wrapping_add(dod);
        self.last = self.last.wrapping_add(self.delta);
        self.last
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }
}

/// A decoded chunk: its unit code and a visitor over its samples.
pub struct Chunk<'a> {
    pub unit: Option<String>,
    reader: Reader<'a>,
    remaining: u64,
    record: i64,
    integer: i64,
    recorded: DeltaOfDelta,
    observed: DeltaOfDelta,
}

impl<'a> Chunk<'a> {
    /// Opens a chunk; `None` if the bytes are not a chunk of this format.
    pub fn open(bytes: &'a [u8]) -> Option<Self> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.byte()? != FORMAT_VERSION {
            return None;
        }
        let unit_len = reader.varint()? as usize;
        let unit = std::str::from_utf8(reader.take(unit_len)?).ok()?.to_string();
        let remaining = reader.varint()?;
        Some(Self {
            unit: (!unit.is_empty()).then_some(unit),
            reader,
            remaining,
            record: 0,
            integer: 0,
            recorded: DeltaOfDelta::default(),
            observed: DeltaOfDelta::default(),
        })
    }

    pub fn len(&self) -> u64 {
        self.remaining
    }

    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

impl Iterator for Chunk<'_> {
    type Item = Sample;

    /// The next sample; a corrupt chunk ends the iteration rather than panicking.
    fn next(&mut self) -> Option<Sample> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let r = &mut self.reader;
        let flags = r.byte()?;
        self.record = self.record.wrapping_add(unzigzag(r.varint()?));
        let index = u32::try_from(r.varint()?).ok()?;
        let recorded = self.recorded.decode(unzigzag(r.varint()?));
        let obs = if flags & HAS_OBSERVED != 0 { Some(self.observed.decode(unzigzag(r.varint()?))) } else { None };
        let value = if flags & INTEGER != 0 {
            self.integer = self.integer.wrapping_add(unzigzag(r.varint()?));
            SampleValue::Integer(self.integer)
        } else if flags & FLOAT != 0 {
            SampleValue::Float(f64::from_le_bytes(r.take(8)?.try_into().ok()?))
        } else {
            let n = r.varint()? as usize;
            let attr = Box::new(serde_json::from_slice(r.take(n)?).ok()?);
            if flags & DELETED != 0 { SampleValue::Deleted(attr) } else { SampleValue::Instance(attr) }
        };
        Some(Sample { origin: Origin { record: self.record, index }, recorded, observed: obs, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn sample(i: i64, value: SampleValue, observed: bool) -> Sample {
        Sample {
            origin: Origin { record: 1000 + i, index: (i % 3) as u32 },
            recorded: 1_700_000_000_000_000 + i * 60_000_000,
            observed: observed.then_some(1_700_000_000_000_000 + i * 60_000_000 - 5),
            value,
        }
    }

    #[test]
    fn round_trip_of_every_kind() {
        let rel = Attribute::relationship("urn:ngsi-ld:Site:1");
        let samples = vec![
            sample(0, SampleValue::Integer(42), true),
            sample(1, SampleValue::Float(36.6), true),
            sample(2, SampleValue::Instance(Box::new(Attribute::property(json!("on")))), false),
            sample(3, SampleValue::Instance(Box::new(rel)), true),
            sample(4, SampleValue::Deleted(Box::new(Attribute::new(AttrValue::Null))), false),
            sample(5, SampleValue::Integer(-7), false),
        ];
        let bytes = encode(&samples, Some("CEL"));
        let chunk = Chunk::open(&bytes).unwrap();
        assert_eq!(chunk.unit.as_deref(), Some("CEL"));
        assert_eq!(chunk.collect::<Vec<_>>(), samples);
    }

    #[test]
    fn regular_numeric_series_are_compact() {
        let samples: Vec<Sample> =
            (0..1440).map(|i| sample(i, SampleValue::Float(20.0 + (i as f64) / 100.0), true)).collect();
        let bytes = encode(&samples, None);
        assert!(bytes.len() < 1440 * 14, "{} bytes for 1440 samples", bytes.len());
        let ints: Vec<Sample> = (0..1440).map(|i| sample(i, SampleValue::Integer(i % 50), true)).collect();
        assert!(encode(&ints, None).len() < 1440 * 10);
    }

    #[test]
    fn corrupt_chunks_end_without_panic() {
        let bytes = encode(&[sample(0, SampleValue::Integer(1), true), sample(1, SampleValue::Float(2.0), true)], None);
        for cut in 0..bytes.len() {
            let _ = Chunk::open(&bytes[..cut]).map(|c| c.count());
        }
        assert!(Chunk::open(&[9, 0, 0]).is_none());
    }

    #[test]
    fn instance_ids_round_trip() {
        let o = Origin { record: 123_456, index: 7 };
        assert_eq!(Origin::parse_instance_id(&o.instance_id()), Some(o));
        assert_eq!(Origin::parse_instance_id("urn:ngsi-ld:Instance:zz-1"), None);
    }

    proptest! {
        #[test]
        fn numeric_round_trip(values in proptest::collection::vec((any::<i64>(), any::<bool>(), -1e12f64..1e12, any::<i32>()), 0..200)) {
            let samples: Vec<Sample> = values.iter().enumerate().map(|(i, (n, is_int, f, dt))| Sample {
                origin: Origin { record: *dt as i64, index: i as u32 },
                recorded: (*dt as i64) * 1000,
                observed: (i % 2 == 0).then_some(*n / 3),
                value: if *is_int { SampleValue::Integer(*n) } else { SampleValue::Float(*f) },
            }).collect();
            let bytes = encode(&samples, None);
            prop_assert_eq!(Chunk::open(&bytes).unwrap().collect::<Vec<_>>(), samples);
        }
    }
}
