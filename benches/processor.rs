//! End-to-end figures of the processor against a real Kafka broker: throughput against a plain
//! consumer, decision latency, restore time, scale-out, and the same windowed work in Kafka
//! Streams. Not criterion: each figure is one
//! timed run on fresh topics, so the bench is a plain `main` that prints a table. Every event is
//! stamped in the present (the broker's time retention would delete old-dated records while the
//! bench runs), and every processor runs the default policy.
//!
//! Run: `cargo bench --bench processor` with a broker at `KAFKA_BOOTSTRAP` (default
//! `127.0.0.1:19092`, the one `scripts/kafka.sh start` runs). Arguments `throughput`, `latency`,
//! `transaction`, `restore`, `scale-out` and `streams` select sections (all by default). Sizes
//! can be changed with `RB_BENCH_EVENTS`, `RB_BENCH_ROLLOUTS`, `RB_BENCH_TRIALS`,
//! `RB_BENCH_RESTORE_ROLLOUTS` and `RB_BENCH_RESTORE_EVENTS`. `RB_BENCH_DEAD_WEBHOOK=1`
//! configures every processor with a webhook that never answers; `RB_BENCH_DECODE_THREADS=N`
//! sets `processing.decode_threads` (0: a thread per core).
//!
//! 1. **Throughput.** N events (JSON, ~1000 rollouts played by [`sim`] scenarios in a closed
//!    loop, event times 100 ms apart per rollout) are produced into a 6-partition topic before
//!    anything reads it. A plain `BaseConsumer` (fresh group, read_committed) reads it all; then
//!    the processor (fresh group) processes it all, completion being detected by the group's
//!    committed offsets reaching the high watermarks (read by a consumer that never joins).
//! 2. **Decision latency.** With the processor running and healthy background traffic, each
//!    trial sends a breach for a new rollout inside one evaluation bucket (the smallest one the
//!    default policy rolls back on, found by running the pure engine), then the one event whose
//!    time is the bucket's end + the allowed lateness, which makes the breach decidable: the
//!    clock runs from producing that event to the ROLLBACK being read by a read_committed
//!    consumer of the decisions topic. The event-time floor in front of it (bucket end +
//!    lateness − the breach) is printed beside it.
//! 3. **Restore.** 100k rollouts with 1M events over the last 5 minutes and the decisions the
//!    engine published for them; the group's offsets are committed at the end of the events, so
//!    `restore_partition` reads the decisions and rebuilds every window from the events topic
//!    (both timed, per partition); then the processor's start is timed until it has restored
//!    them all and published decisions for fresh events.
//! 4. **Scale-out.** The throughput workload drained by one instance and by two instances of one
//!    group; then a second instance joins one processing steady traffic, and the longest time a
//!    partition's committed offset stands still is the rebalance pause.
//! 5. **Against Kafka Streams.** The throughput workload, produced once, drained by the
//!    processor and then by its Kafka Streams 4.1 counterpart (benches/streams: the same JSON
//!    decode, 10 s event-time windows with 5 s grace, a 5-minute rolling decision published to a
//!    topic, exactly-once v2, one stream thread; the mapping is in its Java file's header), run
//!    as a child `java` process with a fresh application id; its completion is detected the same
//!    way (its group's committed offsets reaching the high watermarks). Needs
//!    `scripts/streams-bench-build` first: asked for by name, the section stops with that
//!    instruction if the app is not built; in a run of all sections it prints it as a row.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use rollout_breaker::codec::{self, Encoding};
use rollout_breaker::config::Config;
use rollout_breaker::engine::{
    Action, Decision, Engine, EngineOptions, ExecutionEvent, LatencyMs, Phase, Policy,
    TrafficPercent, Variant,
};
use rollout_breaker::kafka::client::{FETCH_QUEUE_BACKOFF, RECONNECT_BACKOFF};
use rollout_breaker::kafka::processor::{ensure_topics, run, ProcessorError};
use rollout_breaker::kafka::restore::restore_partition;
use rollout_breaker::sim::{Change, Profile, Scenario, TrafficGen, Trigger};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const PARTITIONS: i32 = 6;
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);
/// Events whose encoded size is averaged for the printed record size.
const SIZE_SAMPLE: usize = 1_000;

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            eprintln!("error: {name}={v:?} is not a whole number");
            std::process::exit(2)
        }),
        Err(_) => default,
    }
}

/// A name no other run against the same broker has used: `<prefix>-<pid>-<nanos>-<n>`.
fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{nanos}-{n}", std::process::id())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A processor config on fresh topics and a fresh group, HTTP off, processing defaults.
fn fresh_config(bootstrap: &str, section: &str, policy: Policy) -> Config {
    let mut c = Config::default();
    let prefix = unique_name(&format!("rb-bench-{section}"));
    c.kafka.bootstrap_servers = bootstrap.to_owned();
    c.kafka.group_id = format!("{prefix}-group");
    c.kafka.instance_id = "bench".into();
    c.topics.events = format!("{prefix}-events");
    c.topics.decisions = format!("{prefix}-decisions");
    c.topics.commands = format!("{prefix}-commands");
    c.topics.dead_letter = format!("{prefix}-dlq");
    c.topics.partitions = PARTITIONS;
    c.http.listen = None;
    c.policy = policy;
    // `RB_BENCH_DECODE_THREADS=N` sets `processing.decode_threads` (default: the config's, 0).
    if let Ok(n) = std::env::var("RB_BENCH_DECODE_THREADS") {
        c.processing.decode_threads = n.trim().parse().unwrap_or_else(|_| {
            eprintln!("error: RB_BENCH_DECODE_THREADS={n:?} is not a whole number");
            std::process::exit(2)
        });
    }
    // For experiments with librdkafka settings: `RB_BENCH_KAFKA_OPTIONS='key=value;key=value'`.
    if let Ok(options) = std::env::var("RB_BENCH_KAFKA_OPTIONS") {
        for kv in options.split(';').filter(|kv| !kv.trim().is_empty()) {
            let Some((k, v)) = kv.split_once('=') else {
                eprintln!("error: RB_BENCH_KAFKA_OPTIONS entry {kv:?} is not key=value");
                std::process::exit(2)
            };
            c.kafka
                .options
                .insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    // `RB_BENCH_DEAD_WEBHOOK=1`: every decision is also posted to an endpoint that accepts
    // connections and never answers (default timeout and retries), to show the loop does not
    // wait for notifications.
    if std::env::var("RB_BENCH_DEAD_WEBHOOK").is_ok_and(|v| v == "1") {
        let url = format!("http://{}/hook", dead_endpoint());
        c.notify
            .webhooks
            .push(rollout_breaker::notify::WebhookConfig::new("dead", url));
    }
    c.validate().expect("bench config is valid");
    c
}

/// Connections the dead endpoint accepted (each one an attempt to post a decision).
static DEAD_CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// A local address that accepts TCP connections and never answers on them (one for the
/// whole bench run).
fn dead_endpoint() -> std::net::SocketAddr {
    static ADDR: std::sync::OnceLock<std::net::SocketAddr> = std::sync::OnceLock::new();
    *ADDR.get_or_init(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                DEAD_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
                held.push(stream);
            }
        });
        addr
    })
}

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// A consumer that assigns partitions itself or only asks the coordinator; never joins.
fn reader(bootstrap: &str, group: &str, isolation: &str) -> BaseConsumer {
    client(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // The decisions reader times arrivals: do not let it sleep in a fetch.
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer config is valid")
}

/// Counts failed deliveries (a bench with lost input would measure nothing).
#[derive(Default)]
struct DeliveryCount {
    failed: AtomicU64,
}

impl ClientContext for DeliveryCount {}

impl ProducerContext for DeliveryCount {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("delivery failed: {e}");
            }
        }
    }
}

