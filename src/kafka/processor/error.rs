//! Errors that stop the processor, and whether a restart may help.

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Errors that stop the processor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessorError {
    /// A Kafka call failed (connect, transaction, commit). Retryable by restarting.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// Topic setup failed (missing permission, not co-partitioned...).
    #[error(transparent)]
    Admin(#[from] crate::kafka::admin::AdminError),
    /// Too many dead letters: most likely a wrong topic or encoding. Not retryable as is.
    #[error("dead-letter ratio {ratio:.2} over the last {window} records exceeds the limit {limit}; stopping (wrong topic or encoding?)")]
    DeadLetterFlood {
        /// Observed ratio.
        ratio: f64,
        /// Records it was computed over.
        window: u64,
        /// Configured limit.
        limit: f64,
    },
    /// The HTTP listener could not bind.
    #[error("http listener: {0}")]
    Http(#[from] std::io::Error),
    /// A webhook could not be set up (unset `secret_env`, bad URL). Not retryable.
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
    /// Another process took over this instance's identity: a processor started with the same
    /// transactional id or static group member id. Not retryable: restarting would fence the
    /// other one in turn, and the two would take turns forever.
    #[error("fenced: another processor uses the same {kind} `{id}` ({code}); this instance stops. Give each instance a distinct --instance-id (kafka.instance_id); if this was a restart of the same instance, the newer one runs on")]
    Fenced {
        /// `transactional.id` or `group.instance.id`.
        kind: &'static str,
        /// The id both instances use (`{group_id}-{instance_id}`).
        id: String,
        /// The broker's answer.
        code: RDKafkaErrorCode,
    },
}

impl ProcessorError {
    /// Whether restarting the processor unchanged may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProcessorError::Kafka(_) => true,
            ProcessorError::Admin(e) => e.is_retryable(),
            ProcessorError::DeadLetterFlood { .. }
            | ProcessorError::Http(_)
            | ProcessorError::Notify(_)
            | ProcessorError::Fenced { .. } => false,
        }
    }

    /// Turns a Kafka error that means "fenced by another instance" into
    /// [`ProcessorError::Fenced`] naming the conflicting id; `id` is the instance's
    /// transactional id, which is also its `group.instance.id`.
    pub fn identify_fencing(self, id: &str) -> Self {
        let ProcessorError::Kafka(e) = &self else {
            return self;
        };
        let Some(code) = e.rdkafka_error_code() else {
            return self;
        };
        let kind = match code {
            RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::Fenced => "transactional.id",
            RDKafkaErrorCode::FencedInstanceId => "group.instance.id",
            _ => return self,
        };
        ProcessorError::Fenced {
            kind,
            id: id.to_owned(),
            code,
        }
    }
}

/// The error behind a fatal consumer event: librdkafka reports `Fatal` on the event and keeps
/// the cause (e.g. `FencedInstanceId`) in the client.
pub(super) fn fatal_consumer_error<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    code: RDKafkaErrorCode,
) -> ProcessorError {
    let code = consumer
        .client()
        .fatal_error()
        .map_or(code, |(cause, _)| cause);
    ProcessorError::Kafka(KafkaError::MessageConsumptionFatal(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fencing_is_named_and_not_retryable() {
        for (code, kind) in [
            (RDKafkaErrorCode::ProducerFenced, "transactional.id"),
            (RDKafkaErrorCode::FencedInstanceId, "group.instance.id"),
        ] {
            let e = ProcessorError::Kafka(KafkaError::MessageConsumptionFatal(code))
                .identify_fencing("rollout-breaker-host-1");
            assert!(!e.is_retryable());
            let text = e.to_string();
            assert!(text.contains(kind), "{text}");
            assert!(text.contains("`rollout-breaker-host-1`"), "{text}");
            assert!(text.contains("--instance-id"), "{text}");
        }
        let other = ProcessorError::Kafka(KafkaError::MessageConsumption(
            RDKafkaErrorCode::BrokerTransportFailure,
        ))
        .identify_fencing("x");
        assert!(other.is_retryable());
    }
}
