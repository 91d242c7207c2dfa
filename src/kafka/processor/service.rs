//! The service around the loop: HTTP endpoints, topic checks (retried while the cluster cannot
//! be reached), signals, the blocking thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::producer::{BaseProducer, Producer};
use tracing::{info, warn};

use super::context::{BrokerWatch, WatchedContext};
use super::error::ProcessorError;
use super::worker::Processor;
use crate::config::Config;
use crate::kafka::admin::{self, TopicSpec, TopicWarning};
use crate::kafka::client::{client_config, DropInBackground};
use crate::kafka::retry;
use crate::notify::Notifier;
use crate::observe::{
    self, BrokerConnected, BrokerUnreachable, Health, TopicCheckSkipped, TopicCheckWarning,
};

/// Creates or checks the topics: events and commands created with broker timestamps
/// (`LogAppendTime`), decisions compacted, all three co-partitioned. An existing decisions
/// topic that is not compacted is an error; an events topic whose retention is shorter than
/// the restore look-back, and events or commands topics stamped with producers' clocks
/// (`CreateTime`), are warnings: they are logged and returned.
pub async fn ensure_topics(config: &Config) -> Result<Vec<TopicWarning>, ProcessorError> {
    ensure_topics_watched(
        config,
        BrokerWatch {
            health: Arc::new(Health::default()),
            bootstrap: config.kafka.bootstrap_servers.clone(),
        },
    )
    .await
}

/// What a restore reads back from the events topic with the default policy, in ms of record
/// time (see [`crate::kafka::restore`]).
pub fn restore_look_back_ms(config: &Config) -> u64 {
    let p = &config.policy;
    p.monitoring_window_ms
        + p.evaluation_interval_ms
        + 2 * p.allowed_lateness_ms
        + config.processing.restore_slack_ms
        + config.processing.max_clock_skew_ms
}

async fn ensure_topics_watched(
    config: &Config,
    watch: BrokerWatch,
) -> Result<Vec<TopicWarning>, ProcessorError> {
    let t = &config.topics;
    let admin_client: Arc<AdminClient<WatchedContext>> = Arc::new(
        client_config(&config.kafka, &[]).create_with_context(WatchedContext(watch.clone()))?,
    );
    let spec = |name: &str| {
        TopicSpec::new(name, t.partitions).with_replication_factor(t.replication_factor)
    };
    // Broker timestamps give every record a time no producer's clock can move.
    let broker_time = ("message.timestamp.type", "LogAppendTime");
    let specs = vec![
        spec(&t.events).with_config(broker_time.0, broker_time.1),
        spec(&t.decisions).with_config("cleanup.policy", "compact"),
        spec(&t.commands).with_config(broker_time.0, broker_time.1),
        spec(&t.dead_letter),
    ];
    let timeout = Duration::from_secs(30);
    if t.create_missing {
        admin::ensure_topics(&admin_client, &specs, timeout).await?;
    }
    // Partition counts (metadata, a blocking call on the admin client's connection; once the
    // partitions have leaders) and the topics' configurations are asked for at the same time.
    let counts = tokio::task::spawn_blocking({
        let (admin_client, t) = (admin_client.clone(), t.clone());
        move || -> Result<Vec<(String, i32)>, ProcessorError> {
            let mut counts = Vec::new();
            for name in [&t.events, &t.decisions, &t.commands] {
                // Led partitions: the restores that follow ask for leaders at once.
                let n = admin::partition_count_led(
                    admin_client.inner(),
                    name,
                    timeout,
                    Duration::from_secs(5),
                )?
                .ok_or_else(|| admin::AdminError::UnknownTopic {
                    topic: name.clone(),
                })?;
                counts.push((name.clone(), n));
            }
            Ok(counts)
        }
    });
    // The topics exist once their partitions are counted, so a failing DescribeConfigs
    // means the cluster does not offer it (librdkafka's mock cluster) or denies it: the checks
    // are then skipped with a warning rather than keeping the processor from starting. A
    // second is ample for a connected client, and the demo's mock cluster (which never
    // answers) delays the start by no more than that.
    let describe = Duration::from_secs(1);
    let (counts, decisions, events, commands) = tokio::join!(
        counts,
        admin::topic_config(&admin_client, &t.decisions, describe),
        admin::topic_config(&admin_client, &t.events, describe),
        admin::topic_config(&admin_client, &t.commands, describe),
    );
    // Dropping an admin client waits for its polling thread's 100-ms poll to end: not on the
    // start's path.
    drop(DropInBackground::new(admin_client));
    admin::check_co_partitioned(&counts.expect("partition count task panicked")?)?;
    BrokerConnected {
        bootstrap: &watch.bootstrap,
    }
    .emit(&watch.health);

    let mut warnings: Vec<TopicWarning> = Vec::new();
    match decisions {
        Ok(c) => admin::check_compacted(&t.decisions, &c)?,
        Err(e) => TopicCheckSkipped {
            topic: &t.decisions,
            error: &e,
        }
        .emit(),
    }
    match events {
        Ok(c) => warnings.extend(
            [
                admin::check_retention(&t.events, &c, restore_look_back_ms(config)),
                admin::check_log_append_time(&t.events, &c),
            ]
            .into_iter()
            .flatten(),
        ),
        Err(e) => TopicCheckSkipped {
            topic: &t.events,
            error: &e,
        }
        .emit(),
    }
    match commands {
        Ok(c) => warnings.extend(admin::check_log_append_time(&t.commands, &c)),
        Err(e) => TopicCheckSkipped {
            topic: &t.commands,
            error: &e,
        }
        .emit(),
    }
    for w in &warnings {
        TopicCheckWarning(w).emit();
    }
    Ok(warnings)
}

