//! Where an operator command falls among the events of its partition.
//!
//! Events and commands are two topics, so the order in which a consumer sees them depends on
//! fetch timing. Applying commands in arrival order would let a crash (or an audit) place a
//! command elsewhere among the events and decide differently. The rule instead depends only
//! on the log: **a command applies just before the first event of its partition whose record
//! timestamp is later than the command's**; events with an equal or earlier timestamp go first.
//! Commands keep their own offset order.
//!
//! A command after the last event waits until the events partition is read to its end (the
//! shell checks the high watermark) and then applies: with broker-assigned timestamps
//! (`LogAppendTime`) every event appended later carries a later timestamp, so the audit, which
//! sees those events, places the command at the same spot.

use std::collections::VecDeque;

use crate::engine::Command;

/// A command waiting for its place, with what the log says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldCommand {
    /// The admitted command.
    pub command: Command,
    /// Its record timestamp.
    pub timestamp: i64,
    /// Its offset in the commands partition.
    pub offset: i64,
    /// The record's value, for the dead-letter topic if the engine refuses the command.
    pub payload: Vec<u8>,
}

/// The commands of one partition not yet applied, in offset order.
#[derive(Debug, Clone, Default)]
pub struct CommandGate {
    held: VecDeque<HeldCommand>,
}

impl CommandGate {
    /// An empty gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues an admitted command read at `offset` with record timestamp `timestamp`.
    pub fn hold(&mut self, command: Command, timestamp: i64, offset: i64, payload: Vec<u8>) {
        self.held.push_back(HeldCommand {
            command,
            timestamp,
            offset,
            payload,
        });
    }

    /// The commands due before an event with record timestamp `event_timestamp`, in order.
    pub fn release_before(
        &mut self,
        event_timestamp: i64,
    ) -> impl Iterator<Item = HeldCommand> + '_ {
        std::iter::from_fn(move || {
            if self.held.front()?.timestamp < event_timestamp {
                self.held.pop_front()
            } else {
                None
            }
        })
    }

    /// Every held command, in order (the events partition has been read to its end).
    pub fn release_all(&mut self) -> impl Iterator<Item = HeldCommand> + '_ {
        self.held.drain(..)
    }

    /// Offset of the first command not yet applied: where consumption of the commands partition
    /// resumes after a restart.
    pub fn first_held_offset(&self) -> Option<i64> {
        self.held.front().map(|h| h.offset)
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Number of commands held.
    pub fn len(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::CommandKind;

    fn cmd(kind: CommandKind) -> Command {
        Command::new("r", kind, "ana", "", 0)
    }

    #[test]
    fn commands_go_before_the_first_later_event_in_offset_order() {
        let mut g = CommandGate::new();
        g.hold(cmd(CommandKind::Pause), 100, 7, Vec::new());
        g.hold(cmd(CommandKind::Resume), 90, 8, Vec::new());
        assert!(
            g.release_before(100).next().is_none(),
            "equal timestamp: event first"
        );
        assert_eq!(g.first_held_offset(), Some(7));
        // The second command's timestamp is earlier, but it stays behind the first.
        let released: Vec<i64> = g.release_before(101).map(|h| h.offset).collect();
        assert_eq!(released, vec![7, 8]);
        assert!(g.is_empty());
        g.hold(cmd(CommandKind::Abort), 200, 9, Vec::new());
        assert_eq!(g.release_all().count(), 1);
        assert_eq!(g.first_held_offset(), None);
    }
}
