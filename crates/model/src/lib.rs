//! The NGSI-LD information model of Hanbat.
//!
//! - [`entity`]: entities and attributes as stored and compared (expanded names),
//! - [`jsonld`]: @context term maps, the built-in core context, expansion and compaction,
//! - [`parse`]: request payloads → entities, with validation,
//! - [`render`]: entities → response payloads (normalized, concise, keyValues, GeoJSON),
//! - [`error`]: ProblemDetails errors, [`time`]: NGSI-LD date-times.
//!
//! This crate is synchronous and does no I/O: fetching remote @contexts lives in
//! `hanbat-context`, persistence in the store crates.

pub mod entity;
pub mod error;
pub mod jsonld;
pub mod parse;
pub mod render;
pub mod time;

pub use entity::{AttrValue, Attribute, Attrs, Entity};
pub use error::{ErrorKind, NgsiError, Result};
pub use jsonld::Context;
pub use time::Timestamp;
