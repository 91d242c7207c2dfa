//! Rebalances: park revoked partitions, restore assigned ones (in parallel) before any of
//! their records is processed, reuse parked state when the group's offsets are still ours.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, TopicPartitionList};
use tracing::info;

use super::context::Ctx;
use super::error::ProcessorError;
use super::worker::{Input, PartitionState, Processor};
use crate::config::Config;
use crate::engine::{Engine, EngineOptions};
use crate::kafka::restore::restore_partition;
use crate::kafka::retry::with_backoff;
use crate::observe;

impl Processor {
    /// Applies pending assignments (restoring) and revocations (parking, dropping buffered
    /// records of revoked partitions).
    pub(super) fn handle_rebalance(
        &mut self,
        batch: &mut Vec<Input<'_>>,
    ) -> Result<(), ProcessorError> {
        let (assigned, revoked) = {
            let mut log = self.log.lock().expect("rebalance log");
            (
                std::mem::take(&mut log.assigned),
                std::mem::take(&mut log.revoked),
            )
        };
        if assigned.is_empty() && revoked.is_empty() {
            return Ok(());
        }
        // The previous batch's commit has ended (a revocation waits for it in the callback):
        // book it before parking, reusing or restoring, which compare committed offsets.
        self.finish_commit()?;
        for (topic, p) in &revoked {
            if *topic == self.config.topics.events {
                if let Some(state) = self.partitions.remove(p) {
                    self.parked.insert(*p, state);
                }
                batch.retain(|i| i.msg.partition() != *p);
                info!(partition = p, "Partition revoked; state parked.");
            }
        }
        let events_topic = self.config.topics.events.clone();
        let mut to_restore = Vec::new();
        for (topic, p) in assigned {
            if topic != events_topic || self.partitions.contains_key(&p) {
                continue;
            }
            let committed = committed(&self.consumer, &self.config, p)?;
            match self.parked.remove(&p) {
                Some(state) if state.committed == committed => {
                    info!(
                        partition = p,
                        "Partition re-assigned unchanged; parked state reused."
                    );
                    self.partitions.insert(p, state);
                }
                _ => to_restore.push((p, committed)),
            }
        }
        // Not ready until every assigned partition is restored.
        self.health.set_partitions(
            self.partitions.len() + to_restore.len(),
            self.partitions.len(),
        );
        // Partitions restore in parallel, each with consumers of its own; nothing of theirs is
        // processed before every one has finished.
        let config = &self.config;
        let health = &self.health;
        let admission = &self.admission;
        let restore_started = std::time::Instant::now();
        let restored: Vec<Result<(i32, PartitionState), KafkaError>> =
            std::thread::scope(|scope| {
                // Each restore says when it is done, so the loop neither waits longer than
                // the slowest restore nor goes quiet while they run.
                let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
                let handles: Vec<_> = to_restore
                    .iter()
                    .map(|&(p, committed)| {
                        let done = done_tx.clone();
                        scope.spawn(move || {
                            let mut engine = Engine::new(
                                config.policy.clone(),
                                EngineOptions {
                                    auto_start: config.processing.auto_start,
                                },
                            );
                            let stats =
                                restore_partition(config, admission, p, committed.0, &mut engine);
                            let _ = done.send(());
                            let stats = stats?;
                            metrics::counter!(observe::RESTORE_DECISIONS)
                                .increment(stats.decisions_read);
                            metrics::counter!(observe::RESTORE_EVENTS)
                                .increment(stats.events_replayed);
                            Ok((p, PartitionState::new(engine, committed)))
                        })
                    })
                    .collect();
                drop(done_tx);
                // The loop waits here, not stuck: keep `/healthz` alive while restores run
                // (each read is bounded by the restore timeout).
                let mut finished = 0;
                while finished < handles.len() {
                    health.polled();
                    match done_rx.recv_timeout(Duration::from_millis(100)) {
                        Ok(()) => finished += 1,
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        // Every sender is gone: every restore thread has ended (a panic too).
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                health.polled();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("restore thread panicked"))
                    .collect()
            });
        for r in restored {
            let (p, state) = r?;
            self.partitions.insert(p, state);
        }
        if !to_restore.is_empty() {
            metrics::gauge!(observe::RESTORE_SECONDS).set(restore_started.elapsed().as_secs_f64());
        }
        self.parked.retain(|p, _| !self.partitions.contains_key(p));
        let n = self.partitions.len();
        self.health.set_partitions(n, n);
        self.update_rollouts_gauge(true);
        Ok(())
    }

    /// Sets `rollout_breaker_rollouts` to the rollouts held by the assigned partitions, and
    /// when `phases` (a pass over every rollout) `rollout_breaker_rollouts_by_phase`.
    pub(super) fn update_rollouts_gauge(&self, phases: bool) {
        metrics::gauge!(observe::ROLLOUTS).set(
            self.partitions
                .values()
                .map(|s| s.engine.len())
                .sum::<usize>() as f64,
        );
        if phases {
            observe::set_rollouts_by_phase(
                self.partitions
                    .values()
                    .flat_map(|s| s.engine.rollouts().map(|r| r.phase())),
            );
        }
    }
}

fn committed(
    consumer: &BaseConsumer<Ctx>,
    config: &Config,
    p: i32,
) -> Result<(Option<i64>, Option<i64>), KafkaError> {
    // Right after a crash, the zombie's last transaction may still be being aborted: the
    // group then answers UNSTABLE_OFFSET_COMMIT for its partitions. The consumer's own
    // fetch position waits for that internally; the restore must wait too, or it would
    // rebuild windows up to no offset at all.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&config.topics.events, p);
        tpl.add_partition(&config.topics.commands, p);
        let got = with_backoff("committed_offsets", || {
            consumer.committed_offsets(tpl.clone(), Duration::from_secs(30))
        })?;
        let unstable = got.elements().iter().find_map(|e| e.error().err());
        match unstable {
            Some(e) if Instant::now() < deadline => {
                info!(partition = p, error = %e, "Committed offsets not stable yet; waiting.");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Some(e) => return Err(e),
            None => {}
        }
        let off = |t: &str| {
            got.find_partition(t, p)
                .and_then(|e| e.offset().to_raw())
                .filter(|o| *o >= 0)
        };
        return Ok((off(&config.topics.events), off(&config.topics.commands)));
    }
}
