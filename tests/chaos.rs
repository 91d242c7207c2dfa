//! Chaos suite: a crash must not change what the processor decides.
//!
//! A seeded workload (events of many rollouts stamped in the present, operator commands,
//! refused records of every kind, late and future-dated events, keyless records) is produced
//! once. Two runs of `rollout-breaker run` read it with their own group, decisions and
//! dead-letter topics: a reference run left alone, and a chaos run whose processor is SIGKILLed
//! at random points (restarted each time with the same instance id), joined by a second
//! instance for a while and, in the full version, cut off by a broker restart. Then:
//!
//! - the chaos decisions topic equals the reference's per partition, key and value bytes in
//!   offset order, as a `read_committed` reader sees them;
//! - no (rollout id, sequence) appears twice;
//! - `rollout-breaker audit` on the chaos run's config exits 0, and so does
//!   `rollout-breaker replay` (every rollout agrees);
//! - dead letters per reason are equal between the runs.
//!
//! Parameters (environment): `CHAOS_EVENTS` (100 000), `CHAOS_ROLLOUTS` (200), `CHAOS_KILLS`
//! (5), `CHAOS_SEED` (1), `CHAOS_PARTITIONS` (6), `CHAOS_SECOND_INSTANCE` (1), `CHAOS_SPAN_S`
//! (event time span up to now, 1500), `CHAOS_TIMEOUT_S` (per run, 900), `CHAOS_STALL_S`
//! (a run whose committed offsets do not move for this long is stuck, 120),
//! `CHAOS_COMMANDS_VIA` (`events`: commands written into the events topic as the
//! processor relays them; `commands`: through the commands topic, each run on input topics of
//! its own), `CHAOS_COMMANDS` and `CHAOS_ODDITIES` (1; 0 leaves out the commands, or the refused, late,
//! future-dated and keyless records, to tell which input a difference comes from),
//! `CHAOS_BROKER_RESTART_CMD` (a shell command restarting the broker on its data; unset: no
//! restart), `CHAOS_BIN` (the processor binary; default: this build's `rollout-breaker`).
//! `scripts/chaos` runs this file with the full figures.

mod common;
#[path = "chaos/compare.rs"]
mod compare;
#[path = "chaos/supervisor.rs"]
mod supervisor;
#[path = "chaos/workload.rs"]
mod workload;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use supervisor::{Chaos, RunReport, RunSetup};
use workload::{Workload, WorkloadSpec, REFUSED_KINDS};

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        _ => default,
    }
}