/// Asks the cluster for metadata until it answers (or `stop` is set), reporting every
/// failure within seconds: librdkafka's own errors (connection refused, name not resolved)
/// through the client's context, and the failed request itself.
fn wait_for_cluster(
    config: &Config,
    watch: &BrokerWatch,
    stop: &AtomicBool,
) -> Result<(), ProcessorError> {
    let probe: DropInBackground<BaseProducer<WatchedContext>> = DropInBackground::new(
        client_config(&config.kafka, &[]).create_with_context(WatchedContext(watch.clone()))?,
    );
    let mut backoff = Duration::from_millis(500);
    while !stop.load(Ordering::Relaxed) {
        match probe.client().fetch_metadata(None, Duration::from_secs(3)) {
            Ok(_) => {
                BrokerConnected {
                    bootstrap: &watch.bootstrap,
                }
                .emit(&watch.health);
                return Ok(());
            }
            Err(e) => {
                // Serves librdkafka's error events (they name the cause) to the context.
                probe.poll(Duration::ZERO);
                BrokerUnreachable {
                    bootstrap: &watch.bootstrap,
                    error: &e.to_string(),
                    all_down: true,
                }
                .emit(&watch.health);
            }
        }
        let until = std::time::Instant::now() + backoff;
        while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    Ok(())
}

/// Whether a failed topic setup may succeed later without anyone changing anything
/// (cluster unreachable, leader moving, request timed out).
fn setup_may_recover(e: &ProcessorError) -> bool {
    match e {
        ProcessorError::Admin(e) => e.is_retryable(),
        ProcessorError::Kafka(e) => retry::is_transient(e),
        _ => false,
    }
}

/// Runs the processor until `shutdown` completes: HTTP endpoints first (so `/healthz` can say
/// why nothing happens yet), topics (retried while the cluster cannot be reached), then the
/// processing loop on a blocking thread. Returns when the loop has committed its last batch.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ProcessorError> {
    let health = Arc::new(Health::default());
    let stop = Arc::new(AtomicBool::new(false));
    // Dropping the sender (any return below) stops the listener too.
    let (_http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
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
    observe::register_processor_metrics();
    // Webhook tasks run on this runtime; the loop only offers them committed decisions. Set
    // up first, so a webhook that cannot work (unset secret_env) stops the start at once.
    let notifier = Notifier::start(&config.notify)?;
    tokio::pin!(shutdown);
    let watch = BrokerWatch {
        health: health.clone(),
        bootstrap: config.kafka.bootstrap_servers.clone(),
    };
    let probe_stop = Arc::new(AtomicBool::new(false));
    let probe = tokio::task::spawn_blocking({
        let (config, watch, stop) = (config.clone(), watch.clone(), probe_stop.clone());
        move || wait_for_cluster(&config, &watch, &stop)
    });
    tokio::select! {
        r = probe => r.expect("cluster probe panicked")?,
        () = &mut shutdown => {
            probe_stop.store(true, Ordering::Relaxed);
            info!("Shutdown requested before the cluster answered.");
            return Ok(());
        }
    }
    // The transactional producer needs no topic: initialise it while the topics are checked.
    let producer = tokio::task::spawn_blocking({
        let config = config.clone();
        move || Processor::transactional_producer(&config)
    });
    let mut backoff = Duration::from_secs(1);
    loop {
        tokio::select! {
            r = ensure_topics_watched(&config, watch.clone()) => match r {
                Ok(_) => break,
                Err(e) if setup_may_recover(&e) => {
                    warn!(bootstrap = %config.kafka.bootstrap_servers, error = %e, retry_in_ms = backoff.as_millis() as u64, "Topic setup failed; retrying.");
                }
                Err(e) => return Err(e),
            },
            () = &mut shutdown => {
                info!("Shutdown requested before the topics were ready.");
                return Ok(());
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = &mut shutdown => return Ok(()),
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
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
    let id = config.transactional_id();
    let queue = notifier.queue();
    let mut worker = tokio::task::spawn_blocking(move || {
        let producer = tokio::runtime::Handle::current()
            .block_on(producer)
            .expect("transactional producer task panicked")?;
        let processor =
            Processor::with_producer(config, loop_health, producer)?.with_notifications(queue);
        processor.run(&loop_stop)
    });
    let result = tokio::select! {
        r = &mut worker => r,
        () = &mut shutdown => {
            info!("Shutdown requested; finishing the batch in flight.");
            stop.store(true, Ordering::Relaxed);
            worker.await
        }
    };
    // The loop (and its queue handle) is gone: deliver what is queued, within bounds.
    notifier.shutdown(NOTIFY_SHUTDOWN_GRACE).await;
    result
        .expect("processor thread panicked")
        .map_err(|e| e.identify_fencing(&id))
}

/// How long a stopping processor lets its webhooks finish the decisions already queued (a
/// supervisor's stop timeout is usually 10 s or more; Kubernetes' default is 30 s).
const NOTIFY_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
