//! `rollout-breaker export` and `replay` against a run the processor recorded on a real broker:
//! the replay agrees, from the topics and from an export; with an altered policy it reports
//! the first divergence and exits non-zero; the report holds SVG plots with the decision
//! markers.

mod common;

use std::time::Duration;

use common::cli::Cli;
use common::processor::*;
use rollout_breaker::engine::stats::Rule;
use rollout_breaker::engine::{Action, Policy};
use rollout_breaker::sim::Scenario;

/// The contents of every SVG `<text>` element in `html`, trimmed.
fn svg_texts(html: &str) -> Vec<String> {
    html.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            Some(body[..body.find("</text>")?].trim().to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_agrees_with_a_recorded_run_and_pins_the_first_divergence_of_another_policy() {
    let kafka = common::kafka().await;
    let mut config = config(&kafka.bootstrap, 2);
    config.policy = Policy {
        rule: Rule::Threshold,
        ..Policy::default()
    };
    let mut events = scenario_events(
        Scenario::automatic_rollback("rolled-back-agent"),
        &config.policy,
    );
    events.extend(scenario_events(
        Scenario::successful_rollout("promoted-agent"),
        &config.policy,
    ));
    events.sort_by_key(|e| e.timestamp);
    let expected = expected_decisions(&events, &config.policy);
    assert_eq!(
        expected["rolled-back-agent"].last().map(|d| d.action),
        Some(Action::Rollback)
    );
    let running = start_and_play(&kafka.bootstrap, &config, &events, &expected).await;
    let want = count(&expected);
    await_committed(&kafka.bootstrap, &config, Duration::from_secs(60)).await;
    running.stop().await;

    let cli = Cli::new(&config);
    let dir = cli.dir.path();
    let report = dir.join("report.html");
    let report_arg = report.to_str().unwrap();

    // From the topics: every rollout agrees, and the report plots them.
    let (code, out, err) = cli.run(&["replay", "--report", report_arg]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("rolled-back-agent: agrees"), "{out}");
    assert!(out.contains("promoted-agent: agrees"), "{out}");
    assert!(
        out.contains(&format!(
            "{want} recorded decisions in the span; {want} reproduced"
        )),
        "{out}"
    );
    let html = std::fs::read_to_string(&report).unwrap();
    let svgs: Vec<&str> = html.split("<svg").skip(1).collect();
    assert_eq!(svgs.len(), 2, "one plot per rollout");
    for svg in &svgs {
        let svg = &svg[..svg.find("</svg>").expect("closed svg")];
        assert!(
            svg.contains("<polyline") || svg.contains("<path"),
            "plots lines"
        );
        assert!(svg.contains("<text"), "labels");
    }
    let labels = svg_texts(&html);
    assert!(
        labels.iter().any(|l| l == "ROLLBACK (watchdog)"),
        "ROLLBACK marker: {labels:?}"
    );
    assert!(
        labels.iter().any(|l| l == "START (watchdog)"),
        "START marker"
    );
    assert!(html.contains("agrees ("), "verdict");

    // Offline, from an export: the same agreement.
    let export = dir.join("export");
    let export_arg = export.to_str().unwrap();
    let (code, out, err) = cli.run(&["export", "--out", export_arg]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = cli.run(&["replay", "--input", export_arg]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("rolled-back-agent: agrees"), "{out}");

    // Under a policy with other thresholds the run would have gone otherwise from some
    // decision on (reasons quote the thresholds); the in-memory engine says from which.
    let altered_text = "rule = \"threshold\"\nmax_latency_ms = 10000\nrollback_threshold = 0.5\n\
                        min_task_completion_rate = 0.5\n";
    let altered = dir.join("altered.toml");
    std::fs::write(&altered, altered_text).unwrap();
    let under_altered = expected_decisions(&events, &Policy::from_toml(altered_text).unwrap());
    let recorded = &expected["rolled-back-agent"];
    let other = &under_altered["rolled-back-agent"];
    let k = (0..recorded.len())
        .find(|&i| other.get(i) != Some(&recorded[i]))
        .expect("the altered policy changes a decision");
    let (code, out, err) = cli
        .run(&[
            "replay",
            "--input",
            export_arg,
            "--policy",
            altered.to_str().unwrap(),
            "--rollout",
            "rolled-back-agent",
            "--report",
            report_arg,
        ])
        .await;
    assert_eq!(code, 1, "{out}\n{err}");
    let first = recorded[k].sequence;
    assert!(
        out.contains(&format!("rolled-back-agent: DIVERGES at #{first}")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "recorded rolled-back-agent #{first} {}",
            recorded[k].action
        )),
        "{out}"
    );
    assert!(!out.contains("promoted-agent"), "--rollout selects: {out}");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains(&format!("diverges at #{first}")), "{html}");
    assert!(
        svg_texts(&html).iter().any(|l| l == "ROLLBACK (watchdog)"),
        "the recorded rollback is marked"
    );
}
