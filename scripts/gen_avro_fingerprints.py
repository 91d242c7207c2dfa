#!/usr/bin/env python3
"""Regenerates tests/fixtures/avro_fingerprints.json with an independent implementation (fastavro).

Usage: pip install fastavro && python3 scripts/gen_avro_fingerprints.py > tests/fixtures/avro_fingerprints.json
For every schema in schemas/ and schemas/history/, and a few schemas that exercise the corners
of the specification's Parsing Canonical Form, the file holds the canonical form and its
CRC-64-AVRO fingerprint: `fingerprint_hex` is fastavro's hex string, which is the 8 header bytes
of single-object encoding in wire order (little-endian); `fingerprint` is the same as a u64.
`tests/codec_fingerprints.rs` and `python/tests/` check against this file.
"""
import json
import pathlib

from fastavro.schema import fingerprint, to_parsing_canonical_form

ROOT = pathlib.Path(__file__).resolve().parent.parent

CASES = {
    "logical timestamp": {"type": "long", "logicalType": "timestamp-millis"},
    "logical decimal": {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2},
    "union with a logical type": ["null", {"type": "long", "logicalType": "timestamp-millis"}],
    "primitive object": {"type": "string"},
    "nested namespaces and references": {
        "doc": "d",
        "type": "record",
        "name": "R",
        "namespace": "ns",
        "aliases": ["Q"],
        "fields": [
            {"name": "e", "doc": "x", "default": "A",
             "type": {"symbols": ["A", "B"], "name": "E", "type": "enum", "default": "A"}},
            {"name": "again", "type": "E"},
            {"name": "f", "type": {"type": "fixed", "size": 16, "name": "other.F"}},
            {"name": "g", "type": {"type": "map", "values": {"type": "array", "items": "other.F"}}},
            {"name": "inner", "type": {"type": "record", "name": "I", "namespace": "deep",
                                       "fields": [{"name": "r", "type": ["null", "I"]}]}},
        ],
    },
}


def entry(name, schema):
    text = schema if isinstance(schema, str) else json.dumps(schema)
    canonical = to_parsing_canonical_form(json.loads(text))
    hex_le = fingerprint(canonical, "CRC-64-AVRO")
    return {
        "name": name,
        "schema": text,
        "canonical_form": canonical,
        "fingerprint_hex": hex_le,
        "fingerprint": int.from_bytes(bytes.fromhex(hex_le), "little"),
    }


files = sorted((ROOT / "schemas").glob("*.avsc")) + sorted((ROOT / "schemas/history").glob("*.avsc"))
print(json.dumps({
    "algorithm": "CRC-64-AVRO of the Parsing Canonical Form (fastavro.schema.to_parsing_canonical_form + fingerprint)",
    "schema_files": [
        {**entry(str(p.relative_to(ROOT)), p.read_text()), "schema": None} for p in files
    ],
    "cases": [entry(n, s) for n, s in CASES.items()],
}, indent=1, ensure_ascii=False))
