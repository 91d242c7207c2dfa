import json

import pytest
from fastavro import parse_schema, schemaless_reader
import io

from conftest import FIXTURES, REPO
from rollout_breaker import codec
from rollout_breaker.codec import AvroConfluent, Decision, ExecutionEvent, RolloutCommand

GOLDEN = FIXTURES / "golden"
KINDS = {
    "event": ExecutionEvent,
    "decision": Decision,
    "command": RolloutCommand,
    "warning": Decision,
    "scoped_event": ExecutionEvent,
    "scoped_decision": Decision,
    "scoped_command": RolloutCommand,
}
ENCODINGS = {"json": "json", "avro": "avro", "confluent.avro": AvroConfluent(42)}


def golden(name):
    return (GOLDEN / name).read_bytes()


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("suffix", ENCODINGS)
def test_golden_bytes_decode_and_reencode_identically(name, suffix):
    cls, enc = KINDS[name], ENCODINGS[suffix]
    data = golden(f"{name}.{suffix}")
    record = codec.decode(cls, data, enc)
    assert codec.decode_any(cls, data) == record
    if suffix == "json":
        # JSON is compared as values: number formatting may differ between the two writers, and
        # an optional field may be null or absent (the Rust writer leaves it out).
        ours = {k: v for k, v in json.loads(codec.encode(record, enc)).items() if v is not None}
        assert ours == json.loads(data)
    else:
        assert codec.encode(record, enc) == data


def test_all_encodings_decode_to_the_same_record():
    for name, cls in KINDS.items():
        records = [codec.decode(cls, golden(f"{name}.{s}"), e) for s, e in ENCODINGS.items()]
        assert records[0] == records[1] == records[2]


def test_v1_golden_files_still_decode():
    want = codec.decode(Decision, golden("decision.avro"), "avro")
    want.phase_started_ms = None
    for s, e in ENCODINGS.items():
        assert codec.decode(Decision, golden(f"v1/decision.{s}"), e) == want
        old = codec.decode(RolloutCommand, golden(f"v1/command.{s}"), e)
        new = codec.decode(RolloutCommand, golden("command.avro"), "avro")
        # The policy text is the Rust writer's of its day (fields added since are absent).
        assert json.loads(old.policy_json)["max_latency_ms"] == json.loads(new.policy_json)["max_latency_ms"]
        old.policy_json = new.policy_json
        assert old == new


def test_v2_golden_files_still_decode():
    want = codec.decode(Decision, golden("decision.avro"), "avro")
    assert want.warning is None
    for s, e in ENCODINGS.items():
        assert codec.decode(Decision, golden(f"v2/decision.{s}"), e) == want


def test_golden_files_before_scopes_still_decode():
    for s, e in ENCODINGS.items():
        for old, name, cls in [
            ("v3/decision", "decision", Decision),
            ("v3/warning", "warning", Decision),
            ("event_v1/event", "event", ExecutionEvent),
            ("command_v2/command", "command", RolloutCommand),
        ]:
            assert codec.decode(cls, golden(f"{old}.{s}"), e) == codec.decode(cls, golden(f"{name}.{s}"), e)


def test_scoped_records_carry_their_scope():
    d = codec.decode(Decision, golden("scoped_decision.avro"), "avro")
    assert (d.segment, d.region) == ("enterprise", "eu-west")
    c = codec.decode(RolloutCommand, golden("scoped_command.avro"), "avro")
    assert (c.segment, c.region, c.kind) == (None, "eu-west", "PAUSE")
    assert codec.decode(ExecutionEvent, golden("scoped_event.avro"), "avro").region == "eu-west"


def test_warning_decisions_carry_their_warning_and_only_they_do():
    w = codec.decode(Decision, golden("warning.avro"), "avro")
    assert w.action == "WARNING" and w.from_phase == w.to_phase == "SMALL"
    assert w.warning is not None and w.warning.metric == "failures" and not w.warning.cleared
    assert w.warning.projected_rollback_ms == 95_000
    bare = json.loads(golden("warning.json"))
    del bare["warning"]
    with pytest.raises(codec.DecodeError) as e:
        codec.decode(Decision, json.dumps(bare).encode(), "json")
    assert e.value.reason == "invalid_field"


def test_fingerprints_are_fastavros_and_the_rust_fixtures():
    fixture = json.loads((FIXTURES / "avro_fingerprints.json").read_text(encoding="utf-8"))
    by_file = {e["name"]: e["fingerprint_hex"] for e in fixture["schema_files"]}
    for cls, file in [
        (ExecutionEvent, "schemas/execution_event.avsc"),
        (Decision, "schemas/decision.avsc"),
        (RolloutCommand, "schemas/rollout_command.avsc"),
    ]:
        assert codec.fingerprint(cls).hex() == by_file[file]
    for name in KINDS:
        assert golden(f"{name}.avro")[2:10].hex() in by_file.values()


def test_packaged_schemas_are_the_repositorys():
    import rollout_breaker

    pkg = __import__("pathlib").Path(rollout_breaker.__file__).parent / "schemas"
    for p in list((REPO / "schemas").glob("*.avsc")) + list((REPO / "schemas/history").glob("*.avsc")):
        rel = p.relative_to(REPO / "schemas")
        assert (pkg / rel).read_text(encoding="utf-8") == p.read_text(encoding="utf-8"), rel


def test_decision_decodes_with_plain_fastavro_and_the_documented_framing():
    """The acceptance path: schemas/ + 'C3 01, 8-byte fingerprint, body', nothing of ours."""
    data = golden("decision.avro")
    schema = parse_schema(json.loads((REPO / "schemas/decision.avsc").read_text()), named_schemas={})
    assert data[:2] == b"\xc3\x01"
    rec = schemaless_reader(io.BytesIO(data[10:]), schema, None)
    assert rec["rollout_id"] == "checkout-agent" and rec["to_phase"] == "OFF"


def test_errors_carry_the_rust_reasons():
    event = codec.decode(ExecutionEvent, golden("event.json"))
    avro = codec.encode(event, "avro")
    cases = [
        (b"\xc3\x02" + avro[2:], "avro", "bad_magic"),
        (avro[:2] + b"\0" * 8 + avro[10:], "avro", "unknown_fingerprint"),
        (avro[:-3], "avro", "truncated"),
        (avro + b"\0", "avro", "trailing_bytes"),
        (codec.encode(event, AvroConfluent(7)), AvroConfluent(8), "unknown_schema_id"),
        (b"{nope", "json", "invalid_json"),
        (b'{"rollout_id":"r"}', "json", "missing_field"),
        (golden("event.json").replace(b'"CANDIDATE"', b'"candidate"'), "json", "invalid_field"),
        (golden("event.json").replace(b"1764222000000", b"1"), "json", "invalid_timestamp"),
        (golden("event.json").replace(b"1234.5", b"-1"), "json", "invalid_latency"),
    ]
    for data, enc, reason in cases:
        with pytest.raises(codec.DecodeError) as e:
            codec.decode(ExecutionEvent, data, enc)
        assert e.value.reason == reason, (reason, e.value)
    # A decision's header on an event topic.
    with pytest.raises(codec.DecodeError) as e:
        codec.decode(ExecutionEvent, golden("decision.avro"), "avro")
    assert e.value.reason == "unknown_fingerprint"
    # Confluent framing may carry an id registered for the type.
    assert codec.decode(ExecutionEvent, codec.encode(event, AvroConfluent(7)), AvroConfluent(8), schema_ids=[7]) == event
