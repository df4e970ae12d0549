//! Hanbat's exhibition-hall dashboard, served by the broker itself on its own port:
//!
//! - `/` and the built files of `web/` (embedded at compile time, see `build.rs`);
//! - `GET /hanbat/v1/live[?type=A,B]`: the live feed, server-sent events fed by the broker's
//!   change bus ([`live`]);
//! - `GET /hanbat/v1/live/stats`: clients, events delivered and dropped.
//!
//! Everything else the dashboard shows comes from the public NGSI-LD API.

mod assets;
pub mod live;

use axum::Router;
use hanbat_broker::Broker;
use std::sync::Arc;

pub use live::{LiveConfig, LiveHub};

/// The dashboard and its live feed, with the default feed settings.
pub fn router(broker: Arc<Broker>) -> Router {
    router_with(broker, LiveConfig::default())
}

/// [`router`] with explicit live-feed settings (buffer sizes; tests use small ones).
pub fn router_with(broker: Arc<Broker>, config: LiveConfig) -> Router {
    let hub = LiveHub::start(&broker, config);
    assets::router().merge(live::router(hub))
}
