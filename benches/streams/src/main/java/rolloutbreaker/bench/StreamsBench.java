/*
 * The Kafka Streams counterpart of the rollout-breaker processor, for
 * `cargo bench --bench processor -- streams` (benches/processor.rs, section 5). Built with
 * scripts/streams-bench-build; run by the bench as
 *
 *   java -cp benches/streams/target/classes:benches/streams/target/lib/* \
 *        rolloutbreaker.bench.StreamsBench BOOTSTRAP EVENTS_TOPIC DECISIONS_TOPIC APPLICATION_ID \
 *        STATE_DIR
 *
 * It runs until its standard input closes (the bench closes it once the group's committed
 * offsets reach the events topic's high watermarks), then closes Kafka Streams cleanly and
 * removes its state (a fresh directory made under STATE_DIR).
 *
 * What it does, against what the processor does on the same topic (default policy,
 * src/engine/policy.rs):
 *
 * - Input: the bench's events topic, keyed by rollout id, JSON ExecutionEvent values
 *   (src/codec/event.rs). Every record is decoded in full into an Event (Jackson databind, all
 *   fields incl. the optional ones), as the processor decodes every event. Event time is the
 *   record's timestamp_ms field (a TimestampExtractor on the decoded value), as in the engine.
 * - Grouped by the record key (rollout id) as it arrives: no repartition topic, since the
 *   processor never re-keys either (a partition is an independent engine).
 * - Tumbling event-time windows of 10 s (evaluation_interval_ms) with 5 s grace
 *   (allowed_lateness_ms): a windowed aggregate `Bucket` per rollout holding, for each variant
 *   (BASELINE, CANDIDATE), samples, successes and the latency sum, with its own Serde, in a
 *   RocksDB window store with a changelog topic. The engine keeps the same per-variant counters
 *   per 10 s bucket (plus a latency histogram, which this side does not keep).
 * - A bucket is evaluated once it is closed (window end + grace passed in stream time,
 *   `suppress(untilWindowCloses)`, whose buffer also has a changelog), as the engine decides a
 *   bucket once its end + allowed lateness has passed in event time.
 * - The rolling decision over the last 5 min (monitoring_window_ms): a per-rollout KeyValue
 *   store (changelogged) holds the rollout's phase, when it entered it, and a ring of the last
 *   30 closed buckets; on each closed bucket the candidate's totals over the window (restricted
 *   to the current phase) go through the seed's threshold rule: fewer than 10 samples → hold;
 *   mean latency > 2000 ms or completion < 0.80 → ROLLBACK (phase OFF); completion >= 0.95 →
 *   ADVANCE one phase (PROBE → SMALL → MEDIUM → FULL); otherwise hold. A rollout's first
 *   bucket publishes its START (initial phase PROBE). Each published decision is a JSON record
 *   on DECISIONS_TOPIC keyed by rollout id, as the processor publishes its decisions.
 *   The processor's default rule is the statistical one (anytime-valid tests against the
 *   baseline, traffic-shortfall check), which is more work per evaluation than this threshold
 *   rule: the difference favours Kafka Streams.
 * - Exactly-once v2 (processing.guarantee=exactly_once_v2: one transaction per commit covering
 *   the output, the changelogs and the input offsets), as the processor commits one transaction
 *   per batch (up to 20 000 records or 50 ms). commit.interval.ms = 100, Kafka Streams' default
 *   under exactly-once. One stream thread (num.stream.threads=1), auto.offset.reset=earliest,
 *   a fresh application.id (= consumer group id) per run, record cache at its default (10 MB).
 */
package rolloutbreaker.bench;

import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.ObjectReader;
import com.fasterxml.jackson.databind.ObjectWriter;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;
import org.apache.kafka.streams.state.WindowStore;

public final class StreamsBench {
    // The default policy (src/engine/policy.rs).
    static final long BUCKET_MS = 10_000;
    static final long LATENESS_MS = 5_000;
    static final long WINDOW_MS = 300_000;
    static final int RING = (int) (WINDOW_MS / BUCKET_MS);
    static final int MIN_SAMPLES = 10;
    static final double MAX_LATENCY_MS = 2_000.0;
    static final double ROLLBACK_BELOW = 0.80;
    static final double ADVANCE_AT = 0.95;
    static final byte OFF = 0, PROBE = 1, SMALL = 2, MEDIUM = 3, FULL = 4;
    static final String[] PHASES = {"OFF", "PROBE", "SMALL", "MEDIUM", "FULL"};