type BenchProducer = BaseProducer<DeliveryCount>;

/// Idempotent producer partitioning by key like Java clients (murmur2).
fn producer(bootstrap: &str, linger_ms: &str) -> BenchProducer {
    client(bootstrap)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", linger_ms)
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "60000")
        .create_with_context(DeliveryCount::default())
        .expect("producer config is valid")
}

fn send(p: &BenchProducer, mut record: BaseRecord<'_, [u8], [u8]>) {
    loop {
        match p.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                p.poll(Duration::from_millis(5));
            }
            Err((e, _)) => panic!("produce: {e}"),
        }
    }
}

/// Produces `(key, payload, timestamp)` records to `topic` and waits for every delivery.
fn produce_all<'a>(
    p: &BenchProducer,
    topic: &str,
    records: impl Iterator<Item = (&'a str, Vec<u8>, Option<i64>)>,
) {
    for (i, (key, payload, ts)) in records.enumerate() {
        let mut r = BaseRecord::to(topic)
            .key(key.as_bytes())
            .payload(&payload[..]);
        if let Some(ts) = ts {
            r = r.timestamp(ts);
        }
        send(p, r);
        if i % 1_000 == 0 {
            p.poll(Duration::ZERO);
        }
    }
    p.flush(Duration::from_secs(120)).expect("flush");
    let failed = p.context().failed.load(Ordering::Relaxed);
    assert_eq!(failed, 0, "{failed} records were not delivered to {topic}");
}

fn produce_events(p: &BenchProducer, topic: &str, events: &[ExecutionEvent], enc: Encoding) {
    produce_all(
        p,
        topic,
        events.iter().map(|e| {
            (
                e.rollout_id.as_str(),
                codec::encode_event(e, enc),
                Some(e.timestamp),
            )
        }),
    );
}

fn high_watermarks(c: &BaseConsumer, topic: &str) -> Vec<i64> {
    (0..PARTITIONS)
        .map(|p| {
            c.fetch_watermarks(topic, p, KAFKA_TIMEOUT)
                .expect("watermarks")
                .1
        })
        .collect()
}

/// The processor running in-process on `rt`, and the switch that stops it.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ProcessorError>>,
}

fn start_processor(rt: &Runtime, config: Config) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = rt.spawn(run(config, async move {
        let _ = stopped.await;
    }));
    Running { stop, task }
}

impl Running {
    fn check_alive(&self) {
        assert!(
            !self.task.is_finished(),
            "the processor stopped early (see the error below)"
        );
    }
    fn stop(self, rt: &Runtime) {
        let _ = self.stop.send(());
        match rt.block_on(self.task) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("processor failed: {e}"),
            Err(e) => panic!("processor task: {e}"),
        }
    }
}

/// One printed row: section, figure, value, target.
struct Row(&'static str, String, String, &'static str);

// ---------------------------------------------------------------------------------------------
// 1. Throughput

/// `n` events of `rollouts` rollouts at 10 requests/s each, interleaved in event time, generated
/// in a closed loop (the router follows the engine's decisions). Even rollouts are good
/// candidates that reach FULL; odd ones degrade after 20 s and are rolled back.
fn throughput_events(n: usize, rollouts: usize, policy: &Policy) -> Vec<ExecutionEvent> {
    let rps = 10u32;
    let per_rollout = n.div_ceil(rollouts) as i64;
    // Stamped so the last events are about now: time retention keeps them while the bench runs.
    let start_ms = now_ms() - per_rollout * 1_000 / i64::from(rps);
    let mut gens: Vec<(TrafficGen, Phase, TrafficPercent)> = (0..rollouts)
        .map(|i| {
            let changes = if i % 2 == 1 {
                vec![Change {
                    when: Trigger::AfterMs(20_000),
                    candidate: Profile::new(0.70, 2_500.0, 200.0),
                }]
            } else {
                vec![]
            };
            let scenario = Scenario {
                name: format!("bench rollout {i}"),
                rollout_id: format!("agent-{i:05}"),
                requests_per_sec: rps,
                duration_ms: per_rollout * 1_000 / i64::from(rps),
                start_ms,
                baseline: Profile::new(0.97, 1_100.0, 200.0),
                candidate: Profile::new(0.99, 1_200.0, 100.0),
                changes,
                seed: i as u64,
                segment: None,
                region: None,
            };
            (TrafficGen::new(scenario), Phase::Off, TrafficPercent::ZERO)
        })
        .collect();
    let mut engine = Engine::new(policy.clone(), EngineOptions::default());
    let mut out = Vec::new();
    let mut events = Vec::with_capacity(n);
    'outer: loop {
        let mut any = false;
        for (gen, phase, traffic) in &mut gens {
            let Some(ev) = gen.next_event(*phase, *traffic) else {
                continue;
            };
            any = true;
            out.clear();
            engine.apply_event(&ev, &mut out);
            for d in out.iter().filter(|d| d.is_published()) {
                (*phase, *traffic) = (d.to, d.traffic);
            }
            events.push(ev);
            if events.len() == n {
                break 'outer;
            }
        }
        if !any {
            break;
        }
    }
    events
}

/// Creates `config`'s topics and produces the throughput workload (`n` events of `rollouts`
/// rollouts) into its events topic; returns the partitions' high watermarks, which add up
/// to `n`.
fn produce_workload(
    rt: &Runtime,
    bootstrap: &str,
    config: &Config,
    n: usize,
    rollouts: usize,
) -> Vec<i64> {
    rt.block_on(ensure_topics(config)).expect("create topics");
    let t = Instant::now();
    let events = throughput_events(n, rollouts, &config.policy);
    let generated = t.elapsed();
    let t = Instant::now();
    let p = producer(bootstrap, "5");
    produce_events(
        &p,
        &config.topics.events,
        &events,
        config.topics.events_encoding,
    );
    let produced = t.elapsed();
    let bytes: usize = events
        .iter()
        .take(SIZE_SAMPLE)
        .map(|e| codec::encode_event(e, config.topics.events_encoding).len())
        .sum();
    drop(events);
    let meta = reader(bootstrap, &unique_name("rb-bench-meta"), "read_committed");
    let high = high_watermarks(&meta, &config.topics.events);
    let total: i64 = high.iter().sum();
    assert_eq!(
        total as usize, n,
        "high watermarks {high:?} do not add up to {n}"
    );
    println!(
        "  generated in {:.1} s, produced in {:.1} s (~{} B/event); per partition {high:?}",
        generated.as_secs_f64(),
        produced.as_secs_f64(),
        bytes / SIZE_SAMPLE.min(n).max(1)
    );
    high
}

