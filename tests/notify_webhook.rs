//! Webhook notifications on a real broker, against HTTP endpoints this test serves itself:
//! a signed endpoint that answers at once, one that fails twice before it succeeds, and
//! endpoints that never answer. A file of its own: the Prometheus recorder is process-wide.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use common::http::{free_addr, wait_for};
use common::processor::*;
use rollout_breaker::codec::{self, Encoding};
use rollout_breaker::engine::stats::Rule;
use rollout_breaker::engine::{Action, Decision, Policy};
use rollout_breaker::notify::{Secret, WebhookConfig};
use rollout_breaker::sim::Scenario;

/// One request a test endpoint received.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

/// Requests per path, in arrival order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<BTreeMap<String, Vec<Received>>>>);

impl Log {
    fn get(&self, path: &str) -> Vec<Received> {
        self.0
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .unwrap_or_default()
    }
}

/// `/ok` answers 204, `/flaky` answers 503 to its first two requests and 200 afterwards,
/// any other path (`/dead`, `/stalled`) never answers.
async fn serve_endpoints(log: Log) -> SocketAddr {
    async fn hook(
        State(log): State<Log>,
        Path(path): Path<String>,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        let seen = {
            let mut all = log.0.lock().unwrap();
            let list = all.entry(path.clone()).or_default();
            list.push(Received { headers, body });
            list.len()
        };
        match path.as_str() {
            "ok" => StatusCode::NO_CONTENT,
            "flaky" if seen <= 2 => StatusCode::SERVICE_UNAVAILABLE,
            "flaky" => StatusCode::OK,
            _ => std::future::pending().await,
        }
    }
    let app = Router::new().route("/{path}", post(hook)).with_state(log);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// `name{webhook="hook"}`'s value in a Prometheus text scrape.
fn metric(scrape: &str, name: &str, hook: &str) -> Option<f64> {
    let prefix = format!("{name}{{webhook=\"{hook}\"}} ");
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_decisions_are_posted_signed_retried_and_never_wait_for_a_dead_endpoint() {
    let kafka = common::kafka().await;
    let log = Log::default();
    let hooks = serve_endpoints(log.clone()).await;
    let mut config = config(&kafka.bootstrap, 2);
    let metrics_addr = free_addr();
    config.http.listen = Some(metrics_addr);
    config.policy = Policy {
        rule: Rule::Threshold,
        ..Policy::default()
    };
    let url = |path: &str| format!("http://{hooks}/{path}");
    let mut signed = WebhookConfig::new("signed", url("ok"));
    signed.secret = Some(Secret::new("test-signing-key"));
    let mut flaky = WebhookConfig::new("flaky", url("flaky"));
    flaky.actions = vec![Action::Rollback];
    flaky.initial_backoff_ms = 50;
    // Never answers, and times out fast: every attempt fails, every delivery counts as failed.
    let mut dead = WebhookConfig::new("dead", url("dead"));
    dead.timeout_ms = 300;
    dead.max_attempts = 2;
    dead.initial_backoff_ms = 50;
    // Never answers, and waits a minute: its first delivery is still outstanding while the
    // processor decides and commits everything after it; its one-place queue drops the rest.
    let mut stalled = WebhookConfig::new("stalled", url("stalled"));
    stalled.timeout_ms = 60_000;
    stalled.max_attempts = 1;
    stalled.queue_capacity = 1;
    config.notify.webhooks = vec![signed, flaky, dead, stalled];
    config.validate().unwrap();

    let events = scenario_events(Scenario::automatic_rollback("hooked"), &config.policy);
    let expected = expected_decisions(&events, &config.policy);
    let n = count(&expected);
    assert_eq!(
        expected["hooked"].last().map(|d| d.action),
        Some(Action::Rollback)
    );
    assert!(n >= 3, "{expected:?}");

    let running = start(&config);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let producer = producer(&kafka.bootstrap);
    produce_events(&producer, &config.topics.events, &events, Encoding::Json).await;
    let got = await_decisions(&kafka.bootstrap, &config, n, Duration::from_secs(60)).await;
    assert_eq!(got, expected);
    await_committed(&kafka.bootstrap, &config, Duration::from_secs(60)).await;
    // Every decision and every input offset is committed while the stalled endpoint still
    // holds the first request it was sent: the loop never waited for a delivery.
    let stalled_now = wait_for(metrics_addr, "/metrics", Duration::from_secs(30), |_, b| {
        metric(b, "rollout_breaker_webhook_dropped_total", "stalled") >= Some(1.0)
    })
    .await
    .expect("metrics")
    .1;
    assert_eq!(
        metric(
            &stalled_now,
            "rollout_breaker_webhook_failed_total",
            "stalled"
        ),
        Some(0.0),
        "the stalled endpoint's first delivery is still outstanding"
    );
    let dropped = metric(
        &stalled_now,
        "rollout_breaker_webhook_dropped_total",
        "stalled",
    );
    // One decision in flight, at most one queued, the rest dropped.
    assert!(
        dropped == Some((n - 1) as f64) || dropped == Some((n - 2) as f64),
        "dropped {dropped:?} of {n}"
    );

    // The failing endpoints settle: flaky succeeds on its third attempt, dead fails each.
    let scrape = wait_for(metrics_addr, "/metrics", Duration::from_secs(30), |_, b| {
        metric(b, "rollout_breaker_webhook_sent_total", "flaky") == Some(1.0)
            && metric(b, "rollout_breaker_webhook_failed_total", "dead") == Some(n as f64)
            && metric(b, "rollout_breaker_webhook_sent_total", "signed") == Some(n as f64)
    })
    .await
    .expect("metrics")
    .1;
    // The stalled endpoint's one request has arrived (it may trail the metrics a little).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while log.get("stalled").is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await;
    let m = |name: &str, hook: &str| metric(&scrape, name, hook);
    assert_eq!(
        m("rollout_breaker_webhook_sent_total", "signed"),
        Some(n as f64)
    );
    assert_eq!(
        m("rollout_breaker_webhook_retries_total", "signed"),
        Some(0.0)
    );
    assert_eq!(
        m("rollout_breaker_webhook_failed_total", "flaky"),
        Some(0.0)
    );
    assert_eq!(
        m("rollout_breaker_webhook_retries_total", "flaky"),
        Some(2.0)
    );
    assert_eq!(m("rollout_breaker_webhook_sent_total", "dead"), Some(0.0));
    assert_eq!(
        m("rollout_breaker_webhook_retries_total", "dead"),
        Some(n as f64)
    );
    assert_eq!(
        m("rollout_breaker_webhook_dropped_total", "dead"),
        Some(0.0)
    );

    // The signed endpoint got each decision once, in order, as committed, with a valid
    // HMAC-SHA256 of the exact body and the idempotency key in header and body.
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"test-signing-key");
    let received = log.get("ok");
    assert_eq!(received.len(), n);
    let mut posted: Vec<Decision> = Vec::new();
    for r in &received {
        let signature = header(r, "x-rollout-breaker-signature");
        let hex = signature.strip_prefix("sha256=").expect("sha256= prefix");
        let tag: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        ring::hmac::verify(&key, &r.body, &tag).expect("signature verifies");
        assert_eq!(header(r, "content-type"), "application/json");
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let d = codec::decode_decision(
            &serde_json::to_vec(&body["decision"]).unwrap(),
            Encoding::Json,
        )
        .unwrap();
        let want_key = format!("{}:{}", d.rollout_id, d.sequence);
        assert_eq!(header(r, "idempotency-key"), want_key);
        assert_eq!(body["idempotency_key"], want_key.as_str());
        posted.push(d);
    }
    assert_eq!(posted, expected["hooked"]);

    // Flaky: only the ROLLBACK, three attempts with one key, one of them answered 200.
    let flaky = log.get("flaky");
    assert_eq!(flaky.len(), 3);
    let rollback = expected["hooked"].last().unwrap();
    for r in &flaky {
        assert_eq!(
            header(r, "idempotency-key"),
            format!("hooked:{}", rollback.sequence)
        );
        assert_eq!(header(r, "x-rollout-breaker-signature"), "");
        assert_eq!(r.body, flaky[0].body);
    }
    // `dead` was tried twice per decision; `stalled` was sent its first decision only.
    assert_eq!(log.get("dead").len(), 2 * n);
    assert_eq!(log.get("stalled").len(), 1);
}
