//! `rollout-breaker console`: a read-only web page that follows the decisions topic and shows
//! every rollout live (phase, traffic, breaker, last reason) and each one's decision timeline.
//!
//! A thread follows the decisions topic (`read_committed`, from the beginning, as routers
//! read it) into an in-memory table; `GET /api/rollouts` answers it as JSON; `GET /` serves one
//! static page (`page.html`, plain HTML, CSS and a few lines of JavaScript: no build
//! toolchain) that shows the table as it stood when the page was served and refreshes it from
//! the JSON endpoint every two seconds. Nothing here writes to Kafka or takes input beyond GET
//! requests; a tombstone (RETIRE) drops the rollout from the page.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;
use tracing::{info, warn};

use crate::codec;
use crate::config::Config;
use crate::engine::Decision;
use crate::kafka::client::reader_config;

const PAGE: &str = include_str!("page.html");

/// What the console knows: every rollout's decisions, in the order they were published.
#[derive(Debug, Default)]
struct Table {
    rollouts: BTreeMap<String, Vec<Decision>>,
    records: u64,
    error: Option<String>,
}

/// One decision as the page shows it.
#[derive(Debug, Clone, Serialize)]
struct DecisionView<'a> {
    sequence: u64,
    action: &'static str,
    from: String,
    to: String,
    traffic_percent: f64,
    breaker: &'static str,
    paused: bool,
    at: String,
    actor: &'a str,
    reason: &'a str,
}

impl<'a> From<&'a Decision> for DecisionView<'a> {
    fn from(d: &'a Decision) -> Self {
        Self {
            sequence: d.sequence,
            action: d.action.name(),
            from: d.from.to_string(),
            to: d.to.to_string(),
            traffic_percent: d.traffic.percent(),
            breaker: d.breaker.name(),
            paused: d.paused,
            at: crate::replay::report::rfc3339(d.at),
            actor: &d.actor,
            reason: &d.reason,
        }
    }
}

/// `GET /api/rollouts`.
#[derive(Debug, Serialize)]
struct Snapshot<'a> {
    topic: &'a str,
    records_read: u64,
    error: Option<&'a str>,
    rollouts: Vec<RolloutView<'a>>,
}

#[derive(Debug, Serialize)]
struct RolloutView<'a> {
    /// The row's key: the rollout id, or `ROLLOUT#segment=S#region=R` for one of its scopes.
    rollout_id: &'a str,
    /// The scope's segment and region (absent for a rollout's own row).
    #[serde(skip_serializing_if = "Option::is_none")]
    segment: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<&'a str>,
    /// The latest decision (phase, traffic, breaker, since, last action and reason).
    current: DecisionView<'a>,
    /// Every decision, oldest first.
    decisions: Vec<DecisionView<'a>>,
}

#[derive(Clone)]
struct Shared {
    table: Arc<Mutex<Table>>,
    topic: Arc<str>,
}

impl Shared {
    fn snapshot_json(&self) -> String {
        let table = self.table.lock().expect("console table");
        let snapshot = Snapshot {
            topic: &self.topic,
            records_read: table.records,
            error: table.error.as_deref(),
            rollouts: table
                .rollouts
                .iter()
                .filter_map(|(id, ds)| {
                    let last = ds.last()?;
                    Some(RolloutView {
                        rollout_id: id,
                        segment: last.scope.segment.as_deref(),
                        region: last.scope.region.as_deref(),
                        current: ds.last()?.into(),
                        decisions: ds.iter().map(DecisionView::from).collect(),
                    })
                })
                .collect(),
        };
        serde_json::to_string(&snapshot).expect("the snapshot serializes")
    }
}

/// Follows the decisions topic into `table` until `stop` is set.
fn follow(config: &Config, shared: &Shared, stop: &AtomicBool) -> Result<(), KafkaError> {
    let t = &config.topics;
    let consumer: BaseConsumer =
        reader_config(&config.kafka, &format!("{}-console", config.kafka.group_id)).create()?;
    let partitions = loop {
        match crate::kafka::admin::partition_count(
            consumer.client(),
            &t.decisions,
            Duration::from_secs(10),
        ) {
            Ok(Some(n)) => break n,
            Ok(None) | Err(_) if stop.load(Ordering::Relaxed) => return Ok(()),
            Ok(None) => warn!(topic = %t.decisions, "Decisions topic not found yet; waiting."),
            Err(e) => {
                warn!(topic = %t.decisions, error = %e, "Cannot read the decisions topic's metadata; retrying.")
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(&t.decisions, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    info!(topic = %t.decisions, partitions, "Console following the decisions topic.");
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                let decision = m.payload().map(|b| {
                    codec::decode_decision(b, t.decisions_encoding)
                        .or_else(|_| codec::decode_decision_any(b))
                });
                let mut table = shared.table.lock().expect("console table");
                table.records += 1;
                table.error = None;
                match decision {
                    // A tombstone: the rollout was retired.
                    None => {
                        table.rollouts.remove(&key);
                    }
                    Some(Ok(d)) => {
                        let ds = table.rollouts.entry(key).or_default();
                        // A retired id that started again counts from 1 anew.
                        if ds.last().is_some_and(|last| last.sequence >= d.sequence) {
                            ds.clear();
                        }
                        ds.push(d);
                    }
                    Some(Err(e)) => {
                        warn!(partition = m.partition(), offset = m.offset(), error = %e, "Undecodable decision record skipped.");
                    }
                }
            }
            Some(Err(e)) => {
                warn!(error = %e, "Reading the decisions topic failed; retrying.");
                shared.table.lock().expect("console table").error = Some(e.to_string());
            }
            None => {}
        }
    }
    Ok(())
}

/// Serves the console on `listen` until `shutdown` completes; returns the bound address once
/// listening. The follower thread stops with it.
pub async fn serve(
    config: Config,
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let shared = Shared {
        table: Arc::new(Mutex::new(Table::default())),
        topic: Arc::from(config.topics.decisions.as_str()),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let follower = std::thread::spawn({
        let (shared, stop) = (shared.clone(), stop.clone());
        move || {
            if let Err(e) = follow(&config, &shared, &stop) {
                warn!(error = %e, "The console stopped following the decisions topic.");
                shared.table.lock().expect("console table").error = Some(e.to_string());
            }
        }
    });
    let app = Router::new()
        .route(
            "/",
            get(|State(s): State<Shared>| async move {
                // The page opens with the table as it stands (the JSON endpoint's answer,
                // inlined), then refreshes from the endpoint. `</` cannot end the script.
                Html(PAGE.replace("/*SNAPSHOT*/null", &s.snapshot_json().replace("</", "<\\/")))
            }),
        )
        .route(
            "/api/rollouts",
            get(|State(s): State<Shared>| async move {
                (
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    s.snapshot_json(),
                )
                    .into_response()
            }),
        )
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    info!(%local, "Console listening.");
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            warn!(error = %e, "Console listener failed.");
        }
        stop.store(true, Ordering::Relaxed);
        let _ = tokio::task::spawn_blocking(move || follower.join()).await;
    });
    Ok((local, task))
}
