from rollout_breaker import codec
from rollout_breaker.table import CatchUp, Freshness, Table, LOADING, READY, STALE


def decision(rid, seq, phase, percent):
    m = codec.VariantMetrics(0, 0, 0.0, 0.0, 0.0, 0.0, 0.0)
    return codec.Decision(
        rid, seq, "ADVANCE", "OFF", phase, percent, "HALF_OPEN", False, "", codec.MetricsSnapshot(0, 0, m, m),
        1_764_222_000_000, "AUTOMATIC", "watchdog", "v2",
    )


def test_keeps_the_highest_sequence_and_tombstones_remove():
    t = Table()
    assert t.apply(decision("r", 2, "SMALL", 5.0))
    assert not t.apply(decision("r", 1, "PROBE", 1.0))
    assert not t.apply(decision("r", 2, "FULL", 100.0))
    assert t.get("r").phase == "SMALL"
    assert t.apply(decision("r", 3, "OFF", 0.0))
    assert t.remove("r") and len(t) == 0
    assert t.lookup("r", "k").reason == "unknown"


def test_a_warning_changes_no_route():
    t = Table()
    t.apply(decision("r", 2, "SMALL", 5.0))
    keys = [f"user-{i}" for i in range(2000)]
    before = [t.lookup("r", k).use_candidate for k in keys]
    w = decision("r", 3, "SMALL", 5.0)
    w.action, w.from_phase = "WARNING", "SMALL"
    w.warning = codec.Warning("failures", 8.1, 7.9, False, 60_000)
    # What a router reads off the topic: the record survives the wire, then the table.
    w = codec.decode(codec.Decision, codec.encode(w, "avro"), "avro")
    assert t.apply(w)
    assert (t.get("r").phase, t.get("r").traffic_percent, t.get("r").sequence) == ("SMALL", 5.0, 3)
    after = [t.lookup("r", k).use_candidate for k in keys]
    assert before == after and any(after) and not all(after)


def test_unknown_off_and_full():
    t = Table()
    t.apply(decision("off", 1, "OFF", 0.0))
    t.apply(decision("full", 1, "FULL", 100.0))
    for k in range(500):
        assert not t.lookup("off", f"u{k}").use_candidate
        assert t.lookup("full", f"u{k}").use_candidate
    assert not t.lookup("nope", "k").use_candidate


def test_freshness_loading_ready_stale():
    f = Freshness(15.0)
    assert f.state(100) == LOADING
    f.caught_up(10)
    assert f.state(20) == READY
    assert f.state(25) == READY
    assert f.state(25.5) == STALE
    f.caught_up(5)  # an older probe does not move freshness back
    assert f.state(25.5) == STALE
    f.caught_up(20)
    assert f.state(30) == READY


def test_catch_up_uses_positions_and_low_marks():
    c = CatchUp(0.0, [(0, 0, 10), (1, 5, 5)])
    assert not c.is_reached(lambda p: None)
    assert c.is_reached(lambda p: {0: 10}.get(p))
    assert not c.is_reached(lambda p: {0: 9}.get(p))


def scoped(rid, seq, phase, percent, segment=None, region=None):
    d = decision(rid, seq, phase, percent)
    d.segment, d.region = segment, region
    # Through the wire, as a router reads it.
    return codec.decode(codec.Decision, codec.encode(d, "avro"), "avro")


def test_scoped_rows_route_their_scope_as_the_rust_table():
    t = Table()
    t.apply(decision("r", 9, "FULL", 100.0))
    assert t.apply(scoped("r", 2, "FULL", 100.0, region="eu"))
    t.apply(scoped("r", 1, "OFF", 0.0, region="us"))
    t.apply(scoped("r", 1, "OFF", 0.0, segment="enterprise"))
    t.apply(scoped("r", 1, "FULL", 100.0, segment="enterprise", region="eu"))
    assert len(t) == 5 and t.get("r").sequence == 9, "a scope's row never replaces the rollout's"

    def yes(segment=None, region=None):
        return t.lookup("r", "k", segment, region).use_candidate

    assert yes() and yes(region="eu") and not yes(region="us")
    assert not yes(segment="enterprise") and yes(segment="enterprise", region="eu")
    assert yes(segment="free", region="eu") and not yes(segment="free", region="us")
    assert t.lookup("r", "k", None, "mars").reason == "unknown_scope"
    assert t.lookup("r", "k", "enterprise", "us").reason == "unknown_scope"
    assert t.lookup("x", "k", None, "eu").reason == "unknown"
    assert t.remove("r#region=us") and t.remove("r#region=eu") and t.remove("r#segment=enterprise#region=eu")
    assert yes(region="mars"), "no region rows left: the region is ignored"
    # Sticky across scopes: a key on the candidate at 5 % stays on it at 20 %.
    t.apply(scoped("s", 1, "SMALL", 5.0, region="eu"))
    t.apply(scoped("s", 1, "MEDIUM", 20.0, region="us"))
    for i in range(2000):
        if t.lookup("s", f"u{i}", None, "eu").use_candidate:
            assert t.lookup("s", f"u{i}", None, "us").use_candidate
