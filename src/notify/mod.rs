//! Notifications: published decisions posted to webhooks.
//!
//! ```toml
//! [[notify.webhooks]]
//! name = "ops-channel"
//! url = "https://hooks.example.com/rollouts"
//! actions = ["ROLLBACK"]          # empty or absent: every published decision
//! secret_env = "OPS_HOOK_KEY"     # signs each body: X-Rollout-Breaker-Signature: sha256=<hex>
//! ```
//!
//! A decision is offered to the webhooks once its transaction has committed, so a webhook
//! never hears of a decision that was aborted. Delivery is **at least once** while the
//! processor runs: an attempt that timed out may have arrived, and is sent again with the same
//! `Idempotency-Key` (`{rollout_id}:{sequence}`, also in the body) for the receiver to drop.
//! It is not durable: decisions still queued when the process dies are not sent after the
//! restart, and a webhook whose queue is full drops newer decisions; both are counted and
//! logged, and the decisions topic stays the record.
//!
//! # Layout
//!
//! - [`config`]: `[notify]` and `[[notify.webhooks]]` (always built: part of the config).
//! - `message`: the body, idempotency key, signature and retry timing (pure).
//! - `webhook`: the queues and delivery tasks ([`Notifier`], [`NotifyQueue`]).

pub mod config;
#[cfg(feature = "processor")]
pub mod message;
#[cfg(feature = "processor")]
mod webhook;

pub use config::{NotifyConfig, Secret, WebhookConfig};
#[cfg(feature = "processor")]
pub use webhook::{Notifier, NotifyError, NotifyQueue};
