//! The MQTT side of the agent: measures in, commands out.
//!
//! Two tasks share one connection. The *poll* task drives the connection (rumqttc reconnects on
//! the next poll after a failure), subscribes to `{prefix}/+/+/attrs` at QoS 1 on every
//! connection (a restarted Mosquitto may have forgotten the subscription) and queues each
//! publish. The *writer* task takes everything queued and writes it with one [`Ingest::store`]
//! (one `Broker::write` per tenant, one durable transaction). While a batch is being written the
//! next one queues up, so the batch grows with the load.
//!
//! Publishes are acknowledged on receipt, not after the commit. Acknowledging after the commit
//! would hold Mosquitto to its in-flight window (20 messages per client by default) per
//! transaction; a burst then overflows its per-client queue (`max_queued_messages`, 1000) and
//! Mosquitto drops measures in normal operation, which the tests saw. Acknowledging on receipt
//! moves the buffer into Hanbat ([`QUEUE`]); what it risks is the queue's content if the process
//! dies, as with the FIWARE IoT Agent, which acknowledges before forwarding.

use crate::measure::IDLE_COMMAND;
use crate::{Ingest, Stats};
use hanbat_broker::Broker;
use hanbat_model::AttrValue;
use hanbat_store::{AttrChangeKind, Change};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// Where measures come from.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// `mqtt://host[:port]` (1883 by default).
    pub url: String,
    /// Topics are `{topic_prefix}/{apikey}/{device_id}/attrs` (measures) and `…/cmd` (commands).
    pub topic_prefix: String,
    /// Nodes of one cluster subscribe to measures as one shared-subscription group
    /// (`$share/{group}/…`): the MQTT broker hands each measure to one of them, not to all.
    pub shared_group: Option<String>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self { url: "mqtt://127.0.0.1:1883".into(), topic_prefix: "hanbat".into(), shared_group: None }
    }
}

/// Measures written per `Broker::write` at most (the store's group commit takes up to 20,000 ops).
const MAX_BATCH: usize = 1000;
/// Publishes queued between the poll and the writer task (a few MB of small JSON payloads).
/// When full, the poll task stops reading the socket and TCP flow control holds Mosquitto back.
const QUEUE: usize = 20_000;
/// Requests (subscriptions, commands) queued to the connection.
const REQUESTS: usize = 1024;
/// Commands waiting to be published; a change listener must not block, so more are dropped.
const COMMAND_QUEUE: usize = 1024;
const RETRY: Duration = Duration::from_secs(1);

/// Splits `{prefix}/{apikey}/{device_id}/attrs`.
fn parse_topic<'a>(prefix: &str, topic: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(apikey), Some(device), Some("attrs"), None) if !apikey.is_empty() && !device.is_empty() => {
            Some((apikey, device))
        }
        _ => None,
    }
}

fn options(config: &MqttConfig) -> Result<MqttOptions, String> {
    let url = url::Url::parse(&config.url).map_err(|e| format!("'{}' is not an MQTT URL: {e}", config.url))?;
    if !matches!(url.scheme(), "mqtt" | "tcp") {
        return Err(format!("the MQTT URL must be mqtt://host:port, not '{}'", config.url));
    }
    let host = url.host_str().ok_or_else(|| format!("the MQTT URL '{}' has no host", config.url))?;
    let prefix = &config.topic_prefix;
    if prefix.is_empty() || prefix.ends_with('/') || prefix.contains(['+', '#']) {
        return Err(format!("'{prefix}' is not a topic prefix: non-empty, no wildcard, no trailing '/'"));
    }
    // A fresh id per process with a clean session: Mosquitto keeps no session for brokers
    // that are gone, and nothing is redelivered to a process that did not receive it.
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut options = MqttOptions::new(format!("hanbat-ingest-{}", &id[..12]), host, url.port().unwrap_or(1883));
    options.set_keep_alive(Duration::from_secs(30)).set_clean_session(true).set_max_packet_size(1 << 20, 1 << 20);
    Ok(options)
}

