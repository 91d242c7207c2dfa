//! `rollout-breaker rollout …` and `status` against a real broker and a running processor:
//! each command's effect, the recorded actor and reason, each refusal with its reason, and the
//! exit codes.

mod common;

use std::time::Duration;

use common::cli::Cli;
use common::processor::*;
use rollout_breaker::codec::Encoding;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_command_rollouts_and_read_their_status() {
    let kafka = common::kafka().await;
    let config = config(&kafka.bootstrap, 2);
    rollout_breaker::kafka::processor::ensure_topics(&config)
        .await
        .unwrap();
    let processor = start(&config);
    let id = "cli-checkout";
    let now = now_epoch_ms();
    let event = baseline_event(id, now);
    produce_events(
        &producer(&kafka.bootstrap),
        &config.topics.events,
        &[event],
        Encoding::Json,
    )
    .await;
    await_decisions(&kafka.bootstrap, &config, 1, Duration::from_secs(60)).await;
    let cli = Cli::new(&config);

    let (code, out, err) = cli
        .run(&[
            "rollout",
            "pause",
            id,
            "--actor",
            "ana",
            "--reason",
            "look closer",
        ])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("PAUSE") && out.contains("by ana") && out.contains("look closer"),
        "{out}"
    );

    let (code, out, err) = cli.run(&["rollout", "resume", id, "--actor", "ana"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("RESUME"), "{out}");

    let (code, out, err) = cli.run(&["rollout", "promote", id, "--actor", "bo"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ADVANCE PROBE -> SMALL"), "{out}");

    // Refusals, each with the processor's reason and exit code 2.
    let (code, _, err) = cli
        .run(&["rollout", "pause", "cli-nobody", "--actor", "ana"])
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("refused_command") && err.contains("unknown"),
        "{err}"
    );
    let (code, _, err) = cli.run(&["rollout", "retry", id]).await;
    assert_eq!(code, 2, "retry while not rolled back: {err}");
    for _ in 0..2 {
        let (code, out, err) = cli.run(&["rollout", "promote", id]).await;
        assert_eq!(code, 0, "{out}{err}");
    }
    let (code, _, err) = cli.run(&["rollout", "promote", id]).await;
    assert_eq!(code, 2, "promote at FULL: {err}");
    assert!(err.contains("FULL"), "{err}");

    // Usage errors never reach the topic.
    let (code, _, err) = cli.run(&["rollout", "abort", id]).await;
    assert_ne!(code, 0);
    assert!(err.contains("--reason"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "rollback_threshold = 0.99\n").unwrap();
    let (code, _, err) = cli
        .run(&[
            "rollout",
            "start",
            "cli-new",
            "--policy",
            bad.to_str().unwrap(),
        ])
        .await;
    assert_ne!(code, 0);
    assert!(err.contains("rollback_threshold"), "{err}");

    // Abort, status, retry, abort, retire.
    let (code, out, err) = cli
        .run(&[
            "rollout",
            "abort",
            id,
            "--actor",
            "ana",
            "--reason",
            "error budget",
        ])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ROLLBACK FULL -> OFF"), "{out}");
    let (code, out, _) = cli.run(&["status", id]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("OPEN") && out.contains("error budget"),
        "{out}"
    );
    let (code, out, _) = cli.run(&["status", "--json"]).await;
    assert_eq!(code, 0);
    let all: Vec<rollout_breaker::engine::Decision> = serde_json::from_str(&out).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].actor, "ana");
    let (code, out, err) = cli.run(&["rollout", "retry", id, "--actor", "ana"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("START OFF -> PROBE"), "{out}");
    let (code, _, _) = cli
        .run(&["rollout", "abort", id, "--reason", "done testing"])
        .await;
    assert_eq!(code, 0);
    let (code, out, err) = cli.run(&["rollout", "retire", id]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("retired"), "{out}");
    let (code, out, _) = cli.run(&["status", id]).await;
    assert_eq!(code, 1, "a retired rollout is gone: {out}");
    processor.stop().await;
}
