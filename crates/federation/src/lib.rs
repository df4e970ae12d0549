//! Distributed operations (ETSI GS CIM 009 V1.8.1 §4.3.6): a broker that holds registrations
//! of context sources forwards the parts of entity requests those sources hold, and combines
//! their answers with its own.
//!
//! - [`Plan`] decides, from the tenant's registrations, which sources a request concerns and
//!   which attributes each of them provides (inclusive and auxiliary sources add to the
//!   broker's data; exclusive and redirect ones hold theirs in its place).
//! - [`Forwarder`] sends the forwarded requests, all at once, with `Via` for loop detection and
//!   the registration's `contextSourceInfo` as headers, and reads the replies with a size cap.
//!
//! The HTTP layer (`hanbat-api`) builds each source's request from the client's and merges the
//! replies: a read never fails because of a source (its failure becomes an `NGSILD-Warning`),
//! a write answers 207 when some of its parts failed.

mod forward;
mod operation;
mod plan;

pub use forward::{Failure, Forwarder, Inbound, ReadReply, Reply, Request, problem_for};
pub use operation::Operation;
pub use plan::{Attrs, Leg, Plan, Target};
