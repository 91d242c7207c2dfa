//! [`GuardedAgent`]: calls the baseline or the candidate per request, as the router says, and
//! reports every call as an execution event (the seed's `DoerAgent(enable_circuit_breaker=True)`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::emitter::EventSink;
use crate::engine::{EventTime, ExecutionEvent, LatencyMs, Variant};
use crate::router::Router;

/// The outcome of one guarded call.
#[derive(Debug, Clone, PartialEq)]
pub struct Guarded<T, E> {
    /// What the called version returned.
    pub result: Result<T, E>,
    /// Which side served the request.
    pub version_used: Variant,
    /// The version label of that side.
    pub version_label: String,
    /// How long the call took, in milliseconds.
    pub latency_ms: f64,
}

/// An agent with two versions behind a circuit breaker: each request goes to the candidate or
/// the baseline as the [`Router`] says (sticky per request key), and each call is reported to
/// an [`EventSink`] (success = `Ok`, latency = wall time of the call, timestamp = the wall
/// clock when it finished). Reporting never blocks the call; a dropped event is counted by the
/// sink. A call that never finishes — its future dropped by a timeout or a cancelled request,
/// or its code panicking — is reported as a **failure** (with `extra["cancelled"] = 1`), so a
/// candidate that hangs cannot look healthy by going silent.
pub struct GuardedAgent {
    rollout_id: String,
    router: Arc<dyn Router>,
    sink: Arc<dyn EventSink>,
    baseline_version: String,
    candidate_version: String,
    segment: Option<String>,
    region: Option<String>,
}

impl std::fmt::Debug for GuardedAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedAgent")
            .field("rollout_id", &self.rollout_id)
            .field("baseline_version", &self.baseline_version)
            .field("candidate_version", &self.candidate_version)
            .finish_non_exhaustive()
    }
}

impl GuardedAgent {
    /// An agent for `rollout_id`, routing with `router` and reporting to `sink`.
    pub fn new(
        rollout_id: impl Into<String>,
        router: Arc<dyn Router>,
        sink: Arc<dyn EventSink>,
        baseline_version: impl Into<String>,
        candidate_version: impl Into<String>,
    ) -> Self {
        Self {
            rollout_id: rollout_id.into(),
            router,
            sink,
            baseline_version: baseline_version.into(),
            candidate_version: candidate_version.into(),
            segment: None,
            region: None,
        }
    }

    /// The same agent serving one user segment: requests are routed by that segment's scope
    /// (when the rollout's policy names it) and reported with it.
    pub fn with_segment(mut self, segment: impl Into<String>) -> Self {
        self.segment = Some(segment.into());
        self
    }

    /// The same agent deployed in one region: requests are routed by that region's scope
    /// (when the rollout's policy lists it in a wave) and reported with it.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// The rollout this agent reports to.
    pub fn rollout_id(&self) -> &str {
        &self.rollout_id
    }

    /// The side that serves `request_key` now.
    pub fn choose(&self, request_key: &str) -> Variant {
        if self.router.should_use_new_version_scoped(
            &self.rollout_id,
            request_key,
            self.segment.as_deref(),
            self.region.as_deref(),
        ) {
            Variant::Candidate
        } else {
            Variant::Baseline
        }
    }

    /// The version label of a side.
    pub fn version_label(&self, variant: Variant) -> &str {
        match variant {
            Variant::Baseline => &self.baseline_version,
            Variant::Candidate => &self.candidate_version,
        }
    }

    /// Calls `f` with the side chosen for `request_key`, times it and reports it (`Ok` is a
    /// success). If the returned future is dropped before it completes (a timeout, a cancelled
    /// request) or `f` panics, the call is reported as a failure.
    pub async fn call<F, Fut, T, E>(&self, request_key: &str, f: F) -> Guarded<T, E>
    where
        F: FnOnce(Variant) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_judged(request_key, f, |r| r.is_ok()).await
    }

    /// Like [`call`](Self::call), with `success` deciding what counts as a completed task
    /// (e.g. an `Ok` answer that failed validation).
    pub async fn call_judged<F, Fut, T, E>(
        &self,
        request_key: &str,
        f: F,
        success: impl FnOnce(&Result<T, E>) -> bool,
    ) -> Guarded<T, E>
    where
        F: FnOnce(Variant) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let variant = self.choose(request_key);
        let started = Instant::now();
        let mut unfinished = Unfinished {
            agent: self,
            variant,
            request_key,
            started,
            armed: true,
        };
        let result = f(variant).await;
        unfinished.armed = false;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let label = self.version_label(variant).to_owned();
        self.report(variant, request_key, success(&result), latency_ms, false);
        Guarded {
            result,
            version_used: variant,
            version_label: label,
            latency_ms,
        }
    }
}

impl GuardedAgent {
    fn report(
        &self,
        variant: Variant,
        request_key: &str,
        success: bool,
        latency_ms: f64,
        cancelled: bool,
    ) {
        let mut event = ExecutionEvent::new(
            self.rollout_id.clone(),
            variant,
            success,
            LatencyMs::new(latency_ms).unwrap_or(LatencyMs::new(0.0).expect("0 is a latency")),
            now_ms(),
        );
        event.version = self.version_label(variant).into();
        event.request_key = Some(request_key.into());
        event.segment.clone_from(&self.segment);
        event.region.clone_from(&self.region);
        if cancelled {
            event.extra.insert("cancelled".to_owned(), 1.0);
        }
        // Counted and logged by the sink; a lost report must not fail the request.
        let _ = self.sink.emit(&event);
    }
}

