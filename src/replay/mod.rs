//! Re-running the engine over recorded input and comparing with the recorded decisions: what
//! `audit` and `replay` share, from the topics or from exported JSONL files.
//!
//! The re-run takes the input exactly as the live processor does: the events partition, where
//! the processor relays every admitted command (see [`crate::input`]), admitted by the same
//! function ([`crate::input::admit`]). The engine is pure and works in event time, so the
//! re-run reproduces each recorded decision byte for byte unless the input, the policy or the
//! code changed. A rollout's state at any moment depends on everything before it, so the
//! engine always starts at the beginning of the recorded input; a time range only selects what
//! is compared and plotted.
//!
//! # Layout
//!
//! - [`Source`]: where recorded records come from: [`KafkaSource`] (the topics, read
//!   `read_committed` up to their end offsets at the start) or [`jsonl::JsonlSource`] (files
//!   written by [`jsonl::export`]).
//! - [`run_partition`]: the re-run of one partition, with an optional [`Observer`] that sees
//!   every admitted event and decision (the report's data, [`timeline`]).
//! - [`compare`]: recorded against replayed decisions (pure).
//! - [`report`]: the self-contained HTML report with SVG plots.

pub mod compare;
pub mod jsonl;
pub mod report;
pub mod timeline;

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::Message;

use crate::codec;
use crate::config::Config;
use crate::engine::{Command, Decision, Engine, EngineOptions, ExecutionEvent, Policy};
use crate::input::{admit, AdmissionRules, Admitted, InputTopic, RecordView};
use crate::kafka::client::reader_config;
use crate::kafka::read::{read_range, record_view};

/// A replay that could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// Reading the topics failed. Retryable: the cluster may answer later.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The events topic does not exist. Not retryable as is.
    #[error("topic `{0}` does not exist")]
    UnknownTopic(String),
    /// An exported file could not be read or written. Not retryable as is.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A line of an exported file is not a record this program wrote. Not retryable.
    #[error("{path} line {line}: {message}")]
    BadLine {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Which recorded topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    /// The events topic: events and relayed commands, in the order they were applied.
    Events,
    /// The decisions topic.
    Decisions,
}

/// One recorded record, borrowed from its source.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Record timestamp (ms since the epoch), when the log has one.
    pub timestamp: Option<i64>,
    /// Key.
    pub key: Option<&'a [u8]>,
    /// Value (`None`: a tombstone or an empty record).
    pub value: Option<&'a [u8]>,
    /// Carries the relayed-command header (events topic only).
    pub relayed_command: bool,
}

impl<'a> Recorded<'a> {
    /// The admission view of an events-topic record.
    pub fn view(&self) -> RecordView<'a> {
        RecordView {
            topic: InputTopic::Events,
            partition: self.partition,
            key: self.key,
            payload: self.value,
            timestamp: self.timestamp,
            relayed_command: self.relayed_command,
        }
    }
}

/// Where recorded records come from.
pub trait Source {
    /// Partitions of the (co-partitioned) topics.
    fn partitions(&mut self) -> Result<i32, ReplayError>;
    /// Records of `topic` in partition `partition` (as far as the source reaches).
    fn count(&mut self, topic: Topic, partition: i32) -> Result<u64, ReplayError>;
    /// Hands every record of `topic`'s partition `partition` to `f`, in offset order.
    fn for_each(
        &mut self,
        topic: Topic,
        partition: i32,
        f: &mut dyn FnMut(&Recorded<'_>),
    ) -> Result<(), ReplayError>;
}

/// A generous bound for reading one partition.
const READ_TIMEOUT: Duration = Duration::from_secs(3_600);
const META_TIMEOUT: Duration = Duration::from_secs(30);

/// The topics of a processor's config, read `read_committed` up to the end offsets they have
/// when a partition's read starts.
pub struct KafkaSource<'c> {
    config: &'c Config,
    consumer: BaseConsumer,
    group_suffix: &'static str,
}

impl<'c> KafkaSource<'c> {
    /// A source for `config`'s topics; `group_suffix` names the readers' group
    /// (`{group_id}-{suffix}`; they commit nothing).
    pub fn new(config: &'c Config, group_suffix: &'static str) -> Result<Self, ReplayError> {
        let consumer: BaseConsumer = reader_config(
            &config.kafka,
            &format!("{}-{group_suffix}", config.kafka.group_id),
        )
        .create()?;
        Ok(Self {
            config,
            consumer,
            group_suffix,
        })
    }

    fn name(&self, topic: Topic) -> &str {
        match topic {
            Topic::Events => &self.config.topics.events,
            Topic::Decisions => &self.config.topics.decisions,
        }
    }

    fn range(&self, topic: Topic, partition: i32) -> Result<(i64, i64), ReplayError> {
        Ok(self
            .consumer
            .fetch_watermarks(self.name(topic), partition, META_TIMEOUT)?)
    }
}

