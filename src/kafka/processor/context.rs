//! The consumer's context: records rebalances for the loop and exports lag from statistics.

use std::sync::{Arc, Mutex};

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};
use tracing::warn;

use crate::observe;

/// Rebalance notifications, handed from librdkafka's callback to the loop.
#[derive(Default)]
pub(super) struct RebalanceLog {
    pub(super) assigned: Vec<(String, i32)>,
    pub(super) revoked: Vec<(String, i32)>,
}

/// Consumer context: records rebalances and exports lag from statistics.
pub(super) struct Ctx {
    pub(super) log: Arc<Mutex<RebalanceLog>>,
    pub(super) events_topic: String,
}

impl ClientContext for Ctx {
    fn stats(&self, stats: Statistics) {
        if let Some(t) = stats.topics.get(&self.events_topic) {
            for (p, s) in &t.partitions {
                if *p >= 0 && s.consumer_lag >= 0 {
                    metrics::gauge!(observe::CONSUMER_LAG, "partition" => p.to_string())
                        .set(s.consumer_lag as f64);
                }
            }
        }
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
            self.log
                .lock()
                .expect("rebalance log")
                .revoked
                .extend(tpl_entries(tpl));
        }
    }
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => self
                .log
                .lock()
                .expect("rebalance log")
                .assigned
                .extend(tpl_entries(tpl)),
            Rebalance::Error(e) => warn!(error = %e, "Rebalance error."),
            Rebalance::Revoke(_) => {}
        }
    }
}
