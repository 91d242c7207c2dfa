//! Command-line interface of the `rollout-breaker` binary.

use clap::{Parser, Subcommand};

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
    /// Check a policy file (TOML or JSON) and print it with every default filled in.
    CheckPolicy {
        /// Path to the policy file.
        path: std::path::PathBuf,
    },
    /// Run the seed's scenarios in-process and print the decisions.
    Demo,
}
