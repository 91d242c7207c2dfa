//! # rollout-breaker
//!
//! A metric-driven circuit breaker for progressive rollouts of AI agents, on Apache Kafka.
//! Agents report execution events; the processor aggregates them per rollout and variant over
//! event-time windows, decides ADVANCE / MAINTAIN / ROLLBACK, and publishes phase changes
//! (OFF 0 % → PROBE 1 % → SMALL 5 % → MEDIUM 20 % → FULL 100 %) to a compacted decisions topic
//! that routers read as a table to split traffic by a sticky hash.
//!
//! # Layout
//!
//! - [`engine`]: the pure core (sans-IO). Policy, windows (with an inline latency histogram
//!   per bucket), watchdog, rollout state machine, scopes (segments and regions: a breaker per
//!   scope, region waves, blast radius) and splitter. No tokio, no rdkafka, no clock: time comes from the events.
//! - [`controller`]: the seed's embedded, single-process API (`Controller`) with JSON state
//!   persistence, for use without Kafka.
//! - [`codec`]: Avro (single-object and Confluent framing) and JSON encodings of the records
//!   in `schemas/*.avsc`, with typed decode errors.
//! - [`console`]: the read-only web console (`rollout-breaker console`): follows the
//!   decisions topic, serves a page and its JSON endpoint.
//! - [`config`]: the processor's configuration (TOML, env, flags) and its validation.
//! - [`input`]: what the processor, the restore and the audit take from the input topics:
//!   record admission (size, key, partition, decoding, clock bound), and why commands are
//!   relayed into the events topic. Pure, decided once for all three.
//! - [`kafka`]: the shell around the engine: topic admin, the processor (loop, rebalance,
//!   transaction, dead letters, service), restore, audit, reading a partition to its end,
//!   and what operators do from a terminal (`operate`: send a command, read the status).
//! - [`replay`]: re-running the engine over recorded input (the topics or exported JSONL) and
//!   comparing with the recorded decisions, for `audit` and `replay`; export; the HTML report.
//! - [`router`]: the decision table request routers read (follows the decisions topic; sticky
//!   split; a row per scope; serves the baseline when loading, stale or the rollout or scope
//!   is unknown).
//! - [`agent`]: the agent side: a batching execution-event emitter and `GuardedAgent`, which
//!   picks the version per request through a router and reports each call.
//! - [`notify`]: webhooks that receive published decisions after their transaction commits
//!   (config always; the queues and delivery tasks with `processor`).
//! - [`observe`]: metric names, log-and-count events, health, `/metrics` `/healthz` `/readyz`.
//! - [`sim`]: seeded traffic scenarios (the seed's two, and custom ones) for tests, benches,
//!   `simulate` and `demo`.
//! - [`fleet`]: a simulated fleet of agents that plays scenarios against a live decision table
//!   (`simulate`, `demo`); [`demo`]: the one-command, in-process demo.
//! - `quality` (hidden, serves the binary): the decision-quality simulator behind
//!   `rollout-breaker bench quality`.
//! - [`cli`]: argument parsing for the `rollout-breaker` binary (`src/main.rs` stays thin),
//!   and the operator commands' terminal output (`rollout`, `status`, `replay`, `export`).
//!
//! # Features
//!
//! `default` = `processor` + `cli`. `client` alone builds what a router or an agent needs —
//! [`router`], [`agent`], [`codec`], [`engine`], [`config`], [`input`] — without clap, axum,
//! the Prometheus exporter or the processor (`kafka`, `observe`, `controller`, `sim`,
//! `fleet`, `demo`, `replay`, `console`, and `notify`'s delivery, which need `processor`; `cli` needs `cli`).
//! `tls` links librdkafka with OpenSSL (`SSL`, `SASL_SSL`, SCRAM); without it a TLS
//! `security.protocol` is refused by the config's validation, saying how to build with it.
#![warn(missing_docs)]
// The layout above names every module; without the default features some are not built.
#![cfg_attr(not(feature = "cli"), allow(rustdoc::broken_intra_doc_links))]

pub mod agent;
#[cfg(feature = "cli")]
pub mod cli;
pub mod codec;
pub mod config;
#[cfg(feature = "processor")]
pub mod console;
#[cfg(feature = "processor")]
pub mod controller;
#[cfg(feature = "processor")]
pub mod demo;
pub mod engine;
#[cfg(feature = "processor")]
pub mod fleet;
pub mod input;
#[cfg(feature = "processor")]
pub mod kafka;
pub mod notify;
#[cfg(feature = "processor")]
pub mod observe;
#[cfg(feature = "processor")]
#[doc(hidden)]
pub mod quality;
#[cfg(feature = "processor")]
pub mod replay;
pub mod router;
#[cfg(feature = "processor")]
pub mod sim;
