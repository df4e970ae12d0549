//! NGSI-LD history (the temporal API of ETSI GS CIM 009 §5.6.11–5.7.4, §6.18–6.22).
//!
//! - [`query`]: `timerel`/`timeAt`/`endTimeAt`, `timeproperty`, `lastN`, `aggrMethods`,
//!   `aggrPeriodDuration` (ISO 8601 durations);
//! - [`codec`]: samples of one series and their compressed chunk form;
//! - [`aggregate`]: the aggregation methods over periods.
//!
//! Stores keep history as chunks of this codec; this crate does no I/O.

pub mod aggregate;
pub mod codec;
pub mod query;

pub use codec::{Origin, Sample, SampleValue};
pub use query::{AggrMethod, Aggregation, IsoDuration, TimeFilter, TimeProperty, TimeRel};
