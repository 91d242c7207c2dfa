//! Retrying blocking Kafka calls that fail for a moment: metadata, watermark and offset
//! requests right after a topic is created or while a partition's leader moves answer
//! `NotLeaderForPartition`, `LeaderNotAvailable` or `UnknownTopicOrPartition` until the
//! cluster settles. Those are retried with exponential backoff for a bounded time; any other
//! error is returned at once.

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tracing::info;

/// First pause between two attempts.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a call is retried before its last error is returned (a leader election on a
/// healthy cluster takes well under this).
pub const RETRY_FOR: Duration = Duration::from_secs(30);

/// Whether `err` is a transient state of the cluster (leader moving, topic not yet known to
/// every broker, request timed out) that a later attempt may not see.
pub fn is_transient(err: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    err.rdkafka_error_code().is_some_and(|code| {
        matches!(
            code,
            C::NotLeaderForPartition
                | C::LeaderNotAvailable
                | C::UnknownTopicOrPartition
                | C::UnknownLeaderEpoch
                | C::FencedLeaderEpoch
                | C::OffsetNotAvailable
                | C::RequestTimedOut
                | C::OperationTimedOut
                | C::BrokerNotAvailable
                | C::NetworkException
                | C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::CoordinatorLoadInProgress
                | C::CoordinatorNotAvailable
                | C::NotCoordinator
        )
    })
}

/// Calls `f` until it succeeds, fails with an error that is not [`is_transient`], or
/// [`RETRY_FOR`] has passed; `what` names the call in the log.
pub fn with_backoff<T>(
    what: &str,
    f: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    with_backoff_for(what, RETRY_FOR, f)
}

/// [`with_backoff`] with an explicit bound.
pub fn with_backoff_for<T>(
    what: &str,
    retry_for: Duration,
    mut f: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    let deadline = Instant::now() + retry_for;
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1u32;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if is_transient(&e) && Instant::now() + backoff < deadline => {
                info!(call = what, attempt, error = %e, backoff_ms = backoff.as_millis() as u64, "Transient Kafka error; retrying.");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_retried_until_success() {
        let mut calls = 0;
        let got = with_backoff_for("test", Duration::from_secs(5), || {
            calls += 1;
            if calls < 3 {
                Err(KafkaError::MetadataFetch(
                    RDKafkaErrorCode::NotLeaderForPartition,
                ))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(got.unwrap(), 3);
    }

    #[test]
    fn other_errors_are_returned_at_once() {
        let mut calls = 0;
        let got: Result<(), _> = with_backoff_for("test", Duration::from_secs(5), || {
            calls += 1;
            Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::TopicAuthorizationFailed,
            ))
        });
        assert!(got.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn retries_stop_at_the_bound() {
        let started = Instant::now();
        let got: Result<(), _> = with_backoff_for("test", Duration::from_millis(350), || {
            Err(KafkaError::OffsetFetch(
                RDKafkaErrorCode::LeaderNotAvailable,
            ))
        });
        assert!(matches!(
            got,
            Err(KafkaError::OffsetFetch(
                RDKafkaErrorCode::LeaderNotAvailable
            ))
        ));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
