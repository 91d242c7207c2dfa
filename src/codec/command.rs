//! `Command` ⇄ `schemas/rollout_command.avsc` and JSON.

use serde::{Deserialize, Serialize};

use super::avro::{self, Reader};
use super::json::{self, req, Str};
use super::{
    check_policy, check_rollout_id, check_scope_part, check_timestamp, position, symbol,
    symbol_named, DecodeError, RecordKind, WireRecord,
};
use crate::engine::{Command, CommandKind, Policy, Scope};

const KINDS: [CommandKind; 7] = CommandKind::ALL;
const KIND_NAMES: [&str; 7] = [
    "START", "PAUSE", "RESUME", "PROMOTE", "ABORT", "RETRY", "RETIRE",
];

fn policy_to_json(policy: &Policy) -> String {
    // A policy is a struct of numbers and enums: serializing it cannot fail.
    serde_json::to_string(policy).expect("a policy serializes to JSON")
}

impl WireRecord for Command {
    const KIND: RecordKind = RecordKind::RolloutCommand;
}

impl super::private::Body for Command {
    fn write_avro(&self, out: &mut Vec<u8>) {
        avro::put_str(out, &self.rollout_id);
        avro::put_index(out, position(&KINDS, &self.kind));
        avro::put_str(out, &self.actor);
        avro::put_str(out, &self.reason);
        avro::put_long(out, self.timestamp);
        avro::put_opt_str(out, self.candidate_version.as_deref());
        avro::put_opt_str(out, self.baseline_version.as_deref());
        avro::put_opt_str(out, self.policy.as_ref().map(policy_to_json).as_deref());
        avro::put_opt_str(out, self.scope.segment.as_deref());
        avro::put_opt_str(out, self.scope.region.as_deref());
    }

    fn read_avro(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut c = Command {
            rollout_id: check_rollout_id(r.str("rollout_id")?)?,
            kind: symbol(&KINDS, r.index("kind", KINDS.len())?),
            actor: r.str("actor")?.to_owned(),
            reason: r.str("reason")?.to_owned(),
            timestamp: check_timestamp("timestamp_ms", r.long("timestamp_ms")?)?,
            candidate_version: r.opt_str("candidate_version")?.map(str::to_owned),
            baseline_version: r.opt_str("baseline_version")?.map(str::to_owned),
            policy: r.opt_str("policy_json")?.map(check_policy).transpose()?,
            scope: Scope::DEFAULT,
        };
        // v1 records end here (see `schemas/history/`).
        if !r.is_empty() {
            c.scope.segment = check_scope_part("segment", r.opt_str("segment")?)?;
            c.scope.region = check_scope_part("region", r.opt_str("region")?)?;
        }
        Ok(c)
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        json::write(
            &CommandOut {
                rollout_id: &self.rollout_id,
                kind: KIND_NAMES[position(&KINDS, &self.kind)],
                actor: &self.actor,
                reason: &self.reason,
                timestamp_ms: self.timestamp,
                candidate_version: self.candidate_version.as_deref(),
                baseline_version: self.baseline_version.as_deref(),
                policy_json: self.policy.as_ref().map(policy_to_json),
                segment: self.scope.segment.as_deref(),
                region: self.scope.region.as_deref(),
            },
            out,
        );
    }

    fn read_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        let c: CommandIn<'_> = json::parse(bytes)?;
        Ok(Command {
            rollout_id: check_rollout_id(&req(c.rollout_id, "rollout_id")?.0)?,
            kind: symbol_named("kind", &KIND_NAMES, &KINDS, &req(c.kind, "kind")?.0)?,
            actor: req(c.actor, "actor")?.0.into_owned(),
            reason: req(c.reason, "reason")?.0.into_owned(),
            timestamp: check_timestamp("timestamp_ms", req(c.timestamp_ms, "timestamp_ms")?)?,
            candidate_version: c.candidate_version.map(|s| s.0.into_owned()),
            baseline_version: c.baseline_version.map(|s| s.0.into_owned()),
            policy: c.policy_json.as_deref().map(check_policy).transpose()?,
            scope: Scope {
                segment: check_scope_part("segment", c.segment.as_ref().map(|s| &*s.0))?,
                region: check_scope_part("region", c.region.as_ref().map(|s| &*s.0))?,
            },
        })
    }
}

#[derive(Serialize)]
struct CommandOut<'a> {
    rollout_id: &'a str,
    kind: &'static str,
    actor: &'a str,
    reason: &'a str,
    timestamp_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_json: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    segment: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<&'a str>,
}

#[derive(Deserialize)]
struct CommandIn<'a> {
    #[serde(borrow)]
    rollout_id: Option<Str<'a>>,
    #[serde(borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    actor: Option<Str<'a>>,
    #[serde(borrow)]
    reason: Option<Str<'a>>,
    timestamp_ms: Option<i64>,
    #[serde(borrow)]
    candidate_version: Option<Str<'a>>,
    #[serde(borrow)]
    baseline_version: Option<Str<'a>>,
    #[serde(default, deserialize_with = "json::policy_text")]
    policy_json: Option<String>,
    #[serde(borrow)]
    segment: Option<Str<'a>>,
    #[serde(borrow)]
    region: Option<Str<'a>>,
}
