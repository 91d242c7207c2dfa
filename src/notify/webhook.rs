//! The delivery side: one bounded queue and one task per webhook, fed after each transaction
//! commits, never waited on by the processing loop.
//!
//! The loop calls [`NotifyQueue::offer`], which only tries to enqueue (a full queue drops the
//! decision and counts it), so a slow or dead endpoint can neither block the loop nor delay a
//! commit. Each webhook's task posts its decisions in order, each with up to `max_attempts`
//! attempts, `timeout_ms` each, and exponential backoff between them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;

use super::config::{NotifyConfig, WebhookConfig};
use super::message::{self, IDEMPOTENCY_HEADER, SIGNATURE_HEADER};
use crate::engine::Decision;
use crate::observe::{WebhookDelivered, WebhookDropped, WebhookFailed, WebhookRetried};

/// A webhook that cannot be set up. Not retryable: the configuration or the environment
/// must change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// `secret_env` names an environment variable that is not set (or is empty).
    #[error("notify.webhooks `{webhook}`: environment variable {var} (secret_env) is not set")]
    SecretEnvMissing {
        /// The webhook's name.
        webhook: String,
        /// The variable.
        var: String,
    },
    /// The URL does not parse.
    #[error("notify.webhooks `{webhook}`: url `{url}`: {message}")]
    InvalidUrl {
        /// The webhook's name.
        webhook: String,
        /// The URL as configured.
        url: String,
        /// Why it does not parse.
        message: String,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("notify.webhooks `{webhook}`: HTTP client: {message}")]
    Client {
        /// The webhook's name.
        webhook: String,
        /// The client's error.
        message: String,
    },
}

/// One webhook's end of the queue, held by the processing loop.
struct Queue {
    name: Arc<str>,
    config: WebhookConfig,
    tx: mpsc::Sender<Arc<Decision>>,
    /// Set while decisions are being dropped, so only the first drop of a run warns.
    dropping: AtomicBool,
}

/// The processing loop's handle on the notification queues: cheap to clone, and a no-op
/// when no webhook is configured (the default).
#[derive(Clone, Default)]
pub struct NotifyQueue {
    queues: Arc<[Queue]>,
}

impl NotifyQueue {
    /// Hands a committed decision to every webhook that wants its action. Never waits: a
    /// webhook whose queue is full drops it (counted in
    /// `rollout_breaker_webhook_dropped_total`).
    pub fn offer(&self, d: &Decision) {
        let mut shared: Option<Arc<Decision>> = None;
        for q in self.queues.iter().filter(|q| q.config.wants(d.action)) {
            let d = shared.get_or_insert_with(|| Arc::new(d.clone())).clone();
            match q.tx.try_send(d) {
                Ok(()) => q.dropping.store(false, Ordering::Relaxed),
                Err(TrySendError::Full(d) | TrySendError::Closed(d)) => {
                    let first = !q.dropping.swap(true, Ordering::Relaxed);
                    WebhookDropped {
                        webhook: &q.name,
                        decision: &d,
                        first,
                    }
                    .emit();
                }
            }
        }
    }

    /// Whether any webhook is configured.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }
}

/// The running webhook tasks. Start with [`Notifier::start`] inside a tokio runtime, hand
/// [`Notifier::queue`] to the processor, and call [`Notifier::shutdown`] when it stopped.
pub struct Notifier {
    queue: NotifyQueue,
    tasks: Vec<JoinHandle<()>>,
}

impl Notifier {
    /// Builds one HTTP client, queue and task per webhook of `config` (none: nothing runs).
    /// Must be called within a tokio runtime.
    pub fn start(config: &NotifyConfig) -> Result<Self, NotifyError> {
        if !config.webhooks.is_empty() {
            // reqwest is built without a default TLS provider; rustls on ring is ours. Fails
            // only when the embedding application already installed one, which then serves.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        for w in &config.webhooks {
            let endpoint = Endpoint::new(w)?;
            let (tx, rx) = mpsc::channel(w.queue_capacity);
            let name: Arc<str> = Arc::from(w.name.as_str());
            WebhookDelivered::register(&name);
            tasks.push(tokio::spawn(endpoint.run(rx)));
            queues.push(Queue {
                name,
                config: w.clone(),
                tx,
                dropping: AtomicBool::new(false),
            });
        }
        Ok(Self {
            queue: NotifyQueue {
                queues: queues.into(),
            },
            tasks,
        })
    }

