//! Running the `rollout-breaker` binary with a processor config, as an operator would.
#![allow(dead_code)]

use std::process::Command as Proc;

/// The binary with a config file written for it.
pub struct Cli {
    /// The config file the binary is given.
    pub config_path: std::path::PathBuf,
    /// Holds the config file (and whatever a test puts beside it).
    pub dir: tempfile::TempDir,
}

impl Cli {
    /// Writes `config` to a fresh temporary directory.
    pub fn new(config: &rollout_breaker::config::Config) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("processor.toml");
        std::fs::write(&config_path, toml::to_string(config).unwrap()).unwrap();
        Self { config_path, dir }
    }

    /// Runs the binary off the async executor; returns (exit code, stdout, stderr).
    pub async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = Proc::new(env!("CARGO_BIN_EXE_rollout-breaker"));
        cmd.args(args)
            .arg("--config")
            .arg(&self.config_path)
            .env_remove("ROLLOUT_BREAKER_CONFIG");
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}
