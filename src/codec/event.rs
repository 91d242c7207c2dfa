//! `ExecutionEvent` ⇄ `schemas/execution_event.avsc` and JSON.

use std::collections::BTreeMap;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::avro::{self, Reader};
use super::json::{self, req, Str};
use super::{
    check_finite, check_latency, check_rollout_id, check_timestamp, position, symbol, symbol_named,
    DecodeError, RecordKind, WireRecord,
};
use crate::engine::{ExecutionEvent, Variant};

const VARIANTS: [Variant; 2] = [Variant::Baseline, Variant::Candidate];
const VARIANT_NAMES: [&str; 2] = ["BASELINE", "CANDIDATE"];

impl WireRecord for ExecutionEvent {
    const KIND: RecordKind = RecordKind::ExecutionEvent;
}

impl super::private::Body for ExecutionEvent {
    fn write_avro(&self, out: &mut Vec<u8>) {
        avro::put_str(out, &self.rollout_id);
        avro::put_index(out, position(&VARIANTS, &self.variant));
        avro::put_str(out, &self.version);
        avro::put_opt_str(out, self.request_key.as_deref());
        avro::put_bool(out, self.success);
        avro::put_double(out, self.latency.get());
        avro::put_long(out, self.timestamp);
        avro::put_opt_double(out, self.cost);
        avro::put_opt_str(out, self.segment.as_deref());
        if !self.extra.is_empty() {
            avro::put_long(out, self.extra.len() as i64);
            for (k, v) in &self.extra {
                avro::put_str(out, k);
                avro::put_double(out, *v);
            }
        }
        avro::put_long(out, 0);
        avro::put_opt_str(out, self.region.as_deref());
    }

    fn read_avro(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let rollout_id = check_rollout_id(r.str("rollout_id")?)?;
        let variant = symbol(&VARIANTS, r.index("variant", VARIANTS.len())?);
        let version = CompactString::from(r.str("version")?);
        let request_key = r.opt_str("request_key")?.map(CompactString::from);
        let success = r.boolean("success")?;
        let latency = check_latency(r.double("latency_ms")?)?;
        let timestamp = check_timestamp("timestamp_ms", r.long("timestamp_ms")?)?;
        let cost = r
            .opt_double("cost")?
            .map(|c| check_finite("cost", c))
            .transpose()?;
        let segment = r.opt_str("segment")?.map(str::to_owned);
        let mut extra = BTreeMap::new();
        // Each entry is at least a 1-byte key length and an 8-byte double.
        loop {
            let n = r.block_len("extra_metrics", 9)?;
            if n == 0 {
                break;
            }
            for _ in 0..n {
                let k = r.str("extra_metrics")?.to_owned();
                let v = check_finite("extra_metrics", r.double("extra_metrics")?)?;
                extra.insert(k, v);
            }
        }
        // v1 records end here (see `schemas/history/`).
        let region = if r.is_empty() {
            None
        } else {
            r.opt_str("region")?.map(str::to_owned)
        };
        Ok(ExecutionEvent {
            rollout_id,
            variant,
            version,
            request_key,
            success,
            latency,
            timestamp,
            cost,
            segment,
            region,
            extra,
        })
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        json::write(
            &EventOut {
                rollout_id: &self.rollout_id,
                variant: VARIANT_NAMES[position(&VARIANTS, &self.variant)],
                version: &self.version,
                request_key: self.request_key.as_deref(),
                success: self.success,
                latency_ms: self.latency.get(),
                timestamp_ms: self.timestamp,
                cost: self.cost,
                segment: self.segment.as_deref(),
                extra_metrics: &self.extra,
                region: self.region.as_deref(),
            },
            out,
        );
    }

    fn read_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        let e: EventIn<'_> = json::parse(bytes)?;
        let rollout_id = check_rollout_id(&req(e.rollout_id, "rollout_id")?.0)?;
        let variant = symbol_named(
            "variant",
            &VARIANT_NAMES,
            &VARIANTS,
            &req(e.variant, "variant")?.0,
        )?;
        let version = CompactString::from(req(e.version, "version")?.0);
        let success = req(e.success, "success")?;
        let latency = check_latency(req(e.latency_ms, "latency_ms")?)?;
        let timestamp = check_timestamp("timestamp_ms", req(e.timestamp_ms, "timestamp_ms")?)?;
        let cost = e.cost.map(|c| check_finite("cost", c)).transpose()?;
        let extra = e.extra_metrics.unwrap_or_default();
        for v in extra.values() {
            check_finite("extra_metrics", *v)?;
        }
        Ok(ExecutionEvent {
            rollout_id,
            variant,
            version,
            request_key: e.request_key.map(|s| CompactString::from(s.0)),
            success,
            latency,
            timestamp,
            cost,
            segment: e.segment.map(|s| s.0.into_owned()),
            region: e.region.map(|s| s.0.into_owned()),
            extra,
        })
    }
}

#[derive(Serialize)]
struct EventOut<'a> {
    rollout_id: &'a str,
    variant: &'static str,
    version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_key: Option<&'a str>,
    success: bool,
    latency_ms: f64,
    timestamp_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    segment: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extra_metrics: &'a BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<&'a str>,
}

#[derive(Deserialize)]
struct EventIn<'a> {
    #[serde(borrow)]
    rollout_id: Option<Str<'a>>,
    #[serde(borrow)]
    variant: Option<Str<'a>>,
    #[serde(borrow)]
    version: Option<Str<'a>>,
    #[serde(borrow)]
    request_key: Option<Str<'a>>,
    success: Option<bool>,
    latency_ms: Option<f64>,
    timestamp_ms: Option<i64>,
    cost: Option<f64>,
    #[serde(borrow)]
    segment: Option<Str<'a>>,
    #[serde(borrow)]
    region: Option<Str<'a>>,
    extra_metrics: Option<BTreeMap<String, f64>>,
}
