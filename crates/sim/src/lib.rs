//! Hanbat's Daejeon: the 4IR testbed city as linked NGSI-LD entities, and a simulator that writes
//! its sensors' data to a Hanbat broker through the public NGSI-LD API.
//!
//! - [`city_model`]: the programme (strategies, tasks, industries, sites, partners) and the places
//!   (city, districts, testbed neighbourhoods with their real boundaries),
//! - [`Simulation`]: the four simulated sites, a deterministic function of a seed and a start
//!   instant that yields NGSI-LD upserts tick by tick,
//! - [`run`] / [`run_with`]: drives a simulation against a [`Sink`] (the broker's batch upsert
//!   over HTTP, [`HttpSink`]), paced in real or accelerated time, with history backfill.
//!
//! Every name in the payloads is a term of [`CITY_CONTEXT`], sent by reference to
//! [`CITY_CONTEXT_URL`]; `docs/city-model.md` describes each entity type.

mod alert;
mod anomaly;
mod city;
mod devices;
mod geo;
mod ngsi;
mod run;
mod signal;
mod simulation;
mod sink;
mod sites;
mod weather;

pub use anomaly::{AnomalyKind, AnomalyLabel};
pub use city::city_model;
pub use run::{SimArgs, SimReport, Via, run, run_with};
pub use simulation::{SimConfig, Simulation, Step, TICK};
pub use sink::{Failure, HttpSink, MqttSink, Sink, WriteOutcome};
pub use sites::Scenario;

/// Where the city @context is published. The broker preloads [`CITY_CONTEXT`] under this URL, so
/// it resolves offline.
pub const CITY_CONTEXT_URL: &str =
    "https://raw.githubusercontent.com/hanbat-city/hanbat/main/assets/context/daejeon.jsonld";

/// The city @context document: every short name the city model and the simulator use.
pub const CITY_CONTEXT: &str = include_str!("../../../assets/context/daejeon.jsonld");

/// The `Link` header value that points a request at [`CITY_CONTEXT_URL`].
pub fn context_link() -> String {
    format!(r#"<{CITY_CONTEXT_URL}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json""#)
}