    static final ObjectMapper JSON =
            new ObjectMapper().configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, true);

    /** One ExecutionEvent as src/codec/event.rs writes it in JSON. */
    public static final class Event {
        @JsonProperty("rollout_id") public String rolloutId;
        @JsonProperty("variant") public String variant;
        @JsonProperty("version") public String version;
        @JsonProperty("request_key") public String requestKey;
        @JsonProperty("success") public boolean success;
        @JsonProperty("latency_ms") public double latencyMs;
        @JsonProperty("timestamp_ms") public long timestampMs;
        @JsonProperty("cost") public Double cost;
        @JsonProperty("segment") public String segment;
        @JsonProperty("extra_metrics") public Map<String, Double> extraMetrics;

        int variantIndex() {
            switch (variant) {
                case "BASELINE": return 0;
                case "CANDIDATE": return 1;
                default: throw new IllegalArgumentException("unknown variant " + variant);
            }
        }
    }

    static final class EventSerde implements Serde<Event> {
        private final ObjectReader reader = JSON.readerFor(Event.class);
        private final ObjectWriter writer = JSON.writerFor(Event.class);

        @Override
        public Serializer<Event> serializer() {
            return (topic, e) -> {
                try {
                    return writer.writeValueAsBytes(e);
                } catch (IOException x) {
                    throw new IllegalStateException(x);
                }
            };
        }

        @Override
        public Deserializer<Event> deserializer() {
            return (topic, bytes) -> {
                try {
                    Event e = reader.readValue(bytes);
                    if (e.rolloutId == null || e.variant == null || e.version == null
                            || !Double.isFinite(e.latencyMs) || e.latencyMs < 0) {
                        throw new IllegalArgumentException("invalid event");
                    }
                    e.variantIndex();
                    return e;
                } catch (IOException x) {
                    throw new IllegalArgumentException(x);
                }
            };
        }
    }

    /** One 10 s bucket of one rollout: per variant, samples, successes, latency sum. */
    public static final class Bucket {
        final long[] samples = new long[2];
        final long[] successes = new long[2];
        final double[] latencySum = new double[2];

        Bucket add(Event e) {
            int v = e.variantIndex();
            samples[v]++;
            if (e.success) {
                successes[v]++;
            }
            latencySum[v] += e.latencyMs;
            return this;
        }

        static final int BYTES = 2 * (8 + 8 + 8);

        void write(ByteBuffer b) {
            for (int v = 0; v < 2; v++) {
                b.putLong(samples[v]).putLong(successes[v]).putDouble(latencySum[v]);
            }
        }

        static Bucket read(ByteBuffer b) {
            Bucket k = new Bucket();
            for (int v = 0; v < 2; v++) {
                k.samples[v] = b.getLong();
                k.successes[v] = b.getLong();
                k.latencySum[v] = b.getDouble();
            }
            return k;
        }
    }

    static final class BucketSerde implements Serde<Bucket> {
        @Override
        public Serializer<Bucket> serializer() {
            return (topic, k) -> {
                ByteBuffer b = ByteBuffer.allocate(Bucket.BYTES);
                k.write(b);
                return b.array();
            };
        }

        @Override
        public Deserializer<Bucket> deserializer() {
            return (topic, bytes) -> bytes == null ? null : Bucket.read(ByteBuffer.wrap(bytes));
        }
    }

    /** A rollout's phase, when it entered it, and its last 30 closed buckets (a ring by start). */
    static final class RolloutState {
        byte phase = PROBE;
        long phaseSinceMs;
        final long[] start = new long[RING];
        final Bucket[] ring = new Bucket[RING];

        RolloutState() {
            java.util.Arrays.fill(start, Long.MIN_VALUE);
        }

        static final int BYTES = 1 + 8 + RING * (8 + Bucket.BYTES);
    }

    static final class RolloutStateSerde implements Serde<RolloutState> {
        @Override
        public Serializer<RolloutState> serializer() {
            return (topic, s) -> {
                ByteBuffer b = ByteBuffer.allocate(RolloutState.BYTES);
                b.put(s.phase).putLong(s.phaseSinceMs);
                for (int i = 0; i < RING; i++) {
                    b.putLong(s.start[i]);
                    (s.ring[i] == null ? new Bucket() : s.ring[i]).write(b);
                }
                return b.array();
            };
        }

        @Override
        public Deserializer<RolloutState> deserializer() {
            return (topic, bytes) -> {
                if (bytes == null) {
                    return null;
                }
                ByteBuffer b = ByteBuffer.wrap(bytes);
                RolloutState s = new RolloutState();
                s.phase = b.get();
                s.phaseSinceMs = b.getLong();
                for (int i = 0; i < RING; i++) {
                    s.start[i] = b.getLong();
                    s.ring[i] = Bucket.read(b);
                }
                return s;
            };
        }
    }

    /** The rolling 5-minute decision on each closed bucket; forwards published decisions. */
    static final class Decide implements Processor<Windowed<String>, Bucket, String, String> {
        private ProcessorContext<String, String> context;
        private KeyValueStore<String, RolloutState> store;
        private final ObjectWriter writer = JSON.writerFor(Map.class);

        @Override
        public void init(ProcessorContext<String, String> context) {
            this.context = context;
            this.store = context.getStateStore("rollouts");
        }

        @Override
        public void process(Record<Windowed<String>, Bucket> record) {
            String rollout = record.key().key();
            long bucketStart = record.key().window().start();
            long bucketEnd = record.key().window().end();
            Bucket bucket = record.value();
            RolloutState s = store.get(rollout);
            if (s == null) {
                s = new RolloutState();
                s.phaseSinceMs = bucketStart;
                publish(rollout, "START", OFF, PROBE, bucketEnd, 0, 0);
            }
            int slot = (int) Math.floorMod(bucketStart / BUCKET_MS, (long) RING);
            s.start[slot] = bucketStart;
            s.ring[slot] = bucket;
            if (s.phase != OFF && s.phase != FULL) {
                long from = Math.max(bucketEnd - WINDOW_MS, s.phaseSinceMs);
                long n = 0, ok = 0;
                double lat = 0;
                for (int i = 0; i < RING; i++) {
                    if (s.ring[i] != null && s.start[i] >= from && s.start[i] < bucketEnd) {
                        n += s.ring[i].samples[1];
                        ok += s.ring[i].successes[1];
                        lat += s.ring[i].latencySum[1];
                    }
                }
                if (n >= MIN_SAMPLES) {
                    double completion = (double) ok / n;
                    double meanLatency = lat / n;
                    byte before = s.phase;
                    if (meanLatency > MAX_LATENCY_MS || completion < ROLLBACK_BELOW) {
                        s.phase = OFF;
                        s.phaseSinceMs = bucketEnd;
                        publish(rollout, "ROLLBACK", before, OFF, bucketEnd, completion, n);
                    } else if (completion >= ADVANCE_AT) {
                        s.phase = (byte) (before + 1);
                        s.phaseSinceMs = bucketEnd;
                        publish(rollout, "ADVANCE", before, s.phase, bucketEnd, completion, n);
                    }
                }
            }
            store.put(rollout, s);
        }

        private void publish(String rollout, String action, byte from, byte to, long atMs,
                double completion, long samples) {
            Map<String, Object> d = new LinkedHashMap<>();
            d.put("rollout_id", rollout);
            d.put("action", action);
            d.put("from", PHASES[from]);
            d.put("to", PHASES[to]);
            d.put("timestamp_ms", atMs);
            d.put("completion_rate", completion);
            d.put("samples", samples);
            try {
                context.forward(new Record<>(rollout, writer.writeValueAsString(d), atMs));
            } catch (IOException x) {
                throw new IllegalStateException(x);
            }
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 5) {
            System.err.println("usage: StreamsBench BOOTSTRAP EVENTS_TOPIC DECISIONS_TOPIC"
                    + " APPLICATION_ID STATE_DIR");
            System.exit(2);
        }
        String bootstrap = args[0], events = args[1], decisions = args[2], appId = args[3];

        try (Admin admin = Admin.create(
                Map.<String, Object>of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap))) {
            int partitions = admin.describeTopics(List.of(events)).allTopicNames().get()
                    .get(events).partitions().size();
            try {
                admin.createTopics(List.of(new NewTopic(decisions, partitions, (short) 1)))
                        .all().get();
            } catch (java.util.concurrent.ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) {
                    throw e;
                }
            }
        }

        Path stateDir = Files.createTempDirectory(
                Files.createDirectories(Path.of(args[4])), "rb-streams-bench-");
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

        Serde<String> strings = Serdes.String();
        EventSerde eventSerde = new EventSerde();
        StreamsBuilder builder = new StreamsBuilder();
        builder.addStateStore(Stores.keyValueStoreBuilder(
                Stores.persistentKeyValueStore("rollouts"), strings, new RolloutStateSerde()));
        builder.stream(events, Consumed.with(strings, eventSerde)
                        .withTimestampExtractor((rec, partitionTime) ->
                                ((Event) rec.value()).timestampMs))
                .groupByKey(Grouped.with(strings, eventSerde))
                .windowedBy(TimeWindows.ofSizeAndGrace(
                        Duration.ofMillis(BUCKET_MS), Duration.ofMillis(LATENESS_MS)))
                .aggregate(Bucket::new, (rollout, e, bucket) -> bucket.add(e),
                        Materialized.<String, Bucket, WindowStore<Bytes, byte[]>>as("buckets")
                                .withKeySerde(strings)
                                .withValueSerde(new BucketSerde()))
                .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded())
                        .withName("closed-buckets"))
                .toStream()
                .process(Decide::new, "rollouts")
                .to(decisions, Produced.with(strings, strings));

        KafkaStreams streams = new KafkaStreams(builder.build(), p);
        CountDownLatch failed = new CountDownLatch(1);
        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("streams-bench: stream thread failed: " + e);
            e.printStackTrace();
            failed.countDown();
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler
                    .StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.RUNNING) {
                System.err.println("streams-bench: RUNNING");
            }
        });
        streams.start();

        // Run until stdin closes, or the stream thread fails.
        Thread stdin = new Thread(() -> {
            try (InputStream in = System.in) {
                while (in.read() >= 0) {
                    // nothing to read but EOF
                }
            } catch (IOException ignored) {
                // treated as EOF
            }
            failed.countDown();
        });
        stdin.setDaemon(true);
        stdin.start();
        failed.await();
        streams.close(Duration.ofSeconds(30));
        streams.cleanUp();
        try (var walk = Files.walk(stateDir)) {
            walk.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
        }
        System.exit(streams.state() == KafkaStreams.State.ERROR ? 1 : 0);
    }
}
