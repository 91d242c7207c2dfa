use anyhow::Context;
use clap::Parser;
use rollout_breaker::cli::{BenchCommand, Cli, Command, QualityArgs, RuleChoice};
use rollout_breaker::config::{Config, LogFormat};
use rollout_breaker::engine::Policy;
use tracing_subscriber::EnvFilter;

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The demo prints its own view; only warnings and errors go to the log.
fn init_tracing_quiet() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn simulate(args: rollout_breaker::cli::SimulateArgs) -> anyhow::Result<()> {
    use rollout_breaker::agent::{EmitterConfig, EventEmitter};
    use rollout_breaker::router::{DecisionTable, RouterConfig};
    use rollout_breaker::sim::{self, Profile, ScenarioFile};
    anyhow::ensure!(
        args.speed > 0.0 && args.speed.is_finite(),
        "--speed must be > 0"
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let scenarios = if std::path::Path::new(&args.scenario).is_file() {
        let text = std::fs::read_to_string(&args.scenario)?;
        let file: ScenarioFile =
            toml::from_str(&text).with_context(|| format!("scenario file {}", args.scenario))?;
        file.scenario
    } else {
        let profile = Profile::new(args.success_rate, args.latency_ms, args.latency_ms / 10.0);
        if args.scenario == "segments-regions" {
            sim::segments_and_regions(
                &args.rollout,
                args.rate,
                args.duration * 1000,
                now_ms,
                profile,
            )
        } else {
            vec![sim::builtin(
                &args.scenario,
                &args.rollout,
                args.rate,
                args.duration * 1000,
                now_ms,
                profile,
            )
            .with_context(|| {
                format!(
                    "unknown scenario `{}` (not a file, not a built-in name)",
                    args.scenario
                )
            })?]
        }
    };
    let table = DecisionTable::start(RouterConfig::new(&args.brokers, &args.decisions_topic))?;
    table.wait_ready(std::time::Duration::from_secs(30)).await?;
    let emitter = EventEmitter::new(EmitterConfig::new(&args.brokers, &args.events_topic))?;
    let progress = rollout_breaker::fleet::drive(
        scenarios,
        &table,
        &emitter,
        args.speed,
        |ps| {
            for p in ps {
                tracing::info!(
                    rollout = %p.rollout_id,
                    phase = ?p.phase,
                    traffic = %p.traffic,
                    emitted = p.emitted,
                    candidate = p.candidate,
                    refused = p.refused,
                    "Simulating."
                );
            }
        },
        |_| false,
    )
    .await;
    emitter.flush(std::time::Duration::from_secs(30))?;
    for p in progress {
        println!(
            "{}: {} events ({} candidate, {} refused), last phase {:?}",
            p.rollout_id, p.emitted, p.candidate, p.refused, p.phase
        );
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let config = args.resolve()?;
            init_tracing(config.log_format);
            let rt = tokio::runtime::Runtime::new()?;
            if let Err(e) = rt.block_on(rollout_breaker::kafka::processor::run(
                config,
                shutdown_signal(),
            )) {
                eprintln!("Error: {e}");
                // 78 (EX_CONFIG) when a restart as is cannot help (fenced, dead-letter flood,
                // misconfigured topics), so a supervisor can stop restarting
                // (systemd: RestartPreventExitStatus=78); 1 otherwise.
                std::process::exit(if e.is_retryable() { 1 } else { 78 });
            }
        }
        Command::Audit(args) => {
            let config = args.resolve()?;
            init_tracing(config.log_format);
            let report = rollout_breaker::kafka::audit::audit(&config)?;
            println!(
                "audit: {} events and {} commands replayed ({} refused records skipped, as the processor refused them); {} published records, {} verified, {} mismatched, {} replayed but unpublished",
                report.events,
                report.commands,
                report.refused,
                report.published,
                report.verified,
                report.mismatched.len(),
                report.unpublished.len()
            );
            for (published, replayed) in &report.mismatched {
                println!(
                    "MISMATCH {} #{}:\n  published {:?}\n  replayed  {:?}",
                    published.rollout_id, published.sequence, published, replayed
                );
            }
            for d in &report.unpublished {
                println!("UNPUBLISHED {} #{}: {:?}", d.rollout_id, d.sequence, d);
            }
            if !report.is_clean() {
                std::process::exit(1);
            }
        }
        Command::CheckPolicy { path } => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let policy = if path.extension().is_some_and(|e| e == "json") {
                Policy::from_json(&text)?
            } else {
                Policy::from_toml(&text)?
            };
            println!("{}", toml::to_string_pretty(&policy)?);
        }
        Command::CheckConfig { path } => {
            let config = Config::load(&path)?;
            println!("{}", toml::to_string_pretty(&config)?);
        }
        Command::Demo { brokers, speed } => {
            init_tracing_quiet();
            let rt = tokio::runtime::Runtime::new()?;
            let report = rt.block_on(rollout_breaker::demo::run(brokers, speed))?;
            rollout_breaker::demo::print_summary(&report);
            if !report.as_expected() {
                std::process::exit(1);
            }
        }
        Command::Simulate(args) => {
            init_tracing(LogFormat::Text);
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(simulate(args))?;
        }
        Command::Bench(BenchCommand::Quality(args)) => bench_quality(&args)?,
        Command::Rollout(args) => {
            init_tracing_quiet();
            std::process::exit(rollout_breaker::cli::operate::rollout(&args)?);
        }
        Command::Status(args) => {
            init_tracing_quiet();
            std::process::exit(rollout_breaker::cli::operate::status(&args)?);
        }
        Command::Replay(args) => {
            init_tracing_quiet();
            std::process::exit(rollout_breaker::cli::replay::replay(&args)?);
        }
        Command::Console(args) => {
            let config = args.connection.resolve()?;
            init_tracing(config.log_format);
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let (addr, served) =
                    rollout_breaker::console::serve(config, args.listen, shutdown_signal()).await?;
                println!("console: http://{addr}/");
                served.await?;
                anyhow::Ok(())
            })?;
        }
        Command::Export(args) => {
            init_tracing_quiet();
            std::process::exit(rollout_breaker::cli::replay::export(&args)?);
        }
    }
    Ok(())
}

