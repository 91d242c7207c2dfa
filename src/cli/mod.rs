//! Command-line interface of the `rollout-breaker` binary. Flags override the config file;
//! every flag can also be given as a `ROLLOUT_BREAKER_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub mod operate;
pub mod replay;

use crate::config::{Config, ConfigError, LogFormat};

/// Metric-driven circuit breaker for progressive rollouts of AI agents, on Apache Kafka.
#[derive(Debug, Parser)]
#[command(name = "rollout-breaker", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the processor: consume events and commands, publish decisions.
    Run(RunArgs),
    /// Replay the events and commands topics through the engine and check every decision in
    /// the decisions topic against the replay. Exits non-zero on any difference.
    Audit(RunArgs),
    /// Check a policy file (TOML or JSON) and print it with every default filled in.
    CheckPolicy {
        /// Path to the policy file.
        path: PathBuf,
    },
    /// Check a processor config file and print it with every default filled in.
    CheckConfig {
        /// Path to the config file.
        path: PathBuf,
    },
    /// Play the seed's two scenarios end to end (in-process broker, processor, router and a
    /// simulated fleet) and print what happened.
    Demo {
        /// Use this Kafka cluster instead of the in-process mock broker.
        #[arg(long)]
        brokers: Option<String>,
        /// Simulated seconds per wall-clock second. Routers follow the published decisions, so
        /// on a busy machine a lower speed keeps the reference scenarios on their paths.
        #[arg(long, default_value_t = crate::demo::DEFAULT_SPEED, value_parser = positive_speed)]
        speed: f64,
    },
    /// Run a simulated fleet of agents against a real broker: events follow the live
    /// decision table, as production traffic would.
    Simulate(SimulateArgs),
    /// Benchmarks that need no broker.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Command a rollout: the command goes to the commands topic (partitioned like the events),
    /// then the decision it caused, or the processor's refusal, is printed. Exit code 0 when
    /// applied, 2 when refused, 3 when nothing came back in time.
    Rollout(RolloutArgs),
    /// Where every rollout stands (phase, traffic, breaker, since when, last action), read from
    /// the decisions topic as routers read it.
    Status(StatusArgs),
    /// Re-run the engine over the recorded events and commands (the topics, or an export) and
    /// compare with the recorded decisions: agreement or the first divergence per rollout,
    /// optionally an HTML report with plots. Exit code 0 when everything agrees, 1 on a
    /// divergence (or an error).
    Replay(ReplayArgs),
    /// Write the events and decisions topics to JSON Lines files (raw record bytes), for
    /// `replay --input` away from the cluster.
    Export(ExportArgs),
    /// Serve a read-only web page that follows the decisions topic: every rollout's phase,
    /// traffic, breaker and last reason, and its decision timeline (JSON at /api/rollouts).
    Console(ConsoleArgs),
}

/// `console` flags.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Address to serve the page on.
    #[arg(
        long,
        default_value = "127.0.0.1:9465",
        env = "ROLLOUT_BREAKER_CONSOLE_LISTEN"
    )]
    pub listen: SocketAddr,
    /// Connection and topics (the processor's config).
    #[command(flatten)]
    pub connection: RunArgs,
}

/// `replay` flags.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Read an export directory (`rollout-breaker export --out DIR`) instead of the topics.
    #[arg(long, value_name = "DIR")]
    pub input: Option<PathBuf>,
    /// Compare and plot decisions from this time on (RFC 3339, e.g. 2026-11-27T14:00:00Z,
    /// or ms since the epoch). The engine always re-runs from the start of the input.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Compare and plot decisions up to this time (RFC 3339 or ms since the epoch).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Only this rollout.
    #[arg(long)]
    pub rollout: Option<String>,
    /// Re-run with this default policy (TOML or JSON) instead of the config's: what would
    /// have been decided under it (rollouts whose START carried a policy keep theirs).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Write a self-contained HTML report with a timeline plot per rollout.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Connection and topics (the processor's config).
    #[command(flatten)]
    pub connection: RunArgs,
}

