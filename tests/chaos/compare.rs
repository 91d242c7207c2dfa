//! The chaos suite's checks: read both runs' outputs as a `read_committed` consumer, compare the
//! decisions per partition byte for byte, look for duplicates, count dead letters per reason,
//! run `rollout-breaker audit`, and describe every difference precisely.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use rollout_breaker::codec;

use super::workload::RolloutNotes;

/// One record as a reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    /// Offset in its partition.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// `rb.error.reason` header (dead letters).
    pub reason: Option<String>,
}

/// Reads every partition of `topic` from the beginning as a `read_committed` consumer, until
/// the position reaches the end offset captured at start (transaction markers and aborted
/// records occupy offsets that are never delivered).
pub fn read_topic(bootstrap: &str, topic: &str, partitions: i32) -> Vec<Vec<Rec>> {
    let consumer: BaseConsumer =
        crate::common::consumer_config(bootstrap, &crate::common::unique_name("chaos-reader"))
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .create()
            .expect("reader");
    let t = Duration::from_secs(10);
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for p in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, t)
            .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"));
        ends.push(high);
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out: Vec<Vec<Rec>> = vec![Vec::new(); partitions as usize];
    let mut eof = vec![false; partitions as usize];
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = (0..partitions as usize).all(|p| {
            eof[p]
                || consumer.position().ok().is_some_and(|pos| {
                    matches!(pos.find_partition(topic, p as i32).map(|e| e.offset()),
                        Some(Offset::Offset(o)) if o >= ends[p])
                })
                || ends[p] == 0
        });
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reading {topic} did not reach its end in 600 s"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let reason = m.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == "rb.error.reason")
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                });
                let p = m.partition() as usize;
                if m.offset() + 1 >= ends[p] {
                    eof[p] = true;
                }
                out[p].push(Rec {
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    reason,
                });
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                // EOF is reported at the last stable offset: only trust it at the end offset.
                if let Ok(pos) = consumer.position() {
                    if let Some(Offset::Offset(o)) =
                        pos.find_partition(topic, p).map(|e| e.offset())
                    {
                        if o >= ends[p as usize] {
                            eof[p as usize] = true;
                        }
                    }
                }
            }
            Some(Err(e)) => eprintln!("chaos: reading {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// A decision's bytes as readable JSON, or why they are not one.
pub fn describe(value: &Option<Vec<u8>>) -> String {
    match value {
        None => "tombstone".into(),
        Some(bytes) => match codec::decode_decision_any(bytes) {
            Ok(d) => serde_json::to_string(&d).unwrap_or_else(|e| format!("{d:?} ({e})")),
            Err(e) => format!("undecodable ({e}): {} bytes", bytes.len()),
        },
    }
}

fn key_str(key: &Option<Vec<u8>>) -> String {
    key.as_ref().map_or_else(
        || "<no key>".into(),
        |k| String::from_utf8_lossy(k).into_owned(),
    )
}

/// (rollout id, sequence) pairs present more than once, with where each copy is. A rollout
/// retired (RETIRE decision or tombstone) may start a new life at sequence 1 on its partition:
/// sequences are compared within a life, and the n-th life on one partition with the n-th on
/// any other (a rollout split across partitions repeats its sequences there).
pub fn duplicates(log: &[Vec<Rec>]) -> Vec<String> {
    let mut seen: BTreeMap<(String, u32, u64), Vec<String>> = BTreeMap::new();
    for (p, part) in log.iter().enumerate() {
        let mut life: BTreeMap<String, u32> = BTreeMap::new();
        for r in part {
            match r.value.as_deref().map(codec::decode_decision_any) {
                Some(Ok(d)) => {
                    let l = life.get(&d.rollout_id).copied().unwrap_or(0);
                    let retired = d.action == rollout_breaker::engine::Action::Retire;
                    seen.entry((d.rollout_id.clone(), l, d.sequence))
                        .or_default()
                        .push(format!("p{p}@{} {:?}", r.offset, d.action));
                    if retired {
                        *life.entry(d.rollout_id).or_default() += 1;
                    }
                }
                None => *life.entry(key_str(&r.key)).or_default() += 1,
                Some(Err(_)) => {}
            }
        }
    }
    seen.into_iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|((id, life, seq), at)| {
            let life = if life == 0 {
                String::new()
            } else {
                format!(" (life {})", life + 1)
            };
            format!("{id} #{seq}{life} at {}", at.join(", "))
        })
        .collect()
}

/// Dead letters per reason.
pub fn reasons(log: &[Vec<Rec>]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for r in log.iter().flatten() {
        let reason = r
            .reason
            .clone()
            .unwrap_or_else(|| "<no reason header>".into());
        *out.entry(reason).or_default() += 1;
    }
    out
}

