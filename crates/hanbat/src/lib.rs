//! The `hanbat` command's building blocks, also used by the integration tests: starting a
//! broker in-process on a real socket is the same code path as `hanbat serve`.

pub mod cluster;
pub mod demo;
pub mod serve;