/// `export` flags.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Directory to write `events.jsonl`, `decisions.jsonl` and `meta.json` to.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Only records stamped from this time on (RFC 3339 or ms since the epoch). A replay
    /// re-runs the engine from the first exported record: leave it out to replay exactly.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Only records stamped up to this time (RFC 3339 or ms since the epoch).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Connection and topics (the processor's config).
    #[command(flatten)]
    pub connection: RunArgs,
}

/// What an operator can ask of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RolloutAction {
    /// Begin (or begin again from OFF), optionally with its own policy and version labels.
    Start,
    /// Freeze automatic decisions; traffic stays where it is.
    Pause,
    /// Unfreeze automatic decisions.
    Resume,
    /// Move up one phase now.
    Promote,
    /// Trip the breaker now: back to OFF (needs --reason).
    Abort,
    /// Start again from the first phase after a rollback (a fix shipped).
    Retry,
    /// Forget a finished rollout (at OFF or FULL): routers drop it.
    Retire,
}

/// `rollout` flags.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// What to do.
    #[arg(value_enum)]
    pub action: RolloutAction,
    /// The rollout id.
    pub rollout: String,
    /// Why (recorded in the decision; required for abort).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Who asks (recorded in the decision); defaults to the OS user.
    #[arg(long)]
    pub actor: Option<String>,
    /// For start: the rollout's own policy (TOML or JSON file).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// For start: the candidate's version label.
    #[arg(long)]
    pub candidate_version: Option<String>,
    /// For start: the baseline's version label.
    #[arg(long)]
    pub baseline_version: Option<String>,
    /// Address one segment's scopes only (with --region: one scope) of a rollout whose policy
    /// names segments; not with start or retire.
    #[arg(long)]
    pub segment: Option<String>,
    /// Address one region's scopes only (e.g. pause the EU wave) of a rollout whose policy
    /// lists regions; not with start or retire.
    #[arg(long)]
    pub region: Option<String>,
    /// Send the command and return without waiting for its outcome.
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds to wait for the outcome.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Connection and topics (the processor's config).
    #[command(flatten)]
    pub connection: RunArgs,
}

/// `status` flags.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this rollout.
    pub rollout: Option<String>,
    /// JSON (one array of decisions) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Refresh every N seconds until interrupted.
    #[arg(long, value_name = "SECONDS")]
    pub watch: Option<u64>,
    /// Connection and topics (the processor's config).
    #[command(flatten)]
    pub connection: RunArgs,
}

/// `bench` subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Decision quality: simulated rollouts through the pure engine (no Kafka); false
    /// rollbacks, missed degradations, bad requests served, time to rollback and to FULL.
    Quality(QualityArgs),
}

/// Which decision rules `bench quality` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuleChoice {
    /// The seed's absolute thresholds.
    Threshold,
    /// The anytime-valid comparison with the baseline.
    Statistical,
    /// Both, side by side.
    Both,
}

/// `bench quality` flags.
#[derive(Debug, Args)]
pub struct QualityArgs {
    /// Simulated rollouts per scenario and rule.
    #[arg(long, default_value_t = 1000)]
    pub rollouts: usize,
    /// Requests per second, both versions together.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Decision rule(s) to simulate.
    #[arg(long, value_enum, default_value_t = RuleChoice::Both)]
    pub rule: RuleChoice,
    /// `min_samples_per_phase` of the threshold rule; several (`10,50`) simulate one threshold
    /// rule per value.
    #[arg(long, value_delimiter = ',', default_value = "10")]
    pub threshold_min_samples: Vec<u32>,
    /// Seed of the simulation (same seed, same table).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Simulated minutes after which a rollout that is neither FULL nor rolled back stops.
    #[arg(long, default_value_t = 30)]
    pub horizon_min: i64,
    /// Only scenarios whose name contains this (repeatable).
    #[arg(long)]
    pub scenario: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Early warning: also simulate its scenarios (slow drift, degradations late in SMALL) and
    /// print a second table (false warnings, lead time before the rollback, exposure).
    #[arg(long)]
    pub warnings: bool,
    /// `statistical.warning_arl_hours` of the simulated statistical policies (default: the
    /// policy's default).
    #[arg(long)]
    pub warning_arl_hours: Option<f64>,
    /// Also simulate the statistical rule with its change detector rolling back, at the level
    /// of this average run length in hours (repeatable: `24,1000`).
    #[arg(long, value_delimiter = ',')]
    pub detector_rollback_arl_hours: Vec<u32>,
}

