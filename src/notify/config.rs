//! `[notify]`: where decisions are posted, which ones, and how hard to try.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::engine::Action;

/// Notification settings: webhooks that receive published decisions.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// The webhooks; none by default.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookConfig>,
}

/// One endpoint that receives matching decisions as JSON `POST`s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Label in metrics (`webhook="..."`) and logs; unique among the webhooks.
    pub name: String,
    /// `http://` or `https://` URL the decisions are posted to.
    pub url: String,
    /// Actions posted (`START`, `ADVANCE`, `ROLLBACK`, `PAUSE`, `RESUME`, `RETIRE`); empty:
    /// every published decision.
    #[serde(default)]
    pub actions: Vec<Action>,
    /// Key of the HMAC-SHA256 signature of each body, sent as
    /// `X-Rollout-Breaker-Signature: sha256=<hex>`. Prefer `secret_env`: a secret in the file
    /// is printed redacted but still sits in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// Name of an environment variable holding the signing key (read at start; the processor
    /// refuses to start when it is unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// Decisions waiting for delivery to this webhook. When the queue is full (the endpoint
    /// is slower than the decisions come, or down), newer decisions are dropped and counted
    /// rather than slowing the processor.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Time allowed for one attempt (connect, send, answer), in ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts per decision, the first included, before the delivery counts as failed.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait before the second attempt, in ms; doubled before each further one.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Longest wait between two attempts, in ms.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

/// A thousand decisions is hours of phase changes for hundreds of rollouts: only an endpoint
/// that is down for long drops anything.
const fn default_queue_capacity() -> usize {
    1_000
}
/// Slack and most chat/incident webhooks answer in well under a second; 5 s leaves room for
/// a slow one without holding its queue long.
const fn default_timeout_ms() -> u64 {
    5_000
}
/// With the backoff below, five attempts span about 7.5 s plus the attempts themselves:
/// enough for a restarting endpoint, short enough to keep the queue moving.
const fn default_max_attempts() -> u32 {
    5
}
const fn default_initial_backoff_ms() -> u64 {
    500
}
const fn default_max_backoff_ms() -> u64 {
    30_000
}

impl WebhookConfig {
    /// A webhook posting every published decision to `url`, with the default timeout and
    /// retries.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            actions: Vec::new(),
            secret: None,
            secret_env: None,
            queue_capacity: default_queue_capacity(),
            timeout_ms: default_timeout_ms(),
            max_attempts: default_max_attempts(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
        }
    }

    /// Whether decisions with `action` are posted to this webhook.
    pub fn wants(&self, action: Action) -> bool {
        action != Action::Maintain && (self.actions.is_empty() || self.actions.contains(&action))
    }
}

/// A signing key. Printed (`Debug`, and `check-config` through `Serialize`) as
/// `<redacted>`, so the effective configuration can be shown without it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
    /// The key's bytes.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// Longest accepted attempt timeout and backoff, in ms (an hour: beyond that a queue of
/// decisions is stale news).
const MAX_MS: u64 = 3_600_000;

