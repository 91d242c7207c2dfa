use anyhow::Context;
use clap::Parser;
use rollout_breaker::cli::{Cli, Command};
use rollout_breaker::engine::Policy;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
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
        Command::Demo => {
            println!("demo: not yet available (see the demo issue)");
        }
    }
    Ok(())
}
