//! `rollout` and `status`: the operator's commands, printed for a terminal.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{RolloutAction, RolloutArgs, StatusArgs};
use crate::engine::{Command, CommandKind, Decision, Policy, Scope};
use crate::kafka::operate::{self, CommandOutcome};

/// Exit code of a command the processor refused.
pub const EXIT_REFUSED: i32 = 2;
/// Exit code when no outcome came back in time.
pub const EXIT_TIMED_OUT: i32 = 3;

fn kind(action: RolloutAction) -> CommandKind {
    match action {
        RolloutAction::Start => CommandKind::Start,
        RolloutAction::Pause => CommandKind::Pause,
        RolloutAction::Resume => CommandKind::Resume,
        RolloutAction::Promote => CommandKind::Promote,
        RolloutAction::Abort => CommandKind::Abort,
        RolloutAction::Retry => CommandKind::Retry,
        RolloutAction::Retire => CommandKind::Retire,
    }
}

fn os_user() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "operator".to_owned())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// When, in UTC, to the second.
pub fn format_time(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Reads a policy file: JSON when it ends in `.json`, TOML otherwise.
pub fn load_policy(path: &std::path::Path) -> anyhow::Result<Policy> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    Ok(if path.extension().is_some_and(|e| e == "json") {
        Policy::from_json(&text)?
    } else {
        Policy::from_toml(&text)?
    })
}

/// Builds the command `args` describe (reads `--policy`).
pub fn command(args: &RolloutArgs) -> anyhow::Result<Command> {
    let kind = kind(args.action);
    anyhow::ensure!(
        kind != CommandKind::Abort || !args.reason.trim().is_empty(),
        "abort needs --reason (it is recorded in the decision and sent to whoever is alerted)"
    );
    let start_only = args.policy.is_some()
        || args.candidate_version.is_some()
        || args.baseline_version.is_some();
    anyhow::ensure!(
        kind == CommandKind::Start || !start_only,
        "--policy, --candidate-version and --baseline-version only go with start"
    );
    let scope = Scope::new(args.segment.as_deref(), args.region.as_deref());
    anyhow::ensure!(
        scope.is_default() || !matches!(kind, CommandKind::Start | CommandKind::Retire),
        "start and retire address the whole rollout: leave out --segment and --region"
    );
    for name in [&args.segment, &args.region].into_iter().flatten() {
        crate::engine::scope::check_scope_name(name).map_err(anyhow::Error::msg)?;
    }
    let actor = args.actor.clone().unwrap_or_else(os_user);
    let mut c =
        Command::new(&args.rollout, kind, actor, args.reason.clone(), now_ms()).for_scope(scope);
    if let Some(path) = &args.policy {
        c.policy = Some(load_policy(path)?);
    }
    c.candidate_version.clone_from(&args.candidate_version);
    c.baseline_version.clone_from(&args.baseline_version);
    Ok(c)
}

/// One decision as a line a person reads.
pub fn describe(d: &Decision) -> String {
    format!(
        "{} #{} {} {} -> {} at {}% [{}{}] by {} at {}: {}",
        d.key(),
        d.sequence,
        d.action,
        d.from,
        d.to,
        d.traffic.percent(),
        d.breaker.name(),
        if d.paused { ", paused" } else { "" },
        d.actor,
        format_time(d.at),
        d.reason
    )
}

/// Runs `rollout-breaker rollout …`; returns the process exit code.
pub fn rollout(args: &RolloutArgs) -> anyhow::Result<i32> {
    let config = args.connection.resolve()?;
    let command = command(args)?;
    let wait = (!args.no_wait).then(|| Duration::from_secs(args.timeout));
    let outcome = operate::send_command(&config, &command, wait)?;
    Ok(match outcome {
        CommandOutcome::Applied(Some(d)) => {
            println!("applied: {}", describe(&d));
            0
        }
        CommandOutcome::Applied(None) => {
            println!(
                "applied: {} retired; routers drop it and serve the baseline",
                command.rollout_id
            );
            0
        }
        CommandOutcome::Sent => {
            println!(
                "sent: {:?} for {} (not waiting for the outcome)",
                command.kind, command.rollout_id
            );
            0
        }
        CommandOutcome::Refused { reason, message } => {
            eprintln!("refused ({reason}): {message}");
            EXIT_REFUSED
        }
        CommandOutcome::TimedOut => {
            eprintln!(
                "no outcome within {} s: is a processor running on {} (topics {} / {})?",
                args.timeout,
                config.kafka.bootstrap_servers,
                config.topics.commands,
                config.topics.decisions
            );
            EXIT_TIMED_OUT
        }
    })
}

