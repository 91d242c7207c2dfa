//! The web console and the replay report in headless Chromium (Debian's `chromium`, which
//! `scripts/test` installs when missing), against a real broker with a promoted and a
//! rolled-back rollout: what the console page shows, and that the report's SVG renders with
//! its ROLLBACK marker. Screenshots stay in `target/tmp/` (their paths are printed).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command as Proc, Stdio};
use std::time::Duration;

use common::cli::Cli;
use common::http::{free_addr, wait_for};
use common::processor::*;
use rollout_breaker::engine::stats::Rule;
use rollout_breaker::engine::{Action, Phase, Policy};
use rollout_breaker::sim::Scenario;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Headless Chromium on `url` with a fresh profile, plus `args` (`--dump-dom`,
/// `--screenshot=...`); returns its stdout.
fn chromium(url: &str, args: &[String]) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "this test needs {CHROMIUM} (Debian package `chromium`): run it through `scripts/test`, \
         which installs it when missing, or `apt-get install chromium`"
    );
    let profile = tempfile::tempdir().unwrap();
    let out = Proc::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,1100",
            // Lets the page's scripts run (and its fetches answer) before the dump.
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Takes a screenshot of `url` into `target/tmp/NAME.png`, checks it is a non-empty PNG, and
/// prints its path.
fn screenshot(url: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&path);
    chromium(url, &[format!("--screenshot={}", path.display())]);
    let png = std::fs::read(&path).expect("screenshot written");
    assert!(
        png.len() > 1_000 && png.starts_with(b"\x89PNG"),
        "{} is not a PNG",
        path.display()
    );
    println!("screenshot: {}", path.display());
    path
}

/// The text of the elements of `dom` that carry `attr="..."` (rows, sections), tags
/// stripped and entities decoded.
fn elements_with(dom: &str, attr: &str) -> Vec<String> {
    dom.split(&format!("{attr}=\""))
        .skip(1)
        .map(|rest| {
            // Past the opening tag's end.
            let rest = &rest[rest.find('>').map_or(0, |i| i + 1)..];
            let end = rest
                .find("</tr>")
                .or(rest.find("</section>"))
                .unwrap_or(rest.len());
            let mut text = String::new();
            let mut in_tag = false;
            for c in rest[..end].chars() {
                match c {
                    '<' => in_tag = true,
                    '>' => {
                        in_tag = false;
                        text.push(' ');
                    }
                    c if !in_tag => text.push(c),
                    _ => {}
                }
            }
            text.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .replace("&gt;", ">")
                .replace("&lt;", "<")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&amp;", "&")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_and_the_replay_report_render_in_headless_chromium() {
    let kafka = common::kafka().await;
    let mut config = config(&kafka.bootstrap, 2);
    config.policy = Policy {
        rule: Rule::Threshold,
        ..Policy::default()
    };
    let mut events = scenario_events(Scenario::automatic_rollback("search-agent"), &config.policy);
    events.extend(scenario_events(
        Scenario::successful_rollout("checkout-agent"),
        &config.policy,
    ));
    events.sort_by_key(|e| e.timestamp);
    let expected = expected_decisions(&events, &config.policy);
    let rollback = expected["search-agent"].last().unwrap().clone();
    assert_eq!(
        (rollback.action, rollback.to),
        (Action::Rollback, Phase::Off)
    );
    assert_eq!(expected["checkout-agent"].last().unwrap().to, Phase::Full);
    let running = start_and_play(&kafka.bootstrap, &config, &events, &expected).await;
    running.stop().await;

    // The console, as an operator starts it.
    let cli = Cli::new(&config);
    let addr: SocketAddr = free_addr();
    let mut console = Proc::new(env!("CARGO_BIN_EXE_rollout-breaker"))
        .args(["console", "--listen", &addr.to_string(), "--config"])
        .arg(&cli.config_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("console starts");
    let api = wait_for(
        addr,
        "/api/rollouts",
        Duration::from_secs(30),
        |status, body| {
            status == 200 && body.matches("\"sequence\"").count() >= 2 * count(&expected)
        },
    )
    .await;
    let url = format!("http://{addr}/");
    let result = std::panic::catch_unwind(|| {
        let (status, body) = api.expect("the console answers");
        assert_eq!(status, 200);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["rollouts"].as_array().unwrap().len(), 2, "{json}");

        let dom = chromium(&url, &["--dump-dom".to_owned()]);
        let rows = elements_with(&dom, "data-rollout");
        let row = |id: &str| {
            rows.iter()
                .find(|r| r.starts_with(id))
                .unwrap_or_else(|| panic!("no row for {id} in {rows:?}"))
                .clone()
        };
        let search = row("search-agent");
        assert!(
            search.starts_with("search-agent OFF 0% OPEN no"),
            "{search}"
        );
        assert!(search.contains("ROLLBACK watchdog"), "{search}");
        assert!(search.contains(&rollback.reason), "{search}");
        let checkout = row("checkout-agent");
        assert!(
            checkout.starts_with("checkout-agent FULL 100% CLOSED no"),
            "{checkout}"
        );
        // Each rollout's timeline lists its decisions in order.
        let timeline = rows
            .iter()
            .find(|r| r.starts_with("search-agent — timeline"))
            .expect("search-agent's timeline");
        let actions: Vec<&str> = ["START", "ADVANCE", "ROLLBACK"]
            .into_iter()
            .filter(|a| timeline.contains(a))
            .collect();
        assert_eq!(actions, ["START", "ADVANCE", "ROLLBACK"], "{timeline}");
        assert!(timeline.find("START") < timeline.find("ROLLBACK"));
        assert!(dom.contains("decision records read"), "status line");
        screenshot(&url, "console");
    });
    console.kill().expect("console stopped");
    let _ = console.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }

    // The replay report of the seed's scenario 2 in the same run, in Chromium.
    let report = cli.dir.path().join("report.html");
    let (code, out, err) = cli
        .run(&[
            "replay",
            "--rollout",
            "search-agent",
            "--report",
            report.to_str().unwrap(),
        ])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let url = format!("file://{}", report.display());
    let dom = chromium(&url, &["--dump-dom".to_owned()]);
    assert!(dom.contains("search-agent — <span class=\"ok\">agrees (3 decisions)"));
    assert_eq!(dom.matches("<svg").count(), 1, "the one rollout's plot");
    let svg = &dom[dom.find("<svg").unwrap()..];
    assert!(
        svg.contains("<polyline") && svg.contains("<text"),
        "non-empty SVG"
    );
    assert!(
        dom.split("<text")
            .any(|t| t.contains(">ROLLBACK (watchdog)") || t.contains(">\nROLLBACK (watchdog)")),
        "the ROLLBACK marker"
    );
    screenshot(&url, "replay-report");
}