struct Drain {
    total: Duration,
    /// From the first record seen (first commit, for the processor) to the last.
    steady: Duration,
    steady_records: u64,
}

/// A plain consumer in a fresh group reads `expected` records from `topic`.
fn plain_consume(bootstrap: &str, topic: &str, expected: u64) -> Drain {
    let started = Instant::now();
    // The processor's own connection and fetch settings, so the two differ only in what they
    // do with the records.
    let c: BaseConsumer = client(bootstrap)
        .set(RECONNECT_BACKOFF.0, RECONNECT_BACKOFF.1)
        .set(FETCH_QUEUE_BACKOFF.0, FETCH_QUEUE_BACKOFF.1)
        .set("group.id", unique_name("rb-bench-plain"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let (mut seen, mut bytes) = (0u64, 0usize);
    let mut first = None;
    let deadline = started + Duration::from_secs(600);
    while seen < expected {
        assert!(
            Instant::now() < deadline,
            "plain consumer read {seen} of {expected} records in 600 s"
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                bytes += m.payload().map_or(0, <[u8]>::len);
                seen += 1;
            }
            Some(Err(e)) => eprintln!("plain consumer: {e}"),
            None => {}
        }
    }
    std::hint::black_box(bytes);
    let total = started.elapsed();
    Drain {
        total,
        steady: first.map_or(total, |f| f.elapsed()),
        steady_records: expected - 1,
    }
}

/// The committed offsets of `config`'s group on every events partition (0 where none).
fn group_offsets(watcher: &BaseConsumer, config: &Config) -> Vec<i64> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(&config.topics.events, p);
    }
    let got = watcher
        .committed_offsets(tpl, KAFKA_TIMEOUT)
        .expect("committed offsets");
    (0..PARTITIONS)
        .map(|p| {
            got.find_partition(&config.topics.events, p)
                .and_then(|e| e.offset().to_raw())
                .unwrap_or(0)
                .max(0)
        })
        .collect()
}

/// `instances` processors of one group (instance ids `bench-0`, `bench-1`, ...), running on
/// `rt` until stopped.
fn start_processors(rt: &Runtime, config: &Config, instances: usize) -> Vec<Running> {
    (0..instances)
        .map(|i| {
            let mut c = config.clone();
            c.kafka.instance_id = format!("bench-{i}");
            start_processor(rt, c)
        })
        .collect()
}