/// Connects to the MQTT broker (in the background, retrying) and starts ingesting measures and
/// publishing commands. Errors: the configuration is invalid.
pub fn start(ingest: &Arc<Ingest>, broker: &Broker, config: &MqttConfig) -> Result<(), String> {
    let options = options(config)?;
    *ingest.topic_prefix.write() = Some(config.topic_prefix.clone());
    let (client, mut events) = AsyncClient::new(options, REQUESTS);
    let (queue, received) = mpsc::channel::<Publish>(QUEUE);
    let filter = match &config.shared_group {
        Some(group) => format!("$share/{group}/{}/+/+/attrs", config.topic_prefix),
        None => format!("{}/+/+/attrs", config.topic_prefix),
    };
    let poll_ingest = ingest.clone();
    let poll_client = client.clone();
    let url = config.url.clone();
    tokio::spawn(async move {
        let stats = &poll_ingest.stats;
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    stats.connected.store(true, Ordering::Relaxed);
                    Stats::count(&stats.connections, 1);
                    tracing::info!(%url, %filter, "ingesting measures");
                    if let Err(e) = poll_client.try_subscribe(filter.as_str(), QoS::AtLeastOnce) {
                        tracing::error!(error = %e, "cannot subscribe to measures");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    Stats::count(&stats.received, 1);
                    if queue.send(p).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if stats.connected.swap(false, Ordering::Relaxed) {
                        tracing::warn!(%url, error = %e, "MQTT connection lost; reconnecting");
                    } else {
                        tracing::debug!(%url, error = %e, "MQTT broker unreachable; retrying");
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    });
    tokio::spawn(write_measures(ingest.clone(), received, config.topic_prefix.clone()));
    let (commands, pending) = mpsc::channel(COMMAND_QUEUE);
    broker.on_local_change(command_listener(Arc::downgrade(ingest), commands, config.topic_prefix.clone()));
    tokio::spawn(publish_commands(ingest.clone(), client, pending));
    Ok(())
}

async fn write_measures(ingest: Arc<Ingest>, mut received: mpsc::Receiver<Publish>, prefix: String) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while received.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let measures: Vec<(&str, &str, &[u8])> = batch
            .iter()
            .filter_map(|p| {
                // The subscription's filter has exactly this form; anything else is a broker bug.
                let parsed = parse_topic(&prefix, &p.topic);
                if parsed.is_none() {
                    tracing::warn!(topic = %p.topic, "publish outside the measure topics ignored");
                }
                parsed.map(|(apikey, device)| (apikey, device, &p.payload[..]))
            })
            .collect();
        ingest.store(&measures).await;
        batch.clear();
    }
}

/// A command to publish: topic and payload.
type Command = (String, Vec<u8>);

/// Publishes `{"<command>": value}` to `{prefix}/{apikey}/{device}/cmd` when a command attribute
/// of a provisioned device is written with a value other than the idle one.
fn command_listener(
    ingest: Weak<Ingest>,
    commands: mpsc::Sender<Command>,
    prefix: String,
) -> hanbat_broker::ChangeListener {
    Box::new(move |change: &Arc<Change>| {
        let Some(ingest) = ingest.upgrade() else { return };
        let Some(target) = ingest.target_of_entity(&change.tenant, &change.id) else { return };
        for attr in change.attrs.iter().filter(|a| a.kind != AttrChangeKind::Deleted) {
            let Some((_, name)) = target.commands.iter().find(|(iri, _)| *iri == attr.name) else { continue };
            let Some(instance) = change.entity.instance(&attr.name, attr.dataset_id.as_deref()) else { continue };
            let AttrValue::Property(value) = &instance.value else { continue };
            if value.as_str() == Some(IDLE_COMMAND) {
                continue;
            }
            let payload = serde_json::json!({ name: value }).to_string().into_bytes();
            let topic = format!("{prefix}/{}/{}/cmd", target.apikey, target.device_id);
            if commands.try_send((topic, payload)).is_err() {
                tracing::warn!(device = %target.device_id, command = %name, "command queue full; command dropped");
            }
        }
    })
}

async fn publish_commands(ingest: Arc<Ingest>, client: AsyncClient, mut pending: mpsc::Receiver<Command>) {
    while let Some((topic, payload)) = pending.recv().await {
        match client.publish(topic.as_str(), QoS::AtLeastOnce, false, payload).await {
            Ok(()) => Stats::count(&ingest.stats.commands, 1),
            Err(e) => tracing::warn!(%topic, error = %e, "cannot publish a command"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_split_under_their_prefix() {
        assert_eq!(parse_topic("hanbat", "hanbat/k1/d1/attrs"), Some(("k1", "d1")));
        assert_eq!(parse_topic("t/x", "t/x/k1/d1/attrs"), Some(("k1", "d1")));
        assert_eq!(parse_topic("hanbat", "hanbat/k1/d1/cmd"), None);
        assert_eq!(parse_topic("hanbat", "hanbatx/k1/d1/attrs"), None);
        assert_eq!(parse_topic("hanbat", "hanbat/k1/d1/attrs/t"), None);
    }

    #[test]
    fn invalid_configurations_are_refused() {
        let bad = |url: &str, prefix: &str| {
            options(&MqttConfig { url: url.into(), topic_prefix: prefix.into(), shared_group: None })
        };
        assert!(bad("http://127.0.0.1:1883", "hanbat").is_err());
        assert!(bad("mqtt://127.0.0.1:1883", "a/#").is_err());
        assert!(bad("mqtt://127.0.0.1", "hanbat").is_ok());
    }
}