/// The status table.
pub fn table(decisions: &[Decision]) -> String {
    let mut out = format!(
        "{:<24} {:<7} {:>7} {:<10} {:<6} {:<20} {:<9} {:<12} {}\n",
        "ROLLOUT", "PHASE", "TRAFFIC", "BREAKER", "PAUSED", "SINCE", "LAST", "ACTOR", "REASON"
    );
    for d in decisions {
        let breaker = d.breaker.name();
        out.push_str(&format!(
            "{:<24} {:<7} {:>6}% {:<10} {:<6} {:<20} {:<9} {:<12} {}\n",
            // A scope's row is named by its key: ROLLOUT#segment=S#region=R.
            d.key(),
            d.to.to_string(),
            d.traffic.percent(),
            breaker,
            if d.paused { "yes" } else { "no" },
            format_time(d.at),
            d.action.to_string(),
            d.actor,
            d.reason
        ));
    }
    out
}

/// Runs `rollout-breaker status …`.
pub fn status(args: &StatusArgs) -> anyhow::Result<i32> {
    let config = args.connection.resolve()?;
    let found = loop {
        let decisions = operate::status(&config, args.rollout.as_deref())?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&decisions)?);
        } else {
            if args.watch.is_some() {
                // Clear the screen and home the cursor, as `watch` does.
                print!("\x1b[2J\x1b[H");
                let every = args.watch.unwrap_or(0);
                println!(
                    "{}  (every {every} s; Ctrl-C to stop)",
                    format_time(now_ms())
                );
            }
            print!("{}", table(&decisions));
            if decisions.is_empty() {
                println!("(no rollouts)");
            }
        }
        match args.watch {
            Some(secs) => std::thread::sleep(Duration::from_secs(secs.max(1))),
            None => break !decisions.is_empty(),
        }
    };
    // A rollout asked for by name and not found is an error for scripts.
    Ok(i32::from(args.rollout.is_some() && !found))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command as Sub};

    fn parse(args: &[&str]) -> anyhow::Result<Command> {
        let cli = Cli::try_parse_from(args)?;
        let Sub::Rollout(r) = cli.command else {
            panic!("not a rollout command")
        };
        command(&r)
    }

    #[test]
    fn commands_may_address_a_segment_or_region() {
        let c = parse(&[
            "rollout-breaker",
            "rollout",
            "pause",
            "agent",
            "--region",
            "eu",
        ])
        .unwrap();
        assert_eq!(
            (c.kind, c.scope),
            (CommandKind::Pause, Scope::new(None, Some("eu")))
        );
        let c = parse(&[
            "rollout-breaker",
            "rollout",
            "abort",
            "agent",
            "--reason",
            "x",
            "--segment",
            "vip",
            "--region",
            "us",
        ])
        .unwrap();
        assert_eq!(c.scope, Scope::new(Some("vip"), Some("us")));
        let e = parse(&[
            "rollout-breaker",
            "rollout",
            "start",
            "agent",
            "--region",
            "eu",
        ]);
        assert!(e.unwrap_err().to_string().contains("whole rollout"));
        let e = parse(&[
            "rollout-breaker",
            "rollout",
            "pause",
            "agent",
            "--region",
            "e u",
        ]);
        assert!(e.unwrap_err().to_string().contains("may only contain"));
        let plain = parse(&["rollout-breaker", "rollout", "pause", "agent"]).unwrap();
        assert!(plain.scope.is_default());
    }

    #[test]
    fn status_names_a_scope_by_its_row_key() {
        let mut engine = crate::engine::Engine::new(Policy::default(), Default::default());
        let start = Command::new("agent", CommandKind::Start, "ana", "", 1_764_222_000_000);
        let mut d = engine.apply_command(&start).unwrap();
        assert!(table(std::slice::from_ref(&d)).contains("\nagent "));
        d.scope = Scope::new(Some("vip"), Some("eu"));
        assert!(table(&[d.clone()]).contains("agent#segment=vip#region=eu"));
        assert!(describe(&d).starts_with("agent#segment=vip#region=eu #"));
    }
}
