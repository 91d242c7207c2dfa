"""Mixed fleet on the real broker: Python agents and operators produce, the Rust processor
decides, a Python router and a Rust router agree on every request key.

Needs KAFKA_BOOTSTRAP (scripts/test sets it) and the Rust binaries `rollout-breaker` and
`examples/route_keys` under $CARGO_TARGET_DIR/debug (scripts/test builds them).
"""

import io
import json
import os
import pathlib
import signal
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint, to_parsing_canonical_form

from conftest import REPO
from rollout_breaker import DecisionTable, EventEmitter, GuardedAgent, RolloutCommand, codec

pytestmark = pytest.mark.kafka

TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug"


def binary(rel):
    p = TARGET / rel
    if not p.exists():
        pytest.fail(f"{p} missing: run `cargo build --bin rollout-breaker --example route_keys` first")
    return str(p)


def now_ms():
    return time.time_ns() // 1_000_000


def wait_for(what, predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def processor(bootstrap, tmp_path):
    """`rollout-breaker run` on fresh topics, events Avro (single-object), decisions Avro."""
    prefix = f"rb-py-{uuid.uuid4().hex[:10]}"
    topics = {k: f"{prefix}-{k}" for k in ("events", "decisions", "commands", "dlq")}
    config = tmp_path / "processor.toml"
    config.write_text(
        f"""
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{prefix}-group"
instance_id = "i1"
[kafka.options]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[topics]
events = "{topics['events']}"
decisions = "{topics['decisions']}"
commands = "{topics['commands']}"
dead_letter = "{topics['dlq']}"
partitions = 3
events_encoding = "avro"
decisions_encoding = "avro"
[processing]
max_batch_ms = 20
[http]
listen = "127.0.0.1:0"
"""
    )
    log = open(tmp_path / "processor.log", "wb")
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    proc = subprocess.Popen([binary("rollout-breaker"), "run", "--config", str(config)], stdout=log, stderr=log, env=env)
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def created():
        if proc.poll() is not None:
            pytest.fail(f"processor exited with {proc.returncode}: {(tmp_path / 'processor.log').read_text()}")
        return all(t in admin.list_topics(timeout=5).topics for t in topics.values())

    wait_for("the processor's topics", created)
    yield topics
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def rust_routes(bootstrap, topic, rollout, min_sequence, keys):
    out = subprocess.run(
        [binary("examples/route_keys"), topic, rollout, str(min_sequence)],
        input="\n".join(keys) + "\n",
        capture_output=True,
        text=True,
        timeout=90,
        env=dict(os.environ, KAFKA_BOOTSTRAP=bootstrap),
    )
    assert out.returncode == 0, out.stderr
    head, *lines = out.stdout.splitlines()
    return head, [line == "1" for line in lines]


def command(rollout, kind, **kw):
    return RolloutCommand(rollout, kind, "py-operator", f"{kind.lower()} from python", now_ms(), **kw)


def test_mixed_fleet_python_agents_rust_processor_two_routers(bootstrap, processor):
    rollout = f"py-agent-{uuid.uuid4().hex[:6]}"
    operators = EventEmitter(bootstrap, processor["commands"], encoding="json")
    agents = EventEmitter(bootstrap, processor["events"], encoding="avro")
    table = DecisionTable(bootstrap, processor["decisions"], stale_after=5.0)
    try:
        assert table.wait_ready(30), table.state()

        def seq_at(phase):
            return lambda: (e := table.get(rollout)) is not None and e.phase == phase and e.sequence

        # A command produced by a librdkafka client lands with its rollout's events only with
        # the murmur2 partitioner; otherwise the processor refuses it and this times out.
        operators.emit_command(command(rollout, "START", candidate_version="v2", baseline_version="v1"))
        operators.flush()
        wait_for("START", seq_at("PROBE"))

        # Python agents report through the breaker, in Avro written by fastavro.
        agent = GuardedAgent(rollout, table, agents, baseline_version="v1", candidate_version="v2")
        for i in range(60):
            with agent.guard(f"user-{i}"):
                pass
        assert agents.flush(30) == 0
        stats = agents.stats()
        assert (stats.delivered, stats.failed, stats.dropped) == (60, 0, 0), stats

        for phase in ("SMALL", "MEDIUM"):
            operators.emit_command(command(rollout, "PROMOTE"))
            operators.flush()
            wait_for(phase, seq_at(phase))
        entry = table.get(rollout)
        assert entry.traffic_percent == 20.0 and entry.candidate_version == "v2"

        keys = [f"user-{i}" for i in range(3000)] + ["", "ключ", "550e8400-e29b-41d4-a716-446655440000"]
        head, rust = rust_routes(bootstrap, processor["decisions"], rollout, entry.sequence, keys)
        assert head.split()[:3] == ["ready", str(entry.sequence), "MEDIUM"], head
        python = [table.should_use_new_version(rollout, k) for k in keys]
        assert python == rust
        assert 0.15 < sum(python) / len(python) < 0.25

        # The events were admitted: none was dead-lettered (they precede the PROMOTEs in their
        # partition, so the processor had judged them by the time MEDIUM was decided).
        dlq = Consumer({"bootstrap.servers": bootstrap, "group.id": "py-check"})
        for p in range(3):
            low, high = dlq.get_watermark_offsets(TopicPartition(processor["dlq"], p), timeout=10)
            assert high == 0, f"dead letters in partition {p}"
        dlq.close()

        # Retire: ABORT to OFF (produced straight into the events topic as a relayed command,
        # in the commands topic's encoding), RETIRE writes a tombstone; both routers forget it.
        agents.emit_command(command(rollout, "ABORT"), relayed=True, encoding="json")
        agents.flush()
        wait_for("ABORT", seq_at("OFF"))
        operators.emit_command(command(rollout, "RETIRE"))
        operators.flush()
        wait_for("the tombstone", lambda: table.get(rollout) is None)
        assert table.route(rollout, "user-1").reason == "unknown"
        head, rust = rust_routes(bootstrap, processor["decisions"], rollout, 0, keys[:200])
        assert not any(rust) and not any(table.should_use_new_version(rollout, k) for k in keys[:200])
    finally:
        table.close()
        agents.close()
        operators.close()


def test_processor_decision_decodes_with_plain_fastavro(bootstrap, processor):
    """Only schemas/ and the documented framing: C3 01, CRC-64-AVRO fingerprint (LE), body."""
    rollout = f"py-fastavro-{uuid.uuid4().hex[:6]}"
    with EventEmitter(bootstrap, processor["commands"]) as operators:
        operators.emit_command(command(rollout, "START", candidate_version="v2"))
    schema_json = json.loads((REPO / "schemas/decision.avsc").read_text())
    schema = parse_schema(schema_json, named_schemas={})
    expected_header = b"\xc3\x01" + bytes.fromhex(fingerprint(to_parsing_canonical_form(schema_json), "CRC-64-AVRO"))
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"py-{rollout}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([processor["decisions"]])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is None or m.error() or m.key() != rollout.encode():
                continue
            value = m.value()
            assert value[:10] == expected_header
            record = schemaless_reader(io.BytesIO(value[10:]), schema, None)
            assert (record["rollout_id"], record["action"], record["to_phase"], record["candidate_version"]) == (
                rollout,
                "START",
                "PROBE",
                "v2",
            )
            assert codec.decode_decision(value).to_phase == "PROBE"
            return
        pytest.fail("no decision for the rollout")
    finally:
        consumer.close()


def test_table_without_a_broker_fails_safe_to_the_baseline():
    table = DecisionTable("127.0.0.1:1", "nowhere", stale_after=1.0)
    try:
        assert not table.wait_ready(1.0)
        assert table.state() == "loading"
        assert not table.should_use_new_version("r", "k")
        assert table.route("r", "k").reason == "loading"
    finally:
        table.close()
    assert table.state() == "stale"