fn bench_quality(args: &QualityArgs) -> anyhow::Result<()> {
    use rollout_breaker::engine::stats::Rule;
    use rollout_breaker::quality;
    anyhow::ensure!(args.rate > 0.0, "--rate must be > 0, got {}", args.rate);
    anyhow::ensure!(args.rollouts > 0, "--rollouts must be > 0");
    let threshold = args
        .threshold_min_samples
        .iter()
        .map(|&min_samples| quality::RuleSetting {
            rule: Rule::Threshold,
            min_samples,
            detector_rollback_h: 0,
        });
    let statistical = quality::RuleSetting {
        rule: Rule::Statistical,
        min_samples: 10,
        detector_rollback_h: 0,
    };
    let detector_rollback =
        args.detector_rollback_arl_hours
            .iter()
            .map(|&h| quality::RuleSetting {
                detector_rollback_h: h,
                ..statistical
            });
    let rules: Vec<quality::RuleSetting> = match args.rule {
        RuleChoice::Threshold => threshold.collect(),
        RuleChoice::Statistical => [statistical].into_iter().chain(detector_rollback).collect(),
        RuleChoice::Both => threshold
            .chain([statistical])
            .chain(detector_rollback)
            .collect(),
    };
    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.threads
    };
    let cells = quality::run(&quality::Options {
        rollouts: args.rollouts,
        rate: args.rate,
        rules,
        seed: args.seed,
        threads,
        horizon_ms: args.horizon_min * 60_000,
        only: args.scenario.clone(),
        progress: true,
        warnings: args.warnings,
        warning_arl_hours: args.warning_arl_hours,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&cells)?);
    } else {
        print!("{}", quality::table(&cells));
        if args.warnings {
            println!();
            print!("{}", quality::warning_table(&cells));
        }
    }
    Ok(())
}
