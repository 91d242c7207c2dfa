//! Dead letters: refused input goes to the dead-letter topic with headers naming its source
//! and the reason; a flood of them stops the processor (wrong topic or encoding).

use std::collections::VecDeque;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use rdkafka::Message;

use super::error::ProcessorError;
use super::worker::Processor;
use crate::observe::DeadLettered;

/// Counts dead letters over the last N records.
pub(super) struct DeadLetterRatio {
    pub(super) recent: VecDeque<bool>,
    pub(super) dead: u64,
    pub(super) window: u64,
}

impl DeadLetterRatio {
    pub(super) fn push(&mut self, dead: bool) {
        self.recent.push_back(dead);
        self.dead += u64::from(dead);
        if self.recent.len() as u64 > self.window {
            if let Some(true) = self.recent.pop_front() {
                self.dead -= 1;
            }
        }
    }
    pub(super) fn ratio(&self) -> Option<f64> {
        (self.recent.len() as u64 >= self.window.min(1_000))
            .then(|| self.dead as f64 / self.recent.len() as f64)
    }
}

/// Where a dead letter comes from: its source record.
pub(super) struct Source<'a> {
    pub(super) topic: &'a str,
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) key: Option<&'a [u8]>,
    pub(super) payload: &'a [u8],
}

impl<'a, M: Message> From<&'a M> for Source<'a> {
    fn from(m: &'a M) -> Self {
        Source {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key(),
            payload: m.payload().unwrap_or_default(),
        }
    }
}

impl Processor {
    /// Fails when the share of dead letters over the window exceeds the limit.
    pub(super) fn check_dead_letter_flood(&self) -> Result<(), ProcessorError> {
        if let Some(ratio) = self.dead_letters.ratio() {
            let limit = self.config.processing.max_dead_letter_ratio;
            if ratio > limit {
                return Err(ProcessorError::DeadLetterFlood {
                    ratio,
                    window: self.dead_letters.recent.len() as u64,
                    limit,
                });
            }
        }
        Ok(())
    }

    pub(super) fn dead_letter<'a>(
        &mut self,
        m: impl Into<Source<'a>>,
        reason: &'static str,
        error: &str,
    ) -> Result<(), ProcessorError> {
        let m: Source<'a> = m.into();
        let partition = m.partition.to_string();
        let offset = m.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "rb.source.topic",
                value: Some(m.topic),
            })
            .insert(Header {
                key: "rb.source.partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "rb.source.offset",
                value: Some(&offset),
            })
            .insert(Header {
                key: "rb.error.reason",
                value: Some(reason),
            })
            .insert(Header {
                key: "rb.error.message",
                value: Some(error),
            });
        let topic = self.config.topics.dead_letter.clone();
        let mut record = BaseRecord::to(&topic).headers(headers).payload(m.payload);
        if let Some(k) = m.key {
            record = record.key(k);
        }
        self.send(record)?;
        DeadLettered {
            topic: m.topic,
            partition: m.partition,
            offset: m.offset,
            reason,
            error,
        }
        .emit();
        Ok(())
    }
}
