//! Recorded topics as JSON Lines, for replays away from the cluster.
//!
//! `rollout-breaker export --out DIR` writes `DIR/events.jsonl` and `DIR/decisions.jsonl`,
//! one record per line with its raw bytes (base64), so an offline replay admits and decodes
//! them exactly as the processor did, and `DIR/meta.json` (partition count and the topics'
//! names):
//!
//! ```json
//! {"partition":0,"offset":41,"timestamp_ms":1764222000000,"key":"Y2hlY2tvdXQtYWdlbnQ=","value":"eyJyb2xsb3V0X2lk...","relayed_command":false}
//! ```

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{Recorded, ReplayError, Source, Topic};

/// `meta.json` of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportMeta {
    /// Partitions of the (co-partitioned) topics.
    pub partitions: i32,
    /// The events topic's name at the source.
    pub events_topic: String,
    /// The decisions topic's name at the source.
    pub decisions_topic: String,
    /// Only records with a timestamp at or after this (ms), if set.
    pub from_ms: Option<i64>,
    /// Only records with a timestamp at or before this (ms), if set.
    pub to_ms: Option<i64>,
}

/// One line of an exported topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Line {
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<String>,
    value: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    relayed_command: bool,
}

/// What [`export`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportCounts {
    /// Lines of `events.jsonl`.
    pub events: u64,
    /// Lines of `decisions.jsonl`.
    pub decisions: u64,
}