/// Reports a call that never finished (its future dropped, or its code panicked) as a failure.
struct Unfinished<'a> {
    agent: &'a GuardedAgent,
    variant: Variant,
    request_key: &'a str,
    started: Instant,
    armed: bool,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if self.armed {
            let latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
            self.agent
                .report(self.variant, self.request_key, false, latency_ms, true);
        }
    }
}

/// The wall clock in ms since the epoch (the shell's clock; the engine never reads one).
fn now_ms() -> EventTime {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as EventTime)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::agent::EmitError;
    use crate::engine::splitter;
    use crate::engine::TrafficPercent;

    struct Split(TrafficPercent);
    impl Router for Split {
        fn should_use_new_version(&self, rollout_id: &str, key: &str) -> bool {
            splitter::serves_candidate(rollout_id, key, self.0)
        }
    }

    #[derive(Default)]
    struct Sink(Mutex<Vec<ExecutionEvent>>);
    impl EventSink for Sink {
        fn emit(&self, event: &ExecutionEvent) -> Result<(), EmitError> {
            self.0.lock().unwrap().push(event.clone());
            Ok(())
        }
    }

    #[tokio::test]
    async fn routes_times_and_reports_each_call() {
        let sink = Arc::new(Sink::default());
        let agent = GuardedAgent::new(
            "checkout",
            Arc::new(Split(TrafficPercent::new(20.0).unwrap())),
            sink.clone(),
            "v1",
            "v2",
        );
        let mut candidates = 0;
        for i in 0..200 {
            let key = format!("user-{i}");
            let g = agent
                .call(&key, |v| async move {
                    if v == Variant::Candidate {
                        Err("boom")
                    } else {
                        Ok(1)
                    }
                })
                .await;
            assert_eq!(g.version_used, agent.choose(&key));
            assert_eq!(g.version_label, agent.version_label(g.version_used));
            assert_eq!(g.result.is_err(), g.version_used == Variant::Candidate);
            assert!(g.latency_ms >= 0.0);
            candidates += usize::from(g.version_used == Variant::Candidate);
        }
        let events = sink.0.lock().unwrap();
        assert_eq!(events.len(), 200);
        assert!((20..=70).contains(&candidates), "{candidates}");
        for e in events.iter() {
            assert_eq!(e.rollout_id, "checkout");
            assert_eq!(e.success, e.variant == Variant::Baseline);
            assert_eq!(e.version, if e.success { "v1" } else { "v2" });
            assert!(e.request_key.is_some());
            assert!(e.timestamp > crate::codec::MIN_TIMESTAMP_MS);
        }
    }

    /// A router that serves the candidate only in region `eu` (as a rollout in its first wave).
    struct EuOnly;
    impl Router for EuOnly {
        fn should_use_new_version(&self, _: &str, _: &str) -> bool {
            false
        }
        fn should_use_new_version_scoped(
            &self,
            _: &str,
            _: &str,
            _: Option<&str>,
            region: Option<&str>,
        ) -> bool {
            region == Some("eu")
        }
    }

    #[tokio::test]
    async fn a_scoped_agent_routes_and_reports_its_segment_and_region() {
        let sink = Arc::new(Sink::default());
        let new =
            |sink: Arc<Sink>| GuardedAgent::new("checkout", Arc::new(EuOnly), sink, "v1", "v2");
        let eu = new(sink.clone())
            .with_segment("enterprise")
            .with_region("eu");
        let us = new(sink.clone()).with_region("us");
        assert_eq!(eu.choose("k"), Variant::Candidate);
        assert_eq!(us.choose("k"), Variant::Baseline);
        let _ = eu.call("k", |_| async { Ok::<_, ()>(()) }).await;
        let _ = us.call("k", |_| async { Ok::<_, ()>(()) }).await;
        let events = sink.0.lock().unwrap();
        assert_eq!(
            (
                events[0].segment.as_deref(),
                events[0].region.as_deref(),
                events[0].variant
            ),
            (Some("enterprise"), Some("eu"), Variant::Candidate)
        );
        assert_eq!(
            (
                events[1].segment.as_deref(),
                events[1].region.as_deref(),
                events[1].variant
            ),
            (None, Some("us"), Variant::Baseline)
        );
    }

    #[tokio::test]
    async fn a_call_cut_short_by_a_timeout_is_reported_as_a_failure() {
        let sink = Arc::new(Sink::default());
        let agent = GuardedAgent::new(
            "checkout",
            Arc::new(Split(TrafficPercent::FULL)),
            sink.clone(),
            "v1",
            "v2",
        );
        let hang = agent.call("user-1", |_| async {
            tokio::time::sleep(std::time::Duration::from_secs(3_600)).await;
            Ok::<_, ()>(())
        });
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(20), hang).await;
        assert!(timed_out.is_err());
        let events = sink.0.lock().unwrap();
        assert_eq!(events.len(), 1, "the cancelled call is reported");
        let e = &events[0];
        assert!(!e.success);
        assert_eq!(e.variant, Variant::Candidate);
        assert_eq!(e.extra.get("cancelled"), Some(&1.0));
        assert!(e.latency.get() >= 15.0, "{:?}", e.latency);
    }
}
