//! librdkafka client settings shared by the processor's consumers and producers.

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