/// Compares two decision logs per partition, record by record (key and value bytes). Returns
/// the lines of a precise diff, empty when equal.
pub fn diff_decisions(
    reference: &[Vec<Rec>],
    chaos: &[Vec<Rec>],
    notes: &BTreeMap<String, RolloutNotes>,
    max_shown_per_partition: usize,
) -> Vec<String> {
    let mut lines = Vec::new();
    // How many differing rollouts carry each feature of the workload: points at the cause.
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut differing_total = 0;
    for (p, (a, b)) in reference.iter().zip(chaos).enumerate() {
        let same = a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.key == y.key && x.value == y.value);
        if same {
            continue;
        }
        let first = a
            .iter()
            .zip(b)
            .position(|(x, y)| x.key != y.key || x.value != y.value)
            .unwrap_or(a.len().min(b.len()));
        lines.push(format!(
            "partition {p}: reference has {} decisions, chaos {}; first difference at index {first}",
            a.len(),
            b.len()
        ));
        // Per rollout: which rollouts' decision sequences differ, and how.
        let (ra, rb) = (by_rollout(a), by_rollout(b));
        let mut ids: Vec<&String> = ra.keys().chain(rb.keys()).collect();
        ids.sort();
        ids.dedup();
        let differing: Vec<&String> = ids
            .into_iter()
            .filter(|id| {
                let (x, y) = (ra.get(*id), rb.get(*id));
                let bytes = |v: Option<&Vec<&Rec>>| -> Vec<Option<Vec<u8>>> {
                    v.map(|v| v.iter().map(|r| r.value.clone()).collect())
                        .unwrap_or_default()
                };
                bytes(x) != bytes(y)
            })
            .collect();
        let ordered_only = differing.is_empty();
        lines.push(format!(
            "  {} rollout(s) decided differently{}",
            differing.len(),
            if ordered_only {
                " (none: same decisions per rollout, interleaved in another order)"
            } else {
                ""
            }
        ));
        differing_total += differing.len();
        for id in &differing {
            let features = notes.get(id.as_str()).map(features).unwrap_or_default();
            if features.is_empty() {
                *tally.entry("none (plain events only)".into()).or_default() += 1;
            }
            for f in features {
                *tally.entry(f).or_default() += 1;
            }
        }
        lines.push(format!(
            "  differing rollouts: {}",
            differing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        ));
        let n_differing = differing.len();
        for (shown, id) in differing.into_iter().enumerate() {
            if shown >= max_shown_per_partition {
                lines.push(format!(
                    "  … ({} more rollouts not shown in detail)",
                    n_differing - shown
                ));
                break;
            }
            let x = ra.get(id).map(Vec::as_slice).unwrap_or_default();
            let y = rb.get(id).map(Vec::as_slice).unwrap_or_default();
            let i = x
                .iter()
                .zip(y)
                .position(|(u, v)| u.value != v.value)
                .unwrap_or(x.len().min(y.len()));
            let note = notes.get(id.as_str()).map_or_else(String::new, |n| {
                format!(
                    "profile {:?}, commands {:?}, odd records {:?}",
                    n.profile, n.commands, n.oddities
                )
            });
            lines.push(format!(
                "  rollout {id}: reference {} decisions, chaos {}; first difference at its decision {i} [{note}]",
                x.len(),
                y.len()
            ));
            let show = |side: &str, r: Option<&&Rec>| match r {
                Some(r) => format!("    {side:9} offset {}: {}", r.offset, describe(&r.value)),
                None => format!("    {side:9} (none)"),
            };
            lines.push(show("reference", x.get(i)));
            lines.push(show("chaos", y.get(i)));
        }
    }
    if differing_total > 0 {
        // Against the base rate: a feature carried by far more of the differing rollouts than
        // of all rollouts points at the cause.
        let mut base: BTreeMap<String, usize> = BTreeMap::new();
        for n in notes.values().filter(|n| n.profile.is_some()) {
            let f = features(n);
            if f.is_empty() {
                *base.entry("none (plain events only)".into()).or_default() += 1;
            }
            for f in f {
                *base.entry(f).or_default() += 1;
            }
        }
        let all = notes
            .values()
            .filter(|n| n.profile.is_some())
            .count()
            .max(1);
        lines.push(format!(
            "{differing_total} rollout(s) decided differently in all. Input features, as share of the differing rollouts vs of all {all} rollouts:"
        ));
        for (f, n) in &tally {
            let b = base.get(f).copied().unwrap_or(0);
            lines.push(format!(
                "  {f:28} {n:5} of {differing_total} ({:5.1} %)  vs {b:5} of {all} ({:5.1} %)",
                100.0 * *n as f64 / differing_total as f64,
                100.0 * b as f64 / all as f64
            ));
        }
    }
    lines
}

/// The input features of a rollout, as tally labels.
fn features(n: &RolloutNotes) -> Vec<String> {
    let mut f: Vec<String> = n.commands.iter().map(|c| format!("command {c}")).collect();
    f.extend(n.oddities.keys().map(|k| format!("record {k}")));
    f.sort();
    f.dedup();
    f
}

fn by_rollout(log: &[Rec]) -> BTreeMap<String, Vec<&Rec>> {
    let mut m: BTreeMap<String, Vec<&Rec>> = BTreeMap::new();
    for r in log {
        m.entry(key_str(&r.key)).or_default().push(r);
    }
    m
}

/// `rollout-breaker audit --config FILE`: (exit status success, summary line, output path).
pub fn audit(bin: &Path, config: &Path, out_dir: &Path, label: &str) -> (bool, String, String) {
    check(bin, &["audit"], config, out_dir, label)
}

/// `rollout-breaker replay --config FILE`, the operator's view of the same re-run: (exit
/// status success, summary line, output path).
pub fn replay(bin: &Path, config: &Path, out_dir: &Path, label: &str) -> (bool, String, String) {
    check(bin, &["replay"], config, out_dir, label)
}

/// Runs `bin ARGS --config FILE`, keeps its output in `OUT_DIR/ARGS[0]-LABEL.txt`, and
/// returns (exit status success, the line starting with `ARGS[0]:`, output path).
fn check(
    bin: &Path,
    args: &[&str],
    config: &Path,
    out_dir: &Path,
    label: &str,
) -> (bool, String, String) {
    let out = Command::new(bin)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("running rollout-breaker {}: {e}", args[0]));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let path = out_dir.join(format!("{}-{label}.txt", args[0]));
    std::fs::write(&path, &text).expect("command output");
    let summary = text
        .lines()
        .find(|l| l.starts_with(&format!("{}:", args[0])))
        .unwrap_or("no summary line")
        .to_owned();
    (
        out.status.success(),
        format!("{summary} ({})", out.status),
        path.display().to_string(),
    )
}
