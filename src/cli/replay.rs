//! `replay` and `export`: the terminal side of [`crate::replay`].

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use super::operate::{describe, load_policy};
use super::{ExportArgs, ReplayArgs};
use crate::engine::{Decision, Policy};
use crate::replay::compare::{compare, Comparison};
use crate::replay::jsonl::{self, ExportMeta, JsonlSource};
use crate::replay::report::{self, ReportHeader, RolloutReport};
use crate::replay::timeline::Timeline;
use crate::replay::{run_partition, KafkaSource, NoObserver, Observer, RunSettings, Source, Topic};

/// Replays with fewer input records than this show no progress bar.
const PROGRESS_FROM: u64 = 10_000;

/// `TIME` flags: RFC 3339 (`2026-11-27T14:00:00Z`) or ms since the epoch.
pub fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let t = humantime::parse_rfc3339_weak(s)
        .with_context(|| format!("`{s}` is neither RFC 3339 time nor ms since the epoch"))?;
    Ok(t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64)
}

fn progress_bar(total: u64, what: &str) -> ProgressBar {
    if total < PROGRESS_FROM {
        return ProgressBar::hidden();
    }
    // Drawn on stderr, and only when it is a terminal.
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} records ({per_sec}, {eta} left)",
        )
        .expect("a valid template"),
    );
    bar.set_message(what.to_owned());
    bar
}

fn total(source: &mut dyn Source, partitions: i32) -> anyhow::Result<u64> {
    let mut n = 0;
    for p in 0..partitions {
        n += source.count(Topic::Events, p)? + source.count(Topic::Decisions, p)?;
    }
    Ok(n)
}

/// Runs `rollout-breaker replay …`; returns the process exit code (0: agreement, 1: a
/// divergence).
pub fn replay(args: &ReplayArgs) -> anyhow::Result<i32> {
    let config = args.connection.resolve()?;
    let from = args.from.as_deref().map(parse_time).transpose()?;
    let to = args.to.as_deref().map(parse_time).transpose()?;
    let policy = match &args.policy {
        Some(path) => load_policy(path)?,
        None => config.policy.clone(),
    };
    let (mut source, name): (Box<dyn Source + '_>, String) = match &args.input {
        Some(dir) => (
            Box::new(JsonlSource::open(dir)?),
            format!("export {}", dir.display()),
        ),
        None => (
            Box::new(KafkaSource::new(&config, "replay")?),
            format!(
                "topics {} and {} at {}",
                config.topics.events, config.topics.decisions, config.kafka.bootstrap_servers
            ),
        ),
    };
    let partitions = source.partitions()?;
    let rules = config.admission_rules(partitions);
    let settings = RunSettings {
        rules: &rules,
        policy: &policy,
        auto_start: config.processing.auto_start,
    };
    let bar = progress_bar(total(source.as_mut(), partitions)?, "replay");
    let mut timeline = Timeline::new(
        policy.evaluation_interval_ms,
        from,
        to,
        args.rollout.clone(),
    );
    // The same rollout and span, for the decisions (the timeline itself fills up below).
    let span = timeline.clone();
    let selected = |d: &Decision| span.selects(&d.rollout_id) && span.in_span(d.at);
    let mut found = Comparison::default();
    let mut recorded: BTreeMap<String, Vec<Decision>> = BTreeMap::new();
    let (mut events, mut commands, mut refused) = (0, 0, 0);
    for p in 0..partitions {
        // Only a report needs the per-bucket numbers (every latency of the span).
        let observer: &mut dyn Observer = if args.report.is_some() {
            &mut timeline
        } else {
            &mut NoObserver
        };
        let run = run_partition(source.as_mut(), &settings, p, observer, &mut |n| bar.inc(n))?;
        found.extend(compare(&run, &|d| selected(d)));
        for d in run.published.values().filter(|d| selected(d)) {
            recorded
                .entry(d.rollout_id.clone())
                .or_default()
                .push(d.clone());
        }
        (events, commands, refused) = (
            events + run.events,
            commands + run.commands,
            refused + run.refused,
        );
    }
    bar.finish_and_clear();
    for ds in recorded.values_mut() {
        ds.sort_by_key(|d| d.sequence);
    }
    let divergences = found.first_divergences();
    let mut ids: Vec<&String> = recorded.keys().chain(divergences.keys()).collect();
    ids.sort();
    ids.dedup();
    println!(
        "replay: {events} events and {commands} commands re-run ({refused} refused records \
         skipped, as the processor refused them); {} recorded decisions in the span; {} \
         reproduced (retirements' tombstones included); {} of {} rollouts diverge",
        recorded.values().map(Vec::len).sum::<usize>(),
        found.verified,
        divergences.len(),
        ids.len()
    );
    for id in &ids {
        match divergences.get(*id) {
            None => println!(
                "{id}: agrees ({} decisions)",
                recorded.get(*id).map_or(0, Vec::len)
            ),
            Some(d) => {
                let side = |x: &Option<Decision>| x.as_ref().map_or("(none)".into(), describe);
                println!(
                    "{id}: DIVERGES at #{}\n  recorded {}\n  replayed {}",
                    d.sequence(),
                    side(&d.recorded),
                    side(&d.replayed)
                );
            }
        }
    }
    if let Some(path) = &args.report {
        let rollouts: Vec<RolloutReport<'_>> = ids
            .iter()
            .map(|id| {
                let ds: Vec<&Decision> = recorded
                    .get(*id)
                    .map(|v| v.iter().collect())
                    .unwrap_or_default();
                let policy = ds
                    .iter()
                    .rev()
                    .find_map(|d| d.policy_json.as_deref())
                    .and_then(|j| Policy::from_json(j).ok())
                    .unwrap_or_else(|| policy.clone());
                RolloutReport {
                    rollout_id: id.as_str(),
                    buckets: timeline.rollouts.get(*id),
                    recorded: ds,
                    divergence: divergences.get(*id),
                    policy,
                }
            })
            .collect();
        let span = match (from, to) {
            (None, None) => "the whole input".to_owned(),
            (f, t) => format!(
                "{} to {}",
                f.map_or("the start".into(), report::rfc3339),
                t.map_or("the end".into(), report::rfc3339)
            ),
        };
        let header = ReportHeader {
            source: name.clone(),
            span,
            bucket_ms: timeline.width_ms(),
            policy_file: args.policy.as_ref().map(|p| p.display().to_string()),
        };
        let html = report::render(&header, &rollouts);
        std::fs::write(path, html).with_context(|| format!("writing {}", path.display()))?;
        println!("report: {}", path.display());
    }
    Ok(if found.is_clean() { 0 } else { 1 })
}

/// Runs `rollout-breaker export …`; returns the process exit code.
pub fn export(args: &ExportArgs) -> anyhow::Result<i32> {
    let config = args.connection.resolve()?;
    let mut source = KafkaSource::new(&config, "export")?;
    let partitions = source.partitions()?;
    let meta = ExportMeta {
        partitions,
        events_topic: config.topics.events.clone(),
        decisions_topic: config.topics.decisions.clone(),
        from_ms: args.from.as_deref().map(parse_time).transpose()?,
        to_ms: args.to.as_deref().map(parse_time).transpose()?,
    };
    let bar = progress_bar(total(&mut source, partitions)?, "export");
    let counts = jsonl::export(&mut source, meta, &args.out, &mut |n| bar.inc(n))?;
    bar.finish_and_clear();
    println!(
        "export: {} events-topic records and {} decisions-topic records to {}",
        counts.events,
        counts.decisions,
        args.out.display()
    );
    Ok(0)
}