/// `simulate` flags.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// `bootstrap.servers`.
    #[arg(
        long,
        env = "ROLLOUT_BREAKER_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:19092"
    )]
    pub brokers: String,
    /// Events topic to produce to.
    #[arg(long, default_value = "rollout-events")]
    pub events_topic: String,
    /// Decisions topic to follow.
    #[arg(long, default_value = "rollout-decisions")]
    pub decisions_topic: String,
    /// Scenario file (TOML, `[[scenario]]` tables with the fields of `sim::Scenario`), or one
    /// of the built-in names: `good`, `degrade-at-small`, `sudden`, `creep`, `flapping`, and
    /// `segments-regions` (six scenarios of one rollout in two region waves and two segments,
    /// for a processor or rollout running `deploy/config/policies/segments-regions.toml`).
    #[arg(long, default_value = "good")]
    pub scenario: String,
    /// Rollout id for a built-in scenario.
    #[arg(long, default_value = "sim-rollout")]
    pub rollout: String,
    /// Requests per second (simulated time) for a built-in scenario.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Simulated seconds per wall-clock second (1 = real time).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Simulated duration in seconds for a built-in scenario.
    #[arg(long, default_value_t = 300)]
    pub duration: i64,
    /// Candidate success rate for built-in scenarios (before any degradation).
    #[arg(long, default_value_t = 0.99)]
    pub success_rate: f64,
    /// Candidate mean latency in ms for built-in scenarios (before any degradation).
    #[arg(long, default_value_t = 1200.0)]
    pub latency_ms: f64,
}

/// `run` flags.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Config file (TOML). Without it, defaults apply.
    #[arg(long, env = "ROLLOUT_BREAKER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Overrides `kafka.bootstrap_servers`.
    #[arg(long, env = "ROLLOUT_BREAKER_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,
    /// Overrides `kafka.group_id`.
    #[arg(long, env = "ROLLOUT_BREAKER_GROUP_ID")]
    pub group_id: Option<String>,
    /// Overrides `kafka.instance_id` (stable per instance).
    #[arg(long, env = "ROLLOUT_BREAKER_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Overrides `http.listen`; `off` disables the listener.
    #[arg(long, env = "ROLLOUT_BREAKER_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// Overrides `log_format` (`text` or `json`).
    #[arg(long, env = "ROLLOUT_BREAKER_LOG_FORMAT")]
    pub log_format: Option<String>,
}

impl RunArgs {
    /// The config file (or defaults) with the flags applied, validated.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(v) = &self.bootstrap_servers {
            config.kafka.bootstrap_servers.clone_from(v);
        }
        if let Some(v) = &self.group_id {
            config.kafka.group_id.clone_from(v);
        }
        if let Some(v) = &self.instance_id {
            config.kafka.instance_id.clone_from(v);
        }
        if let Some(v) = &self.http_listen {
            config.http.listen = if v == "off" {
                None
            } else {
                Some(v.parse::<SocketAddr>().map_err(|e| ConfigError::Invalid {
                    field: "http.listen",
                    message: format!("must be host:port or `off`, got `{v}`: {e}"),
                })?)
            };
        }
        if let Some(v) = &self.log_format {
            config.log_format = match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError::Invalid {
                        field: "log_format",
                        message: format!("must be `text` or `json`, got `{v}`"),
                    })
                }
            };
        }
        config.validate()?;
        Ok(config)
    }
}

/// `--speed`: a finite number above 0.
fn positive_speed(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("must be a number above 0, got {text:?}")),
    }
}