impl Source for KafkaSource<'_> {
    fn partitions(&mut self) -> Result<i32, ReplayError> {
        let events = &self.config.topics.events;
        crate::kafka::admin::partition_count(self.consumer.client(), events, META_TIMEOUT)
            .map_err(|e| match e {
                crate::kafka::admin::AdminError::Kafka(k) => ReplayError::Kafka(k),
                _ => ReplayError::UnknownTopic(events.clone()),
            })?
            .ok_or_else(|| ReplayError::UnknownTopic(events.clone()))
    }

    fn count(&mut self, topic: Topic, partition: i32) -> Result<u64, ReplayError> {
        let (lo, hi) = self.range(topic, partition)?;
        Ok((hi - lo).max(0) as u64)
    }

    fn for_each(
        &mut self,
        topic: Topic,
        partition: i32,
        f: &mut dyn FnMut(&Recorded<'_>),
    ) -> Result<(), ReplayError> {
        let range = self.range(topic, partition)?;
        let name = self.name(topic).to_owned();
        read_range(
            self.config,
            self.group_suffix,
            &name,
            partition,
            range,
            READ_TIMEOUT,
            |m| {
                let view = record_view(m, InputTopic::Events);
                f(&Recorded {
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp: view.timestamp,
                    key: m.key(),
                    value: m.payload(),
                    relayed_command: view.relayed_command,
                });
            },
        )?;
        Ok(())
    }
}

/// Sees the re-run as it happens (the report's data).
pub trait Observer {
    /// An admitted event, before the engine applies it.
    fn event(&mut self, _event: &ExecutionEvent) {}
    /// An admitted command, before the engine applies it.
    fn command(&mut self, _command: &Command) {}
    /// A decision the re-run published.
    fn decision(&mut self, _decision: &Decision) {}
}

/// Observes nothing.
pub struct NoObserver;
impl Observer for NoObserver {}

/// One partition: what the decisions topic holds and what the re-run decided.
#[derive(Debug, Default)]
pub struct PartitionRun {
    /// Recorded decisions by (row key, sequence): the key is the rollout id for its default
    /// scope, [`crate::engine::Scope::key`] for the others.
    pub published: HashMap<(String, u64), Decision>,
    /// Tombstones (RETIRE) per row key.
    pub tombstones: HashMap<String, u64>,
    /// Records in the decisions topic (tombstones included).
    pub published_records: u64,
    /// Decisions the re-run published, in order.
    pub replayed: Vec<Decision>,
    /// Admitted events.
    pub events: u64,
    /// Admitted (relayed) commands.
    pub commands: u64,
    /// Records the processor refused, by the same admission rules.
    pub refused: u64,
}

/// What a re-run needs besides its source.
pub struct RunSettings<'a> {
    /// Admission rules (the processor's config, the topics' actual partition count).
    pub rules: &'a AdmissionRules,
    /// Default policy of the re-run (rollouts whose START carried a policy keep theirs).
    pub policy: &'a Policy,
    /// Whether unknown rollouts start on their first event.
    pub auto_start: bool,
}

/// Reads partition `p`'s recorded decisions, then re-runs the engine over its events
/// partition; `progress` is called with the number of records read so far of both topics.
pub fn run_partition(
    source: &mut dyn Source,
    settings: &RunSettings<'_>,
    p: i32,
    observer: &mut dyn Observer,
    progress: &mut dyn FnMut(u64),
) -> Result<PartitionRun, ReplayError> {
    let mut run = PartitionRun::default();
    source.for_each(Topic::Decisions, p, &mut |r| {
        run.published_records += 1;
        progress(1);
        match r.value {
            None => {
                let key = String::from_utf8_lossy(r.key.unwrap_or_default()).into_owned();
                *run.tombstones.entry(key).or_default() += 1;
            }
            Some(bytes) => {
                if let Ok(d) = codec::decode_decision_any(bytes) {
                    run.published.insert((d.key(), d.sequence), d);
                }
            }
        }
    })?;
    let mut engine = Engine::new(
        settings.policy.clone(),
        EngineOptions {
            auto_start: settings.auto_start,
        },
    );
    let mut out = Vec::new();
    source.for_each(Topic::Events, p, &mut |r| {
        progress(1);
        match admit(settings.rules, &r.view()) {
            Ok(Admitted::Event(e)) => {
                run.events += 1;
                observer.event(&e);
                out.clear();
                engine.apply_event(&e, &mut out);
                for d in out.drain(..).filter(Decision::is_published) {
                    observer.decision(&d);
                    run.replayed.push(d);
                }
            }
            Ok(Admitted::Command(c)) => {
                run.commands += 1;
                observer.command(&c);
                out.clear();
                if engine.apply_command_into(&c, &mut out).is_ok() {
                    for d in out.drain(..) {
                        observer.decision(&d);
                        run.replayed.push(d);
                    }
                }
            }
            Err(_) => run.refused += 1,
        }
    })?;
    Ok(run)
}