fn file_name(topic: Topic) -> &'static str {
    match topic {
        Topic::Events => "events.jsonl",
        Topic::Decisions => "decisions.jsonl",
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ReplayError + '_ {
    move |source| ReplayError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes every partition of `source`'s events and decisions topics, records stamped within
/// `[from_ms, to_ms]` (bounds optional), to `dir`; `progress` gets the records read.
pub fn export(
    source: &mut dyn Source,
    meta: ExportMeta,
    dir: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<ExportCounts, ReplayError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let mut counts = ExportCounts::default();
    let in_range = |t: Option<i64>| {
        let t = t.unwrap_or(i64::MIN);
        meta.from_ms.is_none_or(|f| t >= f) && meta.to_ms.is_none_or(|to| t <= to)
    };
    for topic in [Topic::Events, Topic::Decisions] {
        let path = dir.join(file_name(topic));
        let mut out = BufWriter::new(File::create(&path).map_err(io_error(&path))?);
        let mut failed: Option<std::io::Error> = None;
        let mut written = 0u64;
        for p in 0..meta.partitions {
            source.for_each(topic, p, &mut |r| {
                progress(1);
                if failed.is_some() || !in_range(r.timestamp) {
                    return;
                }
                let line = Line {
                    partition: r.partition,
                    offset: r.offset,
                    timestamp_ms: r.timestamp,
                    key: r.key.map(|k| STANDARD.encode(k)),
                    value: r.value.map(|v| STANDARD.encode(v)),
                    relayed_command: r.relayed_command,
                };
                let result = serde_json::to_writer(&mut out, &line)
                    .map_err(std::io::Error::from)
                    .and_then(|()| out.write_all(b"\n"));
                match result {
                    Ok(()) => written += 1,
                    Err(e) => failed = Some(e),
                }
            })?;
        }
        if let Some(e) = failed {
            return Err(io_error(&path)(e));
        }
        out.flush().map_err(io_error(&path))?;
        match topic {
            Topic::Events => counts.events = written,
            Topic::Decisions => counts.decisions = written,
        }
    }
    let path = dir.join("meta.json");
    let text = serde_json::to_string_pretty(&meta).expect("meta serializes");
    std::fs::write(&path, text).map_err(io_error(&path))?;
    Ok(counts)
}

/// One decoded line.
struct Owned {
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    relayed_command: bool,
}

/// An export read back (each topic's file is loaded on first use).
pub struct JsonlSource {
    dir: PathBuf,
    meta: ExportMeta,
    events: Option<Vec<Owned>>,
    decisions: Option<Vec<Owned>>,
}

impl JsonlSource {
    /// Opens the export in `dir` (reads its `meta.json`).
    pub fn open(dir: &Path) -> Result<Self, ReplayError> {
        let path = dir.join("meta.json");
        let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
        let meta = serde_json::from_str(&text).map_err(|e| ReplayError::BadLine {
            path: path.display().to_string(),
            line: e.line(),
            message: e.to_string(),
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            meta,
            events: None,
            decisions: None,
        })
    }

    /// The export's `meta.json`.
    pub fn meta(&self) -> &ExportMeta {
        &self.meta
    }

    fn load(&mut self, topic: Topic) -> Result<&[Owned], ReplayError> {
        let slot = match topic {
            Topic::Events => &mut self.events,
            Topic::Decisions => &mut self.decisions,
        };
        if slot.is_none() {
            let path = self.dir.join(file_name(topic));
            let file = File::open(&path).map_err(io_error(&path))?;
            let mut records = Vec::new();
            for (i, line) in BufReader::new(file).lines().enumerate() {
                let line = line.map_err(io_error(&path))?;
                if line.trim().is_empty() {
                    continue;
                }
                let bad = |message: String| ReplayError::BadLine {
                    path: path.display().to_string(),
                    line: i + 1,
                    message,
                };
                let l: Line = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
                let bytes = |b: Option<String>, what: &str| {
                    b.map(|b| STANDARD.decode(b))
                        .transpose()
                        .map_err(|e| bad(format!("{what}: {e}")))
                };
                records.push(Owned {
                    partition: l.partition,
                    offset: l.offset,
                    timestamp: l.timestamp_ms,
                    key: bytes(l.key, "key")?,
                    value: bytes(l.value, "value")?,
                    relayed_command: l.relayed_command,
                });
            }
            *slot = Some(records);
        }
        Ok(slot.as_deref().expect("loaded above"))
    }
}

impl Source for JsonlSource {
    fn partitions(&mut self) -> Result<i32, ReplayError> {
        Ok(self.meta.partitions)
    }

    fn count(&mut self, topic: Topic, partition: i32) -> Result<u64, ReplayError> {
        Ok(self
            .load(topic)?
            .iter()
            .filter(|r| r.partition == partition)
            .count() as u64)
    }

    fn for_each(
        &mut self,
        topic: Topic,
        partition: i32,
        f: &mut dyn FnMut(&Recorded<'_>),
    ) -> Result<(), ReplayError> {
        for r in self
            .load(topic)?
            .iter()
            .filter(|r| r.partition == partition)
        {
            f(&Recorded {
                partition: r.partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key.as_deref(),
                value: r.value.as_deref(),
                relayed_command: r.relayed_command,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (topic, partition, timestamp, value, relayed command).
    type Row = (Topic, i32, i64, Option<Vec<u8>>, bool);

    /// Two partitions of records held in memory.
    struct Memory(Vec<Row>);

    impl Source for Memory {
        fn partitions(&mut self) -> Result<i32, ReplayError> {
            Ok(2)
        }
        fn count(&mut self, topic: Topic, partition: i32) -> Result<u64, ReplayError> {
            Ok(self
                .0
                .iter()
                .filter(|r| r.0 == topic && r.1 == partition)
                .count() as u64)
        }
        fn for_each(
            &mut self,
            topic: Topic,
            partition: i32,
            f: &mut dyn FnMut(&Recorded<'_>),
        ) -> Result<(), ReplayError> {
            for (i, r) in self.0.iter().enumerate() {
                if r.0 == topic && r.1 == partition {
                    f(&Recorded {
                        partition: r.1,
                        offset: i as i64,
                        timestamp: Some(r.2),
                        key: Some(b"k\xff"),
                        value: r.3.as_deref(),
                        relayed_command: r.4,
                    });
                }
            }
            Ok(())
        }
    }

    fn collect(source: &mut dyn Source, topic: Topic, p: i32) -> Vec<(i64, Option<Vec<u8>>, bool)> {
        let mut out = Vec::new();
        source
            .for_each(topic, p, &mut |r| {
                assert_eq!(r.key, Some(&b"k\xff"[..]));
                out.push((
                    r.timestamp.unwrap(),
                    r.value.map(<[u8]>::to_vec),
                    r.relayed_command,
                ));
            })
            .unwrap();
        out
    }

    #[test]
    fn an_export_reads_back_byte_for_byte_within_its_time_range() {
        let mut memory = Memory(vec![
            (Topic::Events, 0, 10, Some(vec![0, 159, 255]), false),
            (Topic::Events, 1, 20, Some(b"{}".to_vec()), true),
            (Topic::Events, 0, 30, Some(vec![1]), false),
            (Topic::Decisions, 1, 15, None, false),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let meta = ExportMeta {
            partitions: 2,
            events_topic: "e".into(),
            decisions_topic: "d".into(),
            from_ms: None,
            to_ms: Some(25),
        };
        let counts = export(&mut memory, meta.clone(), dir.path(), &mut |_| {}).unwrap();
        assert_eq!(
            counts,
            ExportCounts {
                events: 2,
                decisions: 1
            }
        );
        let mut back = JsonlSource::open(dir.path()).unwrap();
        assert_eq!(back.meta(), &meta);
        assert_eq!(
            collect(&mut back, Topic::Events, 0),
            vec![(10, Some(vec![0, 159, 255]), false)]
        );
        assert_eq!(
            collect(&mut back, Topic::Events, 1),
            vec![(20, Some(b"{}".to_vec()), true)]
        );
        assert_eq!(
            collect(&mut back, Topic::Decisions, 1),
            vec![(15, None, false)]
        );
        assert_eq!(back.count(Topic::Decisions, 0).unwrap(), 0);
    }
}
