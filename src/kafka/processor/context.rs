//! The clients' contexts: rebalance notifications for the loop, lag from statistics, and
//! whether the cluster can be reached (librdkafka's error callback and broker states).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};
use tracing::warn;

use crate::observe::{self, BrokerConnected, BrokerUnreachable, Health};

/// Rebalance notifications, handed from librdkafka's callback to the loop.
#[derive(Default)]
pub(super) struct RebalanceLog {
    pub(super) assigned: Vec<(String, i32)>,
    pub(super) revoked: Vec<(String, i32)>,
}

/// Whether a transaction's commit is running on its own thread (see
/// [`super::transaction`]). A revocation waits for it: partitions are never revoked while a
/// transaction of theirs is open.
#[derive(Default)]
pub(super) struct CommitGate {
    busy: Mutex<bool>,
    done: Condvar,
}

impl CommitGate {
    /// A commit starts.
    pub(super) fn enter(&self) {
        *self.busy.lock().expect("commit gate") = true;
    }

    /// The commit has ended (committed or failed).
    pub(super) fn leave(&self) {
        *self.busy.lock().expect("commit gate") = false;
        self.done.notify_all();
    }

    /// Waits until no commit runs, at most `limit` (a commit is bounded by the transaction
    /// timeout; a failed one is aborted by the loop).
    pub(super) fn wait(&self, limit: Duration) {
        let busy = self.busy.lock().expect("commit gate");
        let _ = self
            .done
            .wait_timeout_while(busy, limit, |busy| *busy)
            .expect("commit gate");
    }
}

/// Reports the cluster connection of one client to the log, `/healthz` and the
/// `rollout_breaker_broker_*` metrics.
#[derive(Clone)]
pub(crate) struct BrokerWatch {
    pub(crate) health: Arc<Health>,
    pub(crate) bootstrap: String,
}

impl BrokerWatch {
    fn error(&self, error: &KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        // Fatal errors (fencing) are returned by the calls they break; the rest here is
        // about reaching the cluster.
        if matches!(code, Some(RDKafkaErrorCode::Fatal)) {
            warn!(error = %error, reason, "Fatal Kafka client error.");
            return;
        }
        BrokerUnreachable {
            bootstrap: &self.bootstrap,
            error: reason,
            all_down: matches!(code, Some(RDKafkaErrorCode::AllBrokersDown)),
        }
        .emit(&self.health);
    }

    fn stats(&self, stats: &Statistics) {
        if stats.brokers.values().any(|b| b.state == "UP") {
            BrokerConnected {
                bootstrap: &self.bootstrap,
            }
            .emit(&self.health);
        }
    }
}

/// Context of the clients that only need the connection reported (producer, admin).
pub(crate) struct WatchedContext(pub(crate) BrokerWatch);

impl ClientContext for WatchedContext {
    fn stats(&self, stats: Statistics) {
        self.0.stats(&stats);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.error(&error, reason);
    }
}

impl ProducerContext for WatchedContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// Consumer context: records rebalances, exports lag from statistics, reports the connection.
pub(super) struct Ctx {
    pub(super) log: Arc<Mutex<RebalanceLog>>,
    pub(super) events_topic: String,
    pub(super) broker: BrokerWatch,
    /// The loop's commit in flight, which a revocation waits for.
    pub(super) commits: Arc<CommitGate>,
    /// Longest a revocation waits for it (the transaction timeout).
    pub(super) commit_limit: Duration,
}

/// Lag of one partition from librdkafka's statistics: the end a `read_committed` reader can
/// reach (last stable offset, else high watermark) minus the position of the application.
///
/// librdkafka's own `consumer_lag` is computed from the offsets *this consumer* committed;
/// the processor commits through its producer's transactions, so that stays -1. The
/// application's position (`app_offset`: the offset after the last record handed to the
/// loop) is known once a record was polled; before that the committed offset or the fetch
/// position stands in.
pub(super) fn partition_lag(p: &rdkafka::statistics::Partition) -> Option<i64> {
    let end = if p.ls_offset >= 0 {
        p.ls_offset
    } else {
        p.hi_offset
    };
    let pos = [p.app_offset, p.committed_offset, p.next_offset]
        .into_iter()
        .find(|o| *o >= 0)?;
    (end >= 0).then(|| (end - pos).max(0))
}

impl ClientContext for Ctx {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", fac, "{message}")
            }
            L::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            L::Notice | L::Info => tracing::info!(target: "librdkafka", fac, "{message}"),
            L::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }
    fn stats(&self, stats: Statistics) {
        self.broker.stats(&stats);
        if let Some(t) = stats.topics.get(&self.events_topic) {
            for (p, s) in &t.partitions {
                // -1 is librdkafka's internal "unassigned" partition; `desired` is false for
                // partitions this consumer no longer owns.
                if *p < 0 || !s.desired {
                    continue;
                }
                if let Some(lag) = partition_lag(s) {
                    metrics::gauge!(observe::CONSUMER_LAG, "partition" => p.to_string())
                        .set(lag as f64);
                }
            }
        }
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.broker.error(&error, reason);
    }
}

fn tpl_entries(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // The previous batch's commit may still run while the loop polls the next one.
            self.commits.wait(self.commit_limit);
            self.log
                .lock()
                .expect("rebalance log")
                .revoked
                .extend(tpl_entries(tpl));
        }
    }
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let entries = tpl_entries(tpl);
                // Not ready until the loop has restored these (see `handle_rebalance`).
                let events = entries
                    .iter()
                    .filter(|(t, _)| *t == self.events_topic)
                    .count();
                self.broker.health.set_partitions(events, 0);
                self.broker.health.set_assignment_received();
                self.log
                    .lock()
                    .expect("rebalance log")
                    .assigned
                    .extend(entries);
            }
            Rebalance::Error(e) => warn!(error = %e, "Rebalance error."),
            Rebalance::Revoke(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(json: &str) -> rdkafka::statistics::Partition {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn lag_uses_the_application_position_when_commits_go_through_transactions() {
        let p = partition(LAG_JSON);
        assert_eq!(partition_lag(&p), Some(40));
    }

    const LAG_JSON: &str = r#"{"partition":0,"broker":1,"leader":1,"desired":true,"unknown":false,
        "msgq_cnt":0,"msgq_bytes":0,"xmit_msgq_cnt":0,"xmit_msgq_bytes":0,"fetchq_cnt":0,
        "fetchq_size":0,"fetch_state":"active","query_offset":-1001,"next_offset":120,
        "app_offset":60,"stored_offset":-1001,"commited_offset":-1001,"committed_offset":-1001,
        "eof_offset":-1001,"lo_offset":0,"hi_offset":100,"ls_offset":100,"consumer_lag":-1,
        "consumer_lag_stored":-1,"txmsgs":0,"txbytes":0,"rxmsgs":60,"rxbytes":0,"msgs":0,
        "rx_ver_drops":0,"msgs_inflight":0,"next_ack_seq":0,"next_err_seq":0,"acked_msgid":0}"#;
}