impl NotifyConfig {
    /// Checks every webhook; the error names the field as `notify.webhooks[i].field`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, w) in self.webhooks.iter().enumerate() {
            let field = |f: &str| format!("notify.webhooks[{i}].{f}");
            if w.name.trim().is_empty() {
                return Err((field("name"), "must not be empty".into()));
            }
            if self.webhooks[..i].iter().any(|o| o.name == w.name) {
                return Err((
                    field("name"),
                    format!("`{}` is the name of another webhook", w.name),
                ));
            }
            let rest = w
                .url
                .strip_prefix("https://")
                .or_else(|| w.url.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                return Err((
                    field("url"),
                    format!(
                        "must be an http:// or https:// URL with a host, got `{}`",
                        w.url
                    ),
                ));
            }
            if w.actions.contains(&Action::Maintain) {
                return Err((
                    field("actions"),
                    "MAINTAIN is never published; allowed: START, ADVANCE, ROLLBACK, PAUSE, \
                     RESUME, RETIRE"
                        .into(),
                ));
            }
            if w.secret.is_some() && w.secret_env.is_some() {
                return Err((
                    field("secret"),
                    "set `secret` or `secret_env`, not both".into(),
                ));
            }
            if w.secret.as_ref().is_some_and(|s| s.0.is_empty())
                || w.secret_env.as_ref().is_some_and(|s| s.trim().is_empty())
            {
                return Err((field("secret"), "must not be empty".into()));
            }
            if !(1..=1_000_000).contains(&w.queue_capacity) {
                return Err((
                    field("queue_capacity"),
                    format!("must be in [1, 1000000], got {}", w.queue_capacity),
                ));
            }
            if !(1..=MAX_MS).contains(&w.timeout_ms) {
                return Err((
                    field("timeout_ms"),
                    format!("must be in [1, {MAX_MS}], got {}", w.timeout_ms),
                ));
            }
            if !(1..=100).contains(&w.max_attempts) {
                return Err((
                    field("max_attempts"),
                    format!("must be in [1, 100], got {}", w.max_attempts),
                ));
            }
            if w.initial_backoff_ms > w.max_backoff_ms || w.max_backoff_ms > MAX_MS {
                return Err((
                    field("initial_backoff_ms"),
                    format!(
                        "must satisfy initial_backoff_ms <= max_backoff_ms <= {MAX_MS}, got {} and {}",
                        w.initial_backoff_ms, w.max_backoff_ms
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NotifyConfig, String> {
        let c: NotifyConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map_err(|(f, m)| format!("{f}: {m}"))?;
        Ok(c)
    }

    #[test]
    fn a_webhook_with_defaults_and_a_filter() {
        let c = parse(
            "[[webhooks]]\nname = \"ops\"\nurl = \"https://hooks.example.com/x\"\n\
             actions = [\"ROLLBACK\"]\nsecret_env = \"HOOK_KEY\"\n",
        )
        .unwrap();
        let w = &c.webhooks[0];
        assert_eq!(
            (w.timeout_ms, w.max_attempts, w.queue_capacity),
            (5_000, 5, 1_000)
        );
        assert!(w.wants(Action::Rollback));
        assert!(!w.wants(Action::Advance));
        assert!(WebhookConfig::new("all", "http://h").wants(Action::Retire));
        assert!(!WebhookConfig::new("all", "http://h").wants(Action::Maintain));
        // Early warnings are decisions like any other: sent by default, or when listed.
        assert!(WebhookConfig::new("all", "http://h").wants(Action::Warning));
        let c = parse(
            "[[webhooks]]\nname = \"pager\"\nurl = \"https://hooks.example.com/p\"\n\
             actions = [\"WARNING\", \"ROLLBACK\"]\n",
        )
        .unwrap();
        assert!(c.webhooks[0].wants(Action::Warning));
        assert!(!c.webhooks[0].wants(Action::Start));
    }

    #[test]
    fn errors_name_the_webhook_field() {
        let cases = [
            ("url = \"ftp://h\"", "notify.webhooks[0].url"),
            (
                "url = \"http://h\"\nactions = [\"MAINTAIN\"]",
                "webhooks[0].actions",
            ),
            (
                "url = \"http://h\"\nmax_attempts = 0",
                "webhooks[0].max_attempts",
            ),
            (
                "url = \"http://h\"\nsecret = \"k\"\nsecret_env = \"K\"",
                "webhooks[0].secret",
            ),
            (
                "url = \"http://h\"\ninitial_backoff_ms = 9\nmax_backoff_ms = 1",
                "initial_backoff_ms",
            ),
        ];
        for (body, field) in cases {
            let e = parse(&format!("[[webhooks]]\nname = \"a\"\n{body}\n")).unwrap_err();
            assert!(e.contains(field), "{body}: {e}");
        }
        let e = parse(
            "[[webhooks]]\nname = \"a\"\nurl = \"http://h\"\n[[webhooks]]\nname = \"a\"\nurl = \"http://h\"\n",
        )
        .unwrap_err();
        assert!(e.contains("webhooks[1].name"), "{e}");
    }

    #[test]
    fn secrets_are_never_printed() {
        let mut w = WebhookConfig::new("a", "http://h");
        w.secret = Some(Secret::new("hunter2"));
        assert!(!format!("{w:?}").contains("hunter2"));
        let c = NotifyConfig { webhooks: vec![w] };
        let text = toml::to_string(&c).unwrap();
        assert!(
            !text.contains("hunter2") && text.contains("<redacted>"),
            "{text}"
        );
    }
}
