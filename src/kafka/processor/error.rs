//! Errors that stop the processor, and whether a restart may help.

use rdkafka::error::KafkaError;

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
}

impl ProcessorError {
    /// Whether restarting the processor unchanged may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProcessorError::Kafka(_) => true,
            ProcessorError::Admin(e) => e.is_retryable(),
            ProcessorError::DeadLetterFlood { .. } | ProcessorError::Http(_) => false,
        }
    }
}