/// Runs `instances` processors of one group until it has committed every offset up to `high`.
fn processor_drain(rt: &Runtime, config: &Config, high: &[i64], instances: usize) -> Drain {
    // Same group id, never subscribed: asks the coordinator, does not join. read_uncommitted
    // so the broker answers at once instead of waiting out a pending transactional commit.
    let watcher = reader(
        &config.kafka.bootstrap_servers,
        &config.kafka.group_id,
        "read_uncommitted",
    );
    let expected: i64 = high.iter().sum();
    let started = Instant::now();
    let running = start_processors(rt, config, instances);
    let mut first: Option<(Instant, i64)> = None;
    let deadline = started + Duration::from_secs(900);
    loop {
        running.iter().for_each(Running::check_alive);
        assert!(
            Instant::now() < deadline,
            "processor did not finish in 900 s"
        );
        let committed = group_offsets(&watcher, config);
        let now = Instant::now();
        let sum: i64 = committed.iter().sum();
        if sum > 0 && first.is_none() {
            first = Some((now, sum));
        }
        if committed.iter().zip(high).all(|(c, h)| c >= h) {
            let total = now - started;
            running.into_iter().for_each(|r| r.stop(rt));
            let (f, at_first) = first.unwrap_or((started, 0));
            return Drain {
                total,
                steady: now - f,
                steady_records: (expected - at_first) as u64,
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn throughput(rt: &Runtime, bootstrap: &str, rows: &mut Vec<Row>) {
    let n = env_usize("RB_BENCH_EVENTS", 500_000);
    let rollouts = env_usize("RB_BENCH_ROLLOUTS", 1_000).max(1);
    let config = fresh_config(bootstrap, "tput", Policy::default());
    println!(
        "throughput: {n} events, {rollouts} rollouts (10 req/s each, half degrade after 20 s), \
         {} encoding, {PARTITIONS} partitions; processor max_batch_records={} max_batch_ms={}; \
         policy: the default ({:?} rule, evaluation {} ms, window {} ms, lateness {} ms, min samples {}, initial {})",
        match config.topics.events_encoding {
            Encoding::Json => "JSON",
            _ => "Avro",
        },
        config.processing.max_batch_records,
        config.processing.max_batch_ms,
        config.policy.rule,
        config.policy.evaluation_interval_ms,
        config.policy.monitoring_window_ms,
        config.policy.allowed_lateness_ms,
        config.policy.min_samples_per_phase,
        config.policy.initial_phase,
    );
    let high = produce_workload(rt, bootstrap, &config, n, rollouts);
    let plain = plain_consume(bootstrap, &config.topics.events, n as u64);
    let proc = processor_drain(rt, &config, &high, 1);
    comparison_rows(
        rows,
        "throughput",
        n,
        &proc,
        ("plain consumer", "group join", "first record", &plain),
        "plain",
        ">= 0.5 (stretch 0.8)",
    );
}

/// The processor's drain of `n` records against another reader's of the same topic: whole
/// topic and steady state for each (the other's rows first), and the processor's ratio to it.
fn comparison_rows(
    rows: &mut Vec<Row>,
    section: &'static str,
    n: usize,
    processor: &Drain,
    (name, start, first, other): (&str, &str, &str, &Drain),
    short: &str,
    target: &'static str,
) {
    let rate = |records: u64, d: Duration| records as f64 / d.as_secs_f64().max(1e-9);
    let cell = |r: f64, d: Duration| format!("{r:>10.0} ev/s ({:.2} s)", d.as_secs_f64());
    let (p_whole, o_whole) = (rate(n as u64, processor.total), rate(n as u64, other.total));
    let (p_steady, o_steady) = (
        rate(processor.steady_records, processor.steady),
        rate(other.steady_records, other.steady),
    );
    for (figure, value, target) in [
        (
            format!("{name}, whole topic (incl. {start})"),
            cell(o_whole, other.total),
            "",
        ),
        (
            "processor, whole topic (incl. start, group join)".into(),
            cell(p_whole, processor.total),
            "",
        ),
        (
            format!("ratio processor / {short}"),
            format!("{:>10.2}", p_whole / o_whole),
            target,
        ),
        (
            format!("{name}, {first} -> last"),
            cell(o_steady, other.steady),
            "",
        ),
        (
            "processor, first commit seen -> last".into(),
            cell(p_steady, processor.steady),
            "",
        ),
        (
            "ratio, steady state".into(),
            format!("{:>10.2}", p_steady / o_steady),
            "",
        ),
    ] {
        rows.push(Row(section, figure, value, target));
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Decision latency

/// Reads the decisions topic (read_committed) on its own thread and stamps each decision with
/// the instant it became readable.
struct DecisionReader {
    rx: mpsc::Receiver<(Decision, Instant)>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DecisionReader {
    fn start(config: &Config, from: &[i64]) -> Self {
        let c = reader(
            &config.kafka.bootstrap_servers,
            &unique_name("rb-bench-reader"),
            "read_committed",
        );
        let mut tpl = TopicPartitionList::new();
        for (p, o) in from.iter().enumerate() {
            tpl.add_partition_offset(&config.topics.decisions, p as i32, Offset::Offset(*o))
                .expect("partition offset");
        }
        c.assign(&tpl).expect("assign decisions");
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let (enc, stop2) = (config.topics.decisions_encoding, stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match c.poll(Duration::from_millis(50)) {
                    Some(Ok(m)) => {
                        let at = Instant::now();
                        let d = codec::decode_decision(m.payload().unwrap_or_default(), enc)
                            .expect("decision decodes");
                        if tx.send((d, at)).is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) => eprintln!("decisions reader: {e}"),
                    None => {}
                }
            }
        });
        Self {
            rx,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for DecisionReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Healthy traffic for `rollouts` rollouts at `per_sec` events/s in total, event time = wall
/// time, until stopped.
fn background(
    bootstrap: String,
    topic: String,
    enc: Encoding,
    rollouts: usize,
    per_sec: u64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let p = producer(&bootstrap, "5");
        let ids: Vec<String> = (0..rollouts)
            .map(|i| format!("background-{i:02}"))
            .collect();
        let started = Instant::now();
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let due = started.elapsed().as_millis() as u64 * per_sec / 1_000;
            let ts = now_ms();
            while sent < due {
                let id = &ids[sent as usize % ids.len()];
                let variant = if sent % 2 == 0 {
                    Variant::Candidate
                } else {
                    Variant::Baseline
                };
                let e = ExecutionEvent::new(
                    id.clone(),
                    variant,
                    true,
                    LatencyMs::new(900.0).unwrap(),
                    ts,
                );
                let payload = codec::encode_event(&e, enc);
                send(
                    &p,
                    BaseRecord::to(&topic)
                        .key(id.as_bytes())
                        .payload(&payload[..])
                        .timestamp(ts),
                );
                sent += 1;
            }
            p.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_millis(5));
        }
        p.flush(KAFKA_TIMEOUT).expect("flush background");
        sent
    })
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:>7.1} ms", d.as_secs_f64() * 1e3)
}

/// One latency trial for rollout `id`: a breach (candidate failures alternating with baseline
/// successes, `burst` of each, spread over the first half of the bucket starting at `b`), then
/// the event at the bucket's end + the allowed lateness, which makes the breach decidable.
fn breach_trial(
    id: &str,
    b: i64,
    burst: usize,
    policy: &Policy,
) -> (Vec<ExecutionEvent>, ExecutionEvent) {
    let width = policy.evaluation_interval_ms as i64;
    let spacing = (width / 2 / (2 * burst as i64)).max(1);
    let events = (0..2 * burst)
        .map(|j| {
            let candidate = j % 2 == 0;
            ExecutionEvent::new(
                id.to_owned(),
                if candidate {
                    Variant::Candidate
                } else {
                    Variant::Baseline
                },
                !candidate,
                LatencyMs::new(900.0).unwrap(),
                b + j as i64 * spacing,
            )
        })
        .collect();
    let trigger = ExecutionEvent::new(
        id.to_owned(),
        Variant::Baseline,
        true,
        LatencyMs::new(900.0).unwrap(),
        b + width + policy.allowed_lateness_ms as i64,
    );
    (events, trigger)
}

/// The smallest burst the policy rolls back on exactly at the trigger (and decides nothing but
/// the START before it), found by running the pure engine on one trial.
fn breach_burst(policy: &Policy) -> usize {
    let published = |ds: Vec<Decision>| -> Vec<Action> {
        ds.into_iter()
            .filter(Decision::is_published)
            .map(|d| d.action)
            .collect()
    };
    for burst in [5, 10, 20, 40, 80, 160, 320] {
        let b = 1_000 * policy.evaluation_interval_ms as i64;
        let (events, trigger) = breach_trial("calibration", b, burst, policy);
        let mut engine = Engine::new(policy.clone(), EngineOptions::default());
        let before: Vec<Action> = events
            .iter()
            .flat_map(|e| published(engine.apply(e)))
            .collect();
        let at = published(engine.apply(&trigger));
        if before == [Action::Start] && at == [Action::Rollback] {
            return burst;
        }
    }
    panic!("no burst up to 320 failures makes the policy roll back at the trigger");
}

fn latency(rt: &Runtime, bootstrap: &str, rows: &mut Vec<Row>) {
    let trials = env_usize("RB_BENCH_TRIALS", 100).max(1);
    let warmup = 5;
    let (bg_rollouts, bg_rate) = (12usize, 500u64);
    let config = fresh_config(bootstrap, "latency", Policy::default());
    let policy = &config.policy;
    let width = policy.evaluation_interval_ms as i64;
    let lateness = policy.allowed_lateness_ms as i64;
    let burst = breach_burst(policy);
    println!(
        "latency: {trials} trials (+{warmup} warm-up), each a new rollout at PROBE: {burst} \
         candidate failures and {burst} baseline successes in the first half of one {width} ms \
         bucket (the smallest breach the default policy, {:?} rule, rolls back on), then the event \
         at bucket end + {lateness} ms lateness that makes it decidable; background {bg_rate} \
         healthy ev/s over {bg_rollouts} rollouts; processor max_batch_ms={}",
        policy.rule, config.processing.max_batch_ms,
    );
    rt.block_on(ensure_topics(&config)).expect("create topics");
    let decisions = DecisionReader::start(&config, &[0; PARTITIONS as usize]);
    let running = start_processor(rt, config.clone());
    let stop_bg = Arc::new(AtomicBool::new(false));
    let bg = background(
        bootstrap.to_owned(),
        config.topics.events.clone(),
        config.topics.events_encoding,
        bg_rollouts,
        bg_rate,
        stop_bg.clone(),
    );
    // Ready once every background rollout has started (partitions assigned and restored).
    let mut started_bg = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while started_bg.len() < bg_rollouts {
        running.check_alive();
        assert!(
            Instant::now() < deadline,
            "processor published no START for the background in 90 s"
        );
        if let Ok((d, _)) = decisions.rx.recv_timeout(Duration::from_millis(200)) {
            if d.action == Action::Start {
                started_bg.insert(d.rollout_id);
            }
        }
    }

    let p = producer(bootstrap, "0");
    let enc = config.topics.events_encoding;
    let mut rng = SmallRng::seed_from_u64(7);
    let mut seen: HashMap<String, Vec<Action>> = HashMap::new();
    let mut latencies = Vec::with_capacity(trials);
    let mut floor = Duration::ZERO;
    for trial in 0..warmup + trials {
        let id = format!("trial-{trial:04}");
        // The bucket now running: the breach is stamped in the recent past, the trigger up to
        // bucket + lateness ahead (well inside the admission's clock bound).
        let b = now_ms() / width * width;
        let (burst_events, trigger) = breach_trial(&id, b, burst, policy);
        let last_failure = burst_events.iter().map(|e| e.timestamp).max().unwrap_or(b);
        floor = Duration::from_millis((trigger.timestamp - last_failure) as u64);
        produce_events(&p, &config.topics.events, &burst_events, enc);
        std::thread::sleep(Duration::from_millis(rng.random_range(0..100)));
        let payload = codec::encode_event(&trigger, enc);
        let t0 = Instant::now();
        send(
            &p,
            BaseRecord::to(&config.topics.events)
                .key(id.as_bytes())
                .payload(&payload[..])
                .timestamp(trigger.timestamp),
        );
        p.flush(KAFKA_TIMEOUT).expect("flush trigger");
        let deadline = t0 + Duration::from_secs(30);
        loop {
            running.check_alive();
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no ROLLBACK for {id} within 30 s");
            let Ok((d, at)) = decisions.rx.recv_timeout(left) else {
                continue;
            };
            let done = d.rollout_id == id && d.action == Action::Rollback;
            if d.rollout_id.starts_with("trial-") {
                seen.entry(d.rollout_id).or_default().push(d.action);
            }
            if done {
                if trial >= warmup {
                    latencies.push(at - t0);
                }
                break;
            }
        }
    }
    // Let anything extra about the trial rollouts show up before checking there was none.
    std::thread::sleep(Duration::from_secs(2));
    while let Ok((d, _)) = decisions.rx.try_recv() {
        if d.rollout_id.starts_with("trial-") {
            seen.entry(d.rollout_id).or_default().push(d.action);
        }
    }
    stop_bg.store(true, Ordering::Relaxed);
    let bg_sent = bg.join().expect("background thread");
    running.stop(rt);
    drop(decisions);
    let exact = seen
        .values()
        .filter(|a| **a == [Action::Start, Action::Rollback])
        .count();
    if exact != warmup + trials {
        let odd: Vec<_> = seen
            .iter()
            .filter(|(_, a)| **a != [Action::Start, Action::Rollback])
            .take(5)
            .collect();
        eprintln!("latency: trial rollouts with other decisions than START, ROLLBACK: {odd:?}");
    }
    latencies.sort();
    println!("  background events sent: {bg_sent}");
    rows.push(Row(
        "latency",
        "trials with exactly START + ROLLBACK".into(),
        format!("{exact:>7} / {}", warmup + trials),
        "",
    ));
    rows.push(Row(
        "latency",
        format!(
            "event-time floor: bucket end + lateness - breach ({}..{} s)",
            lateness / 1_000,
            (width + lateness) / 1_000
        ),
        format!("{:>7.1} s", floor.as_secs_f64()),
        "",
    ));
    rows.push(Row(
        "latency",
        "trigger produced -> ROLLBACK readable, p50".into(),
        ms(percentile(&latencies, 0.50)),
        "",
    ));
    rows.push(Row(
        "latency",
        "trigger produced -> ROLLBACK readable, p99".into(),
        ms(percentile(&latencies, 0.99)),
        "< 250 ms",
    ));
    rows.push(Row(
        "latency",
        "trigger produced -> ROLLBACK readable, max".into(),
        ms(*latencies.last().expect("trials")),
        "",
    ));
}

// ---------------------------------------------------------------------------------------------
// Context: what one transaction costs on this broker

/// Back-to-back transactions shaped like the processor's (one decision, offsets of every events
/// partition), without any consuming: the floor under both the batch rate and the latency.
fn transaction_cost(rt: &Runtime, bootstrap: &str, rows: &mut Vec<Row>) {
    let rounds = 60;
    let config = fresh_config(bootstrap, "txn", Policy::default());
    rt.block_on(ensure_topics(&config)).expect("create topics");
    let consumer: BaseConsumer = client(bootstrap)
        .set("group.id", &config.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    consumer
        .subscribe(&[&config.topics.events])
        .expect("subscribe");
    let deadline = Instant::now() + KAFKA_TIMEOUT;
    while consumer.assignment().expect("assignment").count() == 0 {
        assert!(Instant::now() < deadline, "no assignment in 30 s");
        consumer.poll(Duration::from_millis(100));
    }
    let mut producer_config = client(bootstrap);
    for (k, v) in &config.kafka.options {
        producer_config.set(k, v);
    }
    let producer: BaseProducer = producer_config
        .set("transactional.id", unique_name("rb-bench-txn"))
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .create()
        .expect("producer");
    producer
        .init_transactions(KAFKA_TIMEOUT)
        .expect("init transactions");
    let mut offsets = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        offsets
            .add_partition_offset(&config.topics.events, p, Offset::Offset(0))
            .expect("offset");
    }
    let (mut totals, mut send_offsets, mut commits) = (Vec::new(), Vec::new(), Vec::new());
    let mut flushes = Vec::new();
    for i in 0..rounds {
        consumer.poll(Duration::ZERO);
        let meta = consumer.group_metadata().expect("group metadata");
        let t0 = Instant::now();
        producer.begin_transaction().expect("begin");
        let key = format!("txn-{i}");
        producer
            .send(
                BaseRecord::to(&config.topics.decisions)
                    .partition(i % PARTITIONS)
                    .key(&key)
                    .payload("x"),
            )
            .map_err(|(e, _)| e)
            .expect("send");
        producer.flush(KAFKA_TIMEOUT).expect("flush");
        let t1 = Instant::now();
        flushes.push(t1 - t0);
        producer
            .send_offsets_to_transaction(&offsets, &meta, KAFKA_TIMEOUT)
            .expect("send offsets");
        let t2 = Instant::now();
        producer.commit_transaction(KAFKA_TIMEOUT).expect("commit");
        let t3 = Instant::now();
        if i >= 5 {
            totals.push(t3 - t0);
            send_offsets.push(t2 - t1);
            commits.push(t3 - t2);
        }
    }
    flushes.drain(..5);
    for v in [&mut totals, &mut send_offsets, &mut commits, &mut flushes] {
        v.sort();
    }
    println!(
        "transaction: {} back-to-back transactions (1 record + offsets of {PARTITIONS} partitions)",
        rounds - 5
    );
    let stats = |v: &[Duration]| {
        format!(
            "{} p50, {} p99",
            ms(percentile(v, 0.5)).trim(),
            ms(percentile(v, 0.99)).trim()
        )
    };
    rows.push(Row(
        "transaction",
        "begin + produce 1 record + flush".into(),
        stats(&flushes),
        "",
    ));
    rows.push(Row(
        "transaction",
        "send_offsets_to_transaction".into(),
        stats(&send_offsets),
        "",
    ));
    rows.push(Row(
        "transaction",
        "commit_transaction".into(),
        stats(&commits),
        "",
    ));
    rows.push(Row(
        "transaction",
        "whole transaction".into(),
        stats(&totals),
        "",
    ));
}

// ---------------------------------------------------------------------------------------------
// 3. Restore

fn restore(rt: &Runtime, bootstrap: &str, rows: &mut Vec<Row>) {
    let n = env_usize("RB_BENCH_RESTORE_ROLLOUTS", 100_000).max(1);
    let events_n = env_usize("RB_BENCH_RESTORE_EVENTS", 1_000_000).max(n);
    let span_ms: i64 = 300_000;
    let probes = 24usize;
    let config = fresh_config(bootstrap, "restore", Policy::default());
    println!(
        "restore: {n} rollouts with {events_n} events over the last {} min (default policy: \
         statistical rule, {} ms buckets, {} ms window), {:?} events and {:?} decisions keyed by \
         rollout id (murmur2) over {PARTITIONS} partitions; the group's offsets committed at the \
         end, so windows are rebuilt from the events topic",
        span_ms / 60_000,
        config.policy.evaluation_interval_ms,
        config.policy.monitoring_window_ms,
        config.topics.events_encoding,
        config.topics.decisions_encoding,
    );
    rt.block_on(ensure_topics(&config)).expect("create topics");
    // Five minutes of events ending now (time retention must not delete them while the bench
    // runs), rollouts interleaved; the decisions are what the engine publishes for them.
    let t0 = now_ms() - span_ms;
    let mut rng = SmallRng::seed_from_u64(11);
    let events: Vec<ExecutionEvent> = (0..events_n)
        .map(|j| {
            let variant = if rng.random_bool(0.5) {
                Variant::Candidate
            } else {
                Variant::Baseline
            };
            ExecutionEvent::new(
                format!("restored-{:06}", j % n),
                variant,
                rng.random_bool(0.97),
                LatencyMs::new(rng.random_range(600.0..1_400.0)).unwrap(),
                t0 + j as i64 * span_ms / events_n as i64,
            )
        })
        .collect();
    let mut engine = Engine::new(config.policy.clone(), EngineOptions::default());
    let mut decided = Vec::new();
    let mut out = Vec::new();
    for e in &events {
        out.clear();
        engine.apply_event(e, &mut out);
        decided.extend(out.drain(..).filter(Decision::is_published));
    }
    assert!(decided.len() >= n, "every rollout starts");
    drop(engine);
    let p = producer(bootstrap, "5");
    let t = Instant::now();
    let enc = config.topics.decisions_encoding;
    produce_all(
        &p,
        &config.topics.decisions,
        decided
            .iter()
            .map(|d| (d.rollout_id.as_str(), codec::encode_decision(d, enc), None)),
    );
    produce_events(
        &p,
        &config.topics.events,
        &events,
        config.topics.events_encoding,
    );
    println!(
        "  {} decisions and {events_n} events produced in {:.1} s",
        decided.len(),
        t.elapsed().as_secs_f64()
    );
    drop((decided, events));

    // The processor's group has processed everything: commit its offsets at the end.
    let meta = reader(bootstrap, &config.kafka.group_id, "read_committed");
    let committed = high_watermarks(&meta, &config.topics.events);
    let mut tpl = TopicPartitionList::new();
    for (part, offset) in committed.iter().enumerate() {
        tpl.add_partition_offset(&config.topics.events, part as i32, Offset::Offset(*offset))
            .expect("offset");
    }
    meta.commit(&tpl, rdkafka::consumer::CommitMode::Sync)
        .expect("commit the group's offsets");

    let (mut decisions_sum, mut events_sum, mut max) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut restored, mut replayed) = (0usize, 0u64);
    let mut per_partition = Vec::new();
    for part in 0..PARTITIONS {
        let mut engine = Engine::new(config.policy.clone(), EngineOptions::default());
        let rules = config.admission_rules(PARTITIONS);
        let stats = restore_partition(
            &config,
            &rules,
            part,
            Some(committed[part as usize]),
            &mut engine,
        )
        .expect("restore");
        assert_eq!(stats.rollouts, engine.len());
        assert_eq!(stats.undecodable_decisions, 0);
        assert!(!stats.truncated, "window rebuild truncated");
        restored += stats.rollouts;
        replayed += stats.events_replayed;
        per_partition.push(format!(
            "p{part}: {} rollouts, {} events in {:.0} ms",
            stats.rollouts,
            stats.events_replayed,
            stats.elapsed.as_secs_f64() * 1e3
        ));
        decisions_sum += stats.decisions_elapsed;
        events_sum += stats.elapsed - stats.decisions_elapsed;
        max = max.max(stats.elapsed);
    }
    println!("  {}", per_partition.join(", "));
    assert_eq!(restored, n, "restored {restored} rollouts of {n}");
    assert_eq!(
        replayed, events_n as u64,
        "every event lies in its rollout's phase, so the rebuild counts them all"
    );

    // The processor's own start: fresh events of new rollouts in every partition wait behind the
    // committed offsets; their STARTs are published once it has joined, restored every partition
    // (windows included) and processed them.
    let probe_events: Vec<ExecutionEvent> = (0..probes)
        .map(|i| {
            ExecutionEvent::new(
                format!("probe-{i:02}"),
                Variant::Baseline,
                true,
                LatencyMs::new(900.0).unwrap(),
                now_ms(),
            )
        })
        .collect();
    produce_events(
        &p,
        &config.topics.events,
        &probe_events,
        config.topics.events_encoding,
    );
    let event_parts = probe_events
        .iter()
        .map(|e| {
            rollout_breaker::input::admission::kafka_partition(e.rollout_id.as_bytes(), PARTITIONS)
        })
        .collect::<std::collections::HashSet<_>>()
        .len();
    let decisions =
        DecisionReader::start(&config, &high_watermarks(&meta, &config.topics.decisions));
    let t = Instant::now();
    let running = start_processor(rt, config.clone());
    let mut started = 0;
    let deadline = t + Duration::from_secs(180);
    while started < probes {
        running.check_alive();
        assert!(
            Instant::now() < deadline,
            "{started} of {probes} probe STARTs after 180 s"
        );
        if let Ok((d, _)) = decisions.rx.recv_timeout(Duration::from_millis(100)) {
            started += usize::from(d.rollout_id.starts_with("probe-") && d.action == Action::Start);
        }
    }
    let e2e = t.elapsed();
    running.stop(rt);
    rows.push(Row(
        "restore",
        format!("decisions read x{PARTITIONS}, sum ({n} rollouts)"),
        ms(decisions_sum),
        "",
    ));
    rows.push(Row(
        "restore",
        format!("windows rebuilt x{PARTITIONS}, sum ({replayed} events)"),
        ms(events_sum),
        "",
    ));
    rows.push(Row(
        "restore",
        "restore_partition, slowest partition (both steps)".into(),
        ms(max),
        "",
    ));
    rows.push(Row(
        "restore",
        format!(
            "processor start -> first decisions in {event_parts} partitions (incl. group join)"
        ),
        ms(e2e),
        "",
    ));
}

// ---------------------------------------------------------------------------------------------
// 4. Scale-out

/// Throughput of one against two instances of one group on the same topic, and the pause a
/// partition sees while a second instance joins a running one.
fn scale_out(rt: &Runtime, bootstrap: &str, rows: &mut Vec<Row>) {
    let n = env_usize("RB_BENCH_EVENTS", 500_000);
    let rollouts = env_usize("RB_BENCH_ROLLOUTS", 1_000).max(1);
    let config = fresh_config(bootstrap, "scale", Policy::default());
    println!(
        "scale-out: {n} events of {rollouts} rollouts (the throughput workload, default policy) \
         drained by one instance, then by two instances of a fresh group; then a second instance \
         joins one that is processing steady traffic"
    );
    let high = produce_workload(rt, bootstrap, &config, n, rollouts);
    let one = processor_drain(rt, &config, &high, 1);
    let mut two_config = config.clone();
    two_config.kafka.group_id = unique_name("rb-bench-scale-two");
    let two = processor_drain(rt, &two_config, &high, 2);
    let rate = |d: &Drain| n as f64 / d.total.as_secs_f64().max(1e-9);
    rows.push(Row(
        "scale-out",
        "one instance, whole topic (incl. start, group join)".into(),
        format!(
            "{:>10.0} ev/s ({:.2} s)",
            rate(&one),
            one.total.as_secs_f64()
        ),
        "",
    ));
    rows.push(Row(
        "scale-out",
        "two instances, whole topic (incl. start, group join)".into(),
        format!(
            "{:>10.0} ev/s ({:.2} s)",
            rate(&two),
            two.total.as_secs_f64()
        ),
        "",
    ));
    rows.push(Row(
        "scale-out",
        "ratio two / one".into(),
        format!("{:>10.2}", rate(&two) / rate(&one)),
        "",
    ));

    // The rebalance pause: steady traffic keeps every partition's committed offset moving with
    // each transaction; the longest time one partition's offset stands still while the second
    // instance joins is the pause its rollouts see (revoke, join, restore on the new owner).
    let (bg_rollouts, bg_rate) = (600usize, 5_000u64);
    let config = fresh_config(bootstrap, "rebalance", Policy::default());
    rt.block_on(ensure_topics(&config)).expect("create topics");
    let stop_bg = Arc::new(AtomicBool::new(false));
    let bg = background(
        bootstrap.to_owned(),
        config.topics.events.clone(),
        config.topics.events_encoding,
        bg_rollouts,
        bg_rate,
        stop_bg.clone(),
    );
    let watcher = reader(bootstrap, &config.kafka.group_id, "read_uncommitted");
    let mut first = start_processors(rt, &config, 1);
    // Longest stand-still per partition over `for_`, sampling every 20 ms.
    let longest_gap = |for_: Duration, running: &[Running]| -> Duration {
        let mut last = group_offsets(&watcher, &config);
        let mut moved = vec![Instant::now(); PARTITIONS as usize];
        let mut longest = Duration::ZERO;
        let end = Instant::now() + for_;
        while Instant::now() < end {
            running.iter().for_each(Running::check_alive);
            std::thread::sleep(Duration::from_millis(20));
            let now_offsets = group_offsets(&watcher, &config);
            let now = Instant::now();
            for (p, (o, l)) in now_offsets.iter().zip(&mut last).enumerate() {
                if o > l {
                    longest = longest.max(now - moved[p]);
                    moved[p] = now;
                    *l = *o;
                }
            }
        }
        let now = Instant::now();
        moved.iter().fold(longest, |acc, m| acc.max(now - *m))
    };
    // Wait until every partition commits, then measure the steady state and the join.
    let deadline = Instant::now() + Duration::from_secs(90);
    while group_offsets(&watcher, &config).contains(&0) {
        first[0].check_alive();
        assert!(
            Instant::now() < deadline,
            "no commits on every partition in 90 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let steady = longest_gap(Duration::from_secs(10), &first);
    let mut second = config.clone();
    second.kafka.instance_id = "bench-1".into();
    first.push(start_processor(rt, second));
    let join = longest_gap(Duration::from_secs(30), &first);
    let groups = watcher
        .fetch_group_list(Some(&config.kafka.group_id), KAFKA_TIMEOUT)
        .expect("group list");
    let members = groups
        .groups()
        .iter()
        .map(|g| {
            g.members()
                .iter()
                .filter(|m| m.assignment().is_some_and(|a| !a.is_empty()))
                .count()
        })
        .sum::<usize>();
    assert_eq!(
        members, 2,
        "the second instance did not get partitions within 30 s"
    );
    stop_bg.store(true, Ordering::Relaxed);
    let sent = bg.join().expect("background thread");
    first.into_iter().for_each(|r| r.stop(rt));
    println!("  rebalance: {bg_rate} healthy ev/s over {bg_rollouts} rollouts, {sent} sent");
    rows.push(Row(
        "scale-out",
        "longest commit gap of a partition, one instance, 10 s".into(),
        ms(steady),
        "",
    ));
    rows.push(Row(
        "scale-out",
        "longest commit gap of a partition while a 2nd joins, 30 s".into(),
        ms(join),
        "",
    ));
}

// ---------------------------------------------------------------------------------------------
// 5. Against Kafka Streams

/// Where `scripts/streams-bench-build` puts the Kafka Streams counterpart (benches/streams).
fn streams_app_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/streams/target")
}

/// The `java` classpath of the Kafka Streams counterpart, or what is missing and how to build
/// it.
fn streams_classpath() -> Result<String, String> {
    let build = "build it with `scripts/streams-bench-build` (Java 17+ and Maven; it runs \
                 `mvn -q -B -f benches/streams/pom.xml package`)";
    let dir = streams_app_dir();
    let class = dir.join("classes/rolloutbreaker/bench/StreamsBench.class");
    let lib = dir.join("lib");
    if !class.is_file()
        || !lib
            .join(format!("kafka-streams-{STREAMS_VERSION}.jar"))
            .is_file()
    {
        return Err(format!(
            "the Kafka Streams app is not built ({} or {}/kafka-streams-{STREAMS_VERSION}.jar \
             missing): {build}",
            class.display(),
            lib.display()
        ));
    }
    match std::process::Command::new("java")
        .arg("-version")
        .stderr(std::process::Stdio::null())
        .status()
    {
        Ok(s) if s.success() => {}
        _ => return Err(format!("no `java` on PATH (Java 17+); then {build}")),
    }
    Ok(format!(
        "{}:{}/*",
        dir.join("classes").display(),
        lib.display()
    ))
}

/// The Kafka Streams version benches/streams/pom.xml builds against.
const STREAMS_VERSION: &str = "4.1.1";

/// Records readable by a read_committed consumer in `topic` (all `PARTITIONS` partitions).
fn count_committed(bootstrap: &str, topic: &str) -> u64 {
    let c: BaseConsumer = client(bootstrap)
        .set("group.id", unique_name("rb-bench-count"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer config is valid");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("offset");
    }
    c.assign(&tpl).expect("assign");
    let mut at_end = vec![false; PARTITIONS as usize];
    let mut n = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !at_end.iter().all(|e| *e) {
        assert!(Instant::now() < deadline, "could not read {topic} in 60 s");
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                n += 1;
                at_end[m.partition() as usize] = false;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => at_end[p as usize] = true,
            Some(Err(e)) => eprintln!("count {topic}: {e}"),
            None => {}
        }
    }
    n
}

/// Runs the Kafka Streams counterpart (a child `java` process, application id = consumer group
/// `app_id`) on `config`'s events topic, publishing to `decisions`, until its group has
/// committed every offset up to `high`; timed like [`processor_drain`], the clock starting
/// before the JVM does.
fn streams_drain(
    classpath: &str,
    config: &Config,
    decisions: &str,
    app_id: &str,
    high: &[i64],
) -> Drain {
    let bootstrap = &config.kafka.bootstrap_servers;
    let mut watch = config.clone();
    watch.kafka.group_id = app_id.to_owned();
    let watcher = reader(bootstrap, app_id, "read_uncommitted");
    let expected: i64 = high.iter().sum();
    // Its RocksDB stores go under target/ (a fresh directory per run, removed at exit).
    let state_dir = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("streams-bench-state");
    let state_dir = state_dir.to_string_lossy();
    let started = Instant::now();
    let mut child = std::process::Command::new("java")
        .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
        .args(["-cp", classpath, "rolloutbreaker.bench.StreamsBench"])
        .args([
            bootstrap,
            &config.topics.events,
            decisions,
            app_id,
            &state_dir,
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("start java");
    let mut first: Option<(Instant, i64)> = None;
    let deadline = started + Duration::from_secs(900);
    loop {
        if let Some(status) = child.try_wait().expect("child status") {
            panic!("the Kafka Streams app exited before it was done: {status}");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the Kafka Streams app did not finish in 900 s");
        }
        let committed = group_offsets(&watcher, &watch);
        let now = Instant::now();
        let sum: i64 = committed.iter().sum();
        if sum > 0 && first.is_none() {
            first = Some((now, sum));
        }
        if committed.iter().zip(high).all(|(c, h)| c >= h) {
            let total = now - started;
            // Closing its stdin asks it to close Kafka Streams and exit.
            drop(child.stdin.take());
            let stop_deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match child.try_wait().expect("child status") {
                    Some(status) => {
                        assert!(status.success(), "the Kafka Streams app failed: {status}");
                        break;
                    }
                    None if Instant::now() >= stop_deadline => {
                        eprintln!("the Kafka Streams app did not stop in 60 s: killed");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    None => std::thread::sleep(Duration::from_millis(50)),
                }
            }
            let (f, at_first) = first.unwrap_or((started, 0));
            return Drain {
                total,
                steady: now - f,
                steady_records: (expected - at_first) as u64,
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The throughput workload, produced once, drained by the processor and by the Kafka Streams
/// counterpart (benches/streams) in the same run.
fn streams(rt: &Runtime, bootstrap: &str, rows: &mut Vec<Row>, asked: bool) {
    let classpath = match streams_classpath() {
        Ok(cp) => cp,
        Err(why) if asked => {
            eprintln!("error: streams section: {why}");
            std::process::exit(1);
        }
        Err(why) => {
            println!("streams: not run: {why}");
            rows.push(Row(
                "streams",
                "not run: Kafka Streams app not built".into(),
                "scripts/streams-bench-build".into(),
                "",
            ));
            return;
        }
    };
    let n = env_usize("RB_BENCH_EVENTS", 500_000);
    let rollouts = env_usize("RB_BENCH_ROLLOUTS", 1_000).max(1);
    let config = fresh_config(bootstrap, "streams", Policy::default());
    let app_id = unique_name("rb-bench-streams-app");
    let streams_decisions = format!("{}-streams", config.topics.decisions);
    println!(
        "streams: {n} events of {rollouts} rollouts (the throughput workload, JSON, \
         {PARTITIONS} partitions) drained by the processor (default policy), then by Kafka \
         Streams {STREAMS_VERSION} (benches/streams: exactly_once_v2, 1 stream thread, \
         commit.interval.ms=100, 10 s windows + 5 s grace, 5-min rolling threshold decision; \
         application.id {app_id})"
    );
    let high = produce_workload(rt, bootstrap, &config, n, rollouts);

    let proc = processor_drain(rt, &config, &high, 1);
    let kstreams = streams_drain(&classpath, &config, &streams_decisions, &app_id, &high);
    let proc_decisions = count_committed(bootstrap, &config.topics.decisions);
    let streams_published = count_committed(bootstrap, &streams_decisions);

    comparison_rows(
        rows,
        "streams",
        n,
        &proc,
        (
            "Kafka Streams",
            "JVM start, join",
            "first commit seen",
            &kstreams,
        ),
        "Kafka Streams",
        ">= 5 (aim 10)",
    );
    rows.push(Row(
        "streams",
        "decisions published (processor / Kafka Streams)".into(),
        format!("{proc_decisions:>10} / {streams_published}"),
        "",
    ));
}

fn main() {
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "127.0.0.1:19092".into());
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |s: &str| args.is_empty() || args.iter().any(|a| a == s);

    let probe: BaseConsumer = client(&bootstrap).create().expect("client config is valid");
    if let Err(e) = probe.fetch_metadata(None, Duration::from_secs(5)) {
        eprintln!(
            "error: no Kafka broker reachable at {bootstrap} ({e}).\n\
             Start the local one with `scripts/kafka.sh start`, or set KAFKA_BOOTSTRAP=host:port."
        );
        std::process::exit(1);
    }
    drop(probe);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rows = Vec::new();
    println!("processor bench against {bootstrap}");
    if std::env::var("RB_BENCH_DEAD_WEBHOOK").is_ok_and(|v| v == "1") {
        println!("every processor posts its decisions to a webhook that never answers");
    }
    if let Ok(options) = std::env::var("RB_BENCH_KAFKA_OPTIONS") {
        println!("processor kafka.options from RB_BENCH_KAFKA_OPTIONS: {options}");
    }
    if wants("throughput") {
        throughput(&rt, &bootstrap, &mut rows);
    }
    if wants("latency") {
        latency(&rt, &bootstrap, &mut rows);
    }
    if wants("transaction") {
        transaction_cost(&rt, &bootstrap, &mut rows);
    }
    if wants("restore") {
        restore(&rt, &bootstrap, &mut rows);
    }
    if wants("scale-out") {
        scale_out(&rt, &bootstrap, &mut rows);
    }
    if wants("streams") {
        let asked = args.iter().any(|a| a == "streams");
        streams(&rt, &bootstrap, &mut rows, asked);
    }
    if std::env::var("RB_BENCH_DEAD_WEBHOOK").is_ok_and(|v| v == "1") {
        println!(
            "dead webhook: {} connections accepted, none answered",
            DEAD_CONNECTIONS.load(Ordering::Relaxed)
        );
    }
    let w = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    println!();
    println!("{:<12} {:<w$}  {:<28} target", "section", "figure", "value");
    for Row(section, figure, value, target) in &rows {
        println!("{section:<12} {figure:<w$}  {value:<28} {target}");
    }
}