    /// The handle the processing loop offers committed decisions to.
    pub fn queue(&self) -> NotifyQueue {
        self.queue.clone()
    }

    /// Stops taking decisions and lets the tasks finish what is queued, for at most `grace`;
    /// deliveries still pending then are abandoned (and logged). Every other
    /// [`NotifyQueue`] clone must be dropped first, or the tasks wait for it until `grace`.
    pub async fn shutdown(self, grace: Duration) {
        let Self { queue, tasks } = self;
        drop(queue);
        let mut all = futures::future::join_all(tasks);
        if tokio::time::timeout(grace, &mut all).await.is_err() {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "Webhook deliveries still pending at shutdown are abandoned."
            );
        }
    }
}

/// One webhook's delivery task state.
struct Endpoint {
    name: Arc<str>,
    url: reqwest::Url,
    client: reqwest::Client,
    key: Option<Vec<u8>>,
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl Endpoint {
    fn new(w: &WebhookConfig) -> Result<Self, NotifyError> {
        let key = match (&w.secret, &w.secret_env) {
            (Some(s), _) => Some(s.expose().to_vec()),
            (None, Some(var)) => Some(
                std::env::var(var)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| NotifyError::SecretEnvMissing {
                        webhook: w.name.clone(),
                        var: var.clone(),
                    })?
                    .into_bytes(),
            ),
            (None, None) => None,
        };
        let url = reqwest::Url::parse(&w.url).map_err(|e| NotifyError::InvalidUrl {
            webhook: w.name.clone(),
            url: w.url.clone(),
            message: e.to_string(),
        })?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(w.timeout_ms))
            .user_agent(concat!("rollout-breaker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::Client {
                webhook: w.name.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            name: Arc::from(w.name.as_str()),
            url,
            client,
            key,
            max_attempts: w.max_attempts,
            initial_backoff: Duration::from_millis(w.initial_backoff_ms),
            max_backoff: Duration::from_millis(w.max_backoff_ms),
        })
    }

    async fn run(self, mut rx: mpsc::Receiver<Arc<Decision>>) {
        while let Some(d) = rx.recv().await {
            self.deliver(&d).await;
        }
    }

    /// Posts `d` until an answer is a success, a refusal that repeating cannot change, or
    /// the attempts are spent.
    async fn deliver(&self, d: &Decision) {
        let body = message::body(d);
        let key = message::idempotency_key(d);
        let signature = self.key.as_deref().map(|k| message::signature(k, &body));
        let mut last_error = String::new();
        for attempt in 1..=self.max_attempts {
            if attempt > 1 {
                WebhookRetried {
                    webhook: &self.name,
                    key: &key,
                    attempt,
                    error: &last_error,
                }
                .emit();
                tokio::time::sleep(message::backoff(
                    self.initial_backoff,
                    self.max_backoff,
                    attempt,
                ))
                .await;
            }
            let mut request = self
                .client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(IDEMPOTENCY_HEADER, &key)
                .body(body.clone());
            if let Some(s) = &signature {
                request = request.header(SIGNATURE_HEADER, s);
            }
            match request.send().await {
                Ok(answer) if answer.status().is_success() => {
                    WebhookDelivered {
                        webhook: &self.name,
                        key: &key,
                        attempts: attempt,
                    }
                    .emit();
                    return;
                }
                Ok(answer) => {
                    let status = answer.status();
                    last_error = format!("HTTP {status}");
                    if !message::retryable_status(status.as_u16()) {
                        break;
                    }
                }
                Err(e) => last_error = error_chain(&e),
            }
        }
        WebhookFailed {
            webhook: &self.name,
            key: &key,
            error: &last_error,
        }
        .emit();
    }
}

/// An error and its causes on one line (reqwest's own message omits the cause: "error
/// sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
