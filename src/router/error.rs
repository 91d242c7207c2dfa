//! [`RouterError`]: why a decision table could not be started or waited for.

use std::time::Duration;

use rdkafka::error::KafkaError;

use super::TableState;

/// Why a [`DecisionTable`](super::DecisionTable) could not be started or waited for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    /// A configuration field is out of range. Not retryable.
    #[error("invalid router config: `{field}` {message}")]
    Config {
        /// The field, as spelled in the file.
        field: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// librdkafka refused the client configuration. Not retryable.
    #[error("creating the decisions consumer: {0}")]
    Client(#[source] KafkaError),
    /// The follower thread could not be spawned. Retryable.
    #[error("spawning the router threads: {0}")]
    Spawn(#[source] std::io::Error),
    /// The table did not become ready in time. Retryable: the follower keeps trying.
    #[error("decision table not ready after {waited:?} (state {state})")]
    NotReady {
        /// State when the wait gave up.
        state: TableState,
        /// How long was waited.
        waited: Duration,
    },
    /// The table was shut down. Not retryable.
    #[error("decision table shut down")]
    ShutDown,
}

impl RouterError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RouterError::Spawn(_) | RouterError::NotReady { .. })
    }
}
