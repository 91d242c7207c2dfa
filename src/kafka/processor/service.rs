//! The service around the loop: topic checks, HTTP endpoints, signals, the blocking thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tracing::info;

use super::error::ProcessorError;
use super::worker::Processor;
use crate::config::Config;
use crate::kafka::client::client_config;
use crate::observe::{self, Health};

/// Creates or checks the topics: decisions compacted, all three co-partitioned.
pub async fn ensure_topics(config: &Config) -> Result<(), ProcessorError> {
    use crate::kafka::admin::{self, TopicSpec};
    use rdkafka::admin::AdminClient;
    use rdkafka::client::DefaultClientContext;
    let t = &config.topics;
    let admin_client: AdminClient<DefaultClientContext> =
        client_config(&config.kafka, &[]).create()?;
    let spec = |name: &str| {
        TopicSpec::new(name, t.partitions).with_replication_factor(t.replication_factor)
    };
    let specs = vec![
        spec(&t.events),
        spec(&t.decisions).with_config("cleanup.policy", "compact"),
        spec(&t.commands),
        spec(&t.dead_letter),
    ];
    let timeout = Duration::from_secs(30);
    if t.create_missing {
        admin::ensure_topics(&admin_client, &specs, timeout).await?;
    }
    let cfg = config.clone();
    let counts =
        tokio::task::spawn_blocking(move || -> Result<Vec<(String, i32)>, ProcessorError> {
            let consumer: BaseConsumer =
                client_config(&cfg.kafka, &[("group.id", "rollout-breaker-admin")]).create()?;
            let t = &cfg.topics;
            let mut counts = Vec::new();
            for name in [&t.events, &t.decisions, &t.commands] {
                let n =
                    admin::partition_count(consumer.client(), name, timeout)?.ok_or_else(|| {
                        admin::AdminError::UnknownTopic {
                            topic: name.clone(),
                        }
                    })?;
                counts.push((name.clone(), n));
            }
            Ok(counts)
        })
        .await
        .expect("partition count task panicked")?;
    admin::check_co_partitioned(&counts)?;
    Ok(())
}

/// Runs the processor until `shutdown` completes: topics, HTTP endpoints, then the processing
/// loop on a blocking thread. Returns when the loop has committed its last batch.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ProcessorError> {
    ensure_topics(&config).await?;
    let health = Arc::new(Health::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    if let Some(addr) = config.http.listen {
        observe::serve_http(
            addr,
            health.clone(),
            Duration::from_millis(config.http.max_poll_gap_ms),
            async move {
                let _ = http_stop_rx.await;
            },
        )
        .await?;
    }
    // If this future is dropped (its task cancelled, its runtime shutting down), the loop on
    // the blocking thread must still stop, or the runtime would wait for it forever.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop_on_drop = StopOnDrop(stop.clone());
    let loop_stop = stop.clone();
    let loop_health = health.clone();
    let mut worker = tokio::task::spawn_blocking(move || {
        let processor = Processor::new(config, loop_health)?;
        processor.run(&loop_stop)
    });
    tokio::pin!(shutdown);
    let result = tokio::select! {
        r = &mut worker => r,
        () = &mut shutdown => {
            info!("Shutdown requested; finishing the batch in flight.");
            stop.store(true, Ordering::Relaxed);
            worker.await
        }
    };
    let _ = http_stop_tx.send(());
    result.expect("processor thread panicked")
}