#[test]
fn crashes_do_not_change_decisions() {
    let events: usize = env_num("CHAOS_EVENTS", 100_000);
    let rollouts: usize = env_num("CHAOS_ROLLOUTS", 200);
    let kills: usize = env_num("CHAOS_KILLS", 5);
    let seed: u64 = env_num("CHAOS_SEED", 1);
    let partitions: i32 = env_num("CHAOS_PARTITIONS", 6);
    let second_instance = env_num::<u8>("CHAOS_SECOND_INSTANCE", 1) != 0;
    let span_ms = env_num::<i64>("CHAOS_SPAN_S", 1_500) * 1_000;
    let timeout = Duration::from_secs(env_num("CHAOS_TIMEOUT_S", 900));
    let stall = Duration::from_secs(env_num("CHAOS_STALL_S", 120));
    let commands = env_num::<u8>("CHAOS_COMMANDS", 1) != 0;
    let oddities = env_num::<u8>("CHAOS_ODDITIES", 1) != 0;
    // `events` (default): commands written into the events topic as the processor relays
    // them; `commands`: through the commands topic, relayed by each run's processor, with
    // input topics of its own per run (the relays of one group must not reach the other).
    let via_commands_topic = match std::env::var("CHAOS_COMMANDS_VIA").as_deref() {
        Ok("commands") => true,
        Ok("events") | Ok("") | Err(_) => false,
        Ok(other) => panic!("CHAOS_COMMANDS_VIA={other}: expected `events` or `commands`"),
    };
    let broker_restart = std::env::var("CHAOS_BROKER_RESTART_CMD")
        .ok()
        .filter(|c| !c.trim().is_empty());
    let bin = std::env::var_os("CHAOS_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_rollout-breaker")),
        PathBuf::from,
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let kafka = rt.block_on(common::kafka());
    let bootstrap = kafka.bootstrap.clone();
    let prefix = common::unique_name("chaos");
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&prefix);
    std::fs::create_dir_all(&work).unwrap();
    eprintln!(
        "chaos: {events} events, {rollouts} rollouts, {kills} kills, seed {seed}, {partitions} partitions, \
         second instance {second_instance}, commands {commands}, odd records {oddities}, broker restart {}, binary {}, files in {}",
        broker_restart.as_deref().unwrap_or("no"),
        bin.display(),
        work.display()
    );

    // Inputs, shared by both runs unless commands go through the commands topic; outputs
    // created up front (decisions compacted) so neither run starts on topics still electing
    // leaders.
    let topic = |s: &str| format!("{prefix}-{s}");
    let input = |s: &str, label: &str| {
        if via_commands_topic {
            topic(&format!("{s}-{label}"))
        } else {
            topic(s)
        }
    };
    rt.block_on(async {
        let mut names = vec![topic("dlq-reference"), topic("dlq-chaos")];
        for label in ["reference", "chaos"] {
            for s in ["events", "commands"] {
                if !names.contains(&input(s, label)) {
                    names.push(input(s, label));
                }
            }
        }
        for name in names {
            common::create_topic(&bootstrap, &name, partitions, &[]).await;
        }
        for name in ["decisions-reference", "decisions-chaos"] {
            common::create_topic(
                &bootstrap,
                &topic(name),
                partitions,
                &[("cleanup.policy", "compact")],
            )
            .await;
        }
    });

    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t = Instant::now();
    let w = Workload::generate(&WorkloadSpec {
        events,
        rollouts,
        partitions,
        seed,
        span_ms,
        now_ms,
        commands,
        oddities,
        commands_in_events: !via_commands_topic,
    });
    eprintln!(
        "chaos: generated {} records for the events topic ({} of them commands) in {:.1} s: {:?}",
        w.events.len(),
        w.events.iter().filter(|r| r.relayed_command).count(),
        t.elapsed().as_secs_f64(),
        w.counts
    );
    let t = Instant::now();
    for label in if via_commands_topic {
        &["reference", "chaos"][..]
    } else {
        &["reference"][..]
    } {
        workload::produce(&bootstrap, &input("events", label), partitions, &w.events);
        workload::produce(
            &bootstrap,
            &input("commands", label),
            partitions,
            &w.commands,
        );
    }
    eprintln!("chaos: produced in {:.1} s", t.elapsed().as_secs_f64());

    let setup = |label: &'static str| RunSetup {
        label,
        bootstrap: bootstrap.clone(),
        events: input("events", label),
        commands: input("commands", label),
        decisions: topic(&format!("decisions-{label}")),
        dead_letter: topic(&format!("dlq-{label}")),
        group: topic(&format!("group-{label}")),
        partitions,
        config_path: work.join(format!("{label}.toml")),
        log_dir: work.clone(),
    };
    let (reference, chaos) = (setup("reference"), setup("chaos"));
    let ref_report = supervisor::run(&bin, &reference, &Chaos::default(), timeout, stall);
    eprintln!(
        "chaos: reference run done in {:.1} s",
        ref_report.wall.as_secs_f64()
    );
    let chaos_report = supervisor::run(
        &bin,
        &chaos,
        &Chaos {
            kills,
            second_instance,
            broker_restart,
            seed,
        },
        timeout,
        stall,
    );
    eprintln!(
        "chaos: chaos run done in {:.1} s",
        chaos_report.wall.as_secs_f64()
    );

    // Checks.
    let mut failures: Vec<String> = Vec::new();
    let ref_log = compare::read_topic(&bootstrap, &reference.decisions, partitions);
    let chaos_log = compare::read_topic(&bootstrap, &chaos.decisions, partitions);
    let count = |log: &[Vec<compare::Rec>]| log.iter().map(Vec::len).sum::<usize>();
    let diff = compare::diff_decisions(&ref_log, &chaos_log, &w.notes, 3);
    if !diff.is_empty() {
        failures.push(format!(
            "decisions differ from the reference run:\n{}",
            diff.join("\n")
        ));
    }
    for (label, log) in [("reference", &ref_log), ("chaos", &chaos_log)] {
        let dups = compare::duplicates(log);
        if !dups.is_empty() {
            failures.push(format!(
                "{label} decisions topic has {} duplicate (rollout, sequence) pairs: {:?}",
                dups.len(),
                &dups[..dups.len().min(20)]
            ));
        }
    }
    let ref_dead = compare::reasons(&compare::read_topic(
        &bootstrap,
        &reference.dead_letter,
        partitions,
    ));
    let chaos_dead = compare::reasons(&compare::read_topic(
        &bootstrap,
        &chaos.dead_letter,
        partitions,
    ));
    if ref_dead != chaos_dead {
        failures.push(format!(
            "dead letters per reason differ: reference {ref_dead:?}, chaos {chaos_dead:?}"
        ));
    }
    // Every refused record is dead-lettered under its reason, once. (Commands refused by the
    // engine depend on its decisions, so only the generated ones are a lower bound.)
    if oddities {
        let mut wrong = Vec::new();
        for (kind, reason) in REFUSED_KINDS {
            let produced = w.counts.get(kind).copied().unwrap_or(0);
            let got = chaos_dead.get(reason).copied().unwrap_or(0);
            let ok = if kind == "refused_command" {
                got >= produced
            } else {
                got == produced
            };
            if !ok {
                wrong.push(format!(
                    "{kind}: {produced} produced, {got} dead-lettered as `{reason}`"
                ));
            }
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "refused records not dead-lettered as expected: {}",
                wrong.join("; ")
            ));
        }
    }
    let (audit_ok, audit_line, audit_path) =
        compare::audit(&bin, &chaos.config_path, &work, "chaos");
    if !audit_ok {
        failures.push(format!(
            "audit of the chaos run failed: {audit_line}; full output in {audit_path}"
        ));
    }
    let (ref_audit_ok, ref_audit_line, ref_audit_path) =
        compare::audit(&bin, &reference.config_path, &work, "reference");
    let (replay_ok, replay_line, replay_path) =
        compare::replay(&bin, &chaos.config_path, &work, "chaos");
    if !replay_ok {
        failures.push(format!(
            "replay of the chaos run diverged: {replay_line}; full output in {replay_path}"
        ));
    }

    // Summary.
    let mut s = String::new();
    let _ = writeln!(
        s,
        "==== chaos suite summary (seed {seed}, commands via the {} topic) ====",
        if via_commands_topic {
            "commands"
        } else {
            "events"
        }
    );
    let _ = writeln!(
        s,
        "input: {} event-topic records ({} rollouts; {} of them commands) + {} commands-topic records; kinds {:?}",
        w.events.len(),
        rollouts,
        w.events.iter().filter(|r| r.relayed_command).count(),
        w.commands.len(),
        w.counts
    );
    let run_line = |s: &mut String, label: &str, r: &RunReport| {
        let _ = writeln!(
            s,
            "{label}: wall {:.1} s, {} processes started, {} SIGKILLs, {} broker restarts, {} unplanned exits",
            r.wall.as_secs_f64(),
            r.spawns,
            r.kills,
            r.broker_restarts,
            r.unplanned_exits.len()
        );
        for e in &r.unplanned_exits {
            let _ = writeln!(s, "    {e}");
        }
    };
    run_line(&mut s, "reference run", &ref_report);
    run_line(&mut s, "chaos run", &chaos_report);
    let _ = writeln!(
        s,
        "decisions: reference {}, chaos {}; per partition {:?} / {:?}",
        count(&ref_log),
        count(&chaos_log),
        ref_log.iter().map(Vec::len).collect::<Vec<_>>(),
        chaos_log.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let actions = |log: &[Vec<compare::Rec>]| {
        let mut m = std::collections::BTreeMap::<String, u64>::new();
        for r in log.iter().flatten() {
            let a = match r
                .value
                .as_deref()
                .map(rollout_breaker::codec::decode_decision_any)
            {
                Some(Ok(d)) => format!("{:?}", d.action),
                Some(Err(_)) => "undecodable".into(),
                None => "tombstone".into(),
            };
            *m.entry(a).or_default() += 1;
        }
        m
    };
    let _ = writeln!(s, "reference actions: {:?}", actions(&ref_log));
    let _ = writeln!(s, "dead letters: reference {ref_dead:?}");
    let _ = writeln!(s, "              chaos     {chaos_dead:?}");
    if oddities {
        let expected: Vec<&str> = REFUSED_KINDS.iter().map(|(_, r)| *r).collect();
        let _ = writeln!(
            s,
            "dead-letter reasons expected for the refused records: {expected:?}"
        );
    }
    let _ = writeln!(s, "audit chaos: {audit_line}");
    let _ = writeln!(s, "replay chaos: {replay_line}");
    let _ = writeln!(
        s,
        "audit reference: {ref_audit_line}{}",
        if ref_audit_ok { "" } else { &*ref_audit_path }
    );
    let _ = writeln!(
        s,
        "result: {}",
        if failures.is_empty() {
            "PASS: chaos decisions equal the reference byte for byte, no duplicates, audit clean, dead letters equal"
                .to_owned()
        } else {
            format!("FAIL ({} check(s))", failures.len())
        }
    );
    for f in &failures {
        let _ = writeln!(s, "---- {f}");
    }
    let _ = writeln!(s, "files: {}", work.display());
    std::fs::write(work.join("summary.txt"), &s).unwrap();
    eprintln!("{s}");
    drop(kafka);
    assert!(
        failures.is_empty(),
        "chaos suite failed; see the summary above"
    );
}
