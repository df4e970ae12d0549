//! A node among several on one PostgreSQL database: what the other nodes did reaches this
//! node's services (see `hanbat_store_postgres::cluster` for the mechanism).
//!
//! - changes they committed → the broker's listeners of every change (subscriptions this node
//!   delivers, the dashboard's live feed), never those of this node's own changes (device
//!   commands are sent by the node that took the write);
//! - documents they wrote or deleted → the cache that holds that kind: subscriptions,
//!   registrations, hosted @contexts, IoT provisioning (entity maps and snapshots are read
//!   from the store at every use);
//! - subscription leases taken over → the notifier, which replays the changes it may have missed.

use hanbat_broker::Broker;
use hanbat_context::Contexts;
use hanbat_csource::CSources;
use hanbat_ingest::Ingest;
use hanbat_notify::{Notifier, Ownership};
use hanbat_store::DocKind;
use hanbat_store_postgres::cluster::{Event, Membership};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The services a node keeps in memory.
pub struct Services {
    pub broker: Arc<Broker>,
    pub contexts: Arc<Contexts>,
    pub notifier: Arc<Notifier>,
    pub csources: Arc<CSources>,
    pub ingest: Arc<Ingest>,
}

/// Subscriptions are delivered by the node that holds their lease.
pub struct Leases(pub Arc<Membership>);

impl Ownership for Leases {
    fn delivers(&self, tenant: &str, subscription: &str) -> bool {
        self.0.delivers(tenant, subscription)
    }
}

/// Applies the cluster's events to this node's services, in the order they come.
pub fn follow(mut events: mpsc::Receiver<Event>, services: Services) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::Changes(changes) => services.broker.publish_from_peer(changes),
                Event::Doc { kind, tenant, id } => {
                    if let Err(e) = refresh(&services, kind, &tenant, &id).await {
                        tracing::warn!(kind = kind.as_str(), %tenant, %id, detail = %e.detail, "reloading a document another node changed failed");
                    }
                }
                Event::Claimed { subscriptions, replay } => services.notifier.take_over(&subscriptions, replay).await,
            }
        }
    })
}

async fn refresh(services: &Services, kind: DocKind, tenant: &str, id: &str) -> hanbat_model::Result<()> {
    match kind {
        DocKind::Subscription | DocKind::SubscriptionStatus => services.notifier.refresh(kind, tenant, id).await,
        DocKind::Registration | DocKind::RegistrationSubscription => services.csources.refresh(kind, tenant, id).await,
        DocKind::HostedContext => services.contexts.refresh_hosted(tenant, id).await,
        DocKind::IotService | DocKind::IotDevice => services.ingest.refresh(kind, tenant, id).await,
        DocKind::EntityMap | DocKind::Snapshot => Ok(()),
    }
}
