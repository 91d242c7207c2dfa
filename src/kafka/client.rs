//! librdkafka client settings shared by the processor's consumers and producers.

use std::time::Duration;

use rdkafka::client::{Client, ClientContext};
use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

/// Base settings: bootstrap servers, then every pass-through option from the config (so a
/// deployment can add SASL/SSL or tune anything), then `overrides`, which the processor needs
/// for correctness and which therefore win.
pub fn client_config(kafka: &KafkaConfig, overrides: &[(&str, &str)]) -> ClientConfig {
    client_config_with_defaults(kafka, &[], overrides)
}

/// librdkafka (2.10 and later) drops its bootstrap connection once the first metadata names
/// the brokers, and connects to a named broker no sooner than `reconnect.backoff.ms / 2`
/// (at least 11 ms) after its last attempt. With the default 100 ms every new client waited
/// ~50 ms for its first answer (55 ms against 15 ms measured against the local broker), and a
/// start runs several clients one after another. 20 ms keeps the exponential backoff towards
/// `reconnect.backoff.max.ms` for a broker that stays down. Every client takes it unless
/// `kafka.options` sets it.
pub const RECONNECT_BACKOFF: (&str, &str) = ("reconnect.backoff.ms", "20");

/// Like [`client_config`], with `defaults` that the config's options may override.
pub fn client_config_with_defaults(
    kafka: &KafkaConfig,
    defaults: &[(&str, &str)],
    overrides: &[(&str, &str)],
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.bootstrap_servers);
    c.set(RECONNECT_BACKOFF.0, RECONNECT_BACKOFF.1);
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in &kafka.options {
        c.set(k, v);
    }
    for (k, v) in overrides {
        c.set(*k, *v);
    }
    c
}

/// librdkafka postpones a partition's next fetch by `fetch.queue.backoff.ms` (default 1 s)
/// once its local queue is over the prefetch thresholds; a consumer working through a backlog
/// empties that queue in milliseconds and then sat idle for the rest of the second (measured:
/// gaps of 0.5–0.7 s every ~20 batches in `cargo bench --bench processor throughput`).
/// Consumers that read backlogs (the processor, restores, audits) fetch again after 10 ms.
pub const FETCH_QUEUE_BACKOFF: (&str, &str) = ("fetch.queue.backoff.ms", "10");

/// Consumer settings for reading a topic as committed data without joining a group
/// (restores and followers assign partitions themselves).
pub fn reader_config(kafka: &KafkaConfig, group_id: &str) -> ClientConfig {
    client_config_with_defaults(
        kafka,
        &[FETCH_QUEUE_BACKOFF],
        &[
            ("group.id", group_id),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("isolation.level", "read_committed"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "false"),
        ],
    )
}

/// Connects a new client to the broker that leads `topic`'s partitions (any broker when
/// `None`) before its first real request, so that request does not wait out librdkafka's
/// start-up steps: the first metadata request goes through the bootstrap connection, which
/// librdkafka drops as soon as the answer names the brokers; the second waits for a connection
/// to a named broker. With one request (or none), a new client's first coordinator lookup or
/// watermark query waited 500–700 ms in about one start in ten, in librdkafka's fixed retry
/// steps. A failure is left to the request that follows, which reports it.
pub fn connect<C: ClientContext>(client: &Client<C>, topic: Option<&str>, timeout: Duration) {
    for _ in 0..2 {
        let _ = client.fetch_metadata(topic, timeout);
    }
}

/// A client that is destroyed on a thread of its own when dropped, off the caller's path:
/// librdkafka's destroy waits for the client's threads (an admin client's for its 100-ms
/// poll), which cost a restore about 100 ms per partition and the start as much again.
pub struct DropInBackground<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> DropInBackground<T> {
    /// Wraps `client`.
    pub fn new(client: T) -> Self {
        Self(Some(client))
    }
}

impl<T: Send + 'static> std::ops::Deref for DropInBackground<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_ref().expect("present until dropped")
    }
}

impl<T: Send + 'static> Drop for DropInBackground<T> {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            // Without a thread (none left to the process), it is destroyed here.
            if let Err(e) = std::thread::Builder::new()
                .name("rb-client-drop".into())
                .spawn(move || drop(client))
            {
                tracing::debug!(error = %e, "No thread to destroy a client on; destroyed inline.");
            }
        }
    }
}
