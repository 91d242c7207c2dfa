use anyhow::Context;
use clap::Parser;
use rollout_breaker::cli::{Cli, Command};
use rollout_breaker::config::{Config, LogFormat};
use rollout_breaker::engine::Policy;
use tracing_subscriber::EnvFilter;

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
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
            rt.block_on(rollout_breaker::kafka::processor::run(config, shutdown_signal()))?;
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
        Command::Demo => {
            println!("demo: not yet available (see the demo issue)");
        }
    }
    Ok(())
}
