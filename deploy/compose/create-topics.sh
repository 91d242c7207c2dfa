#!/usr/bin/env bash
# One-shot topic creation for docker-compose.yml (service `topic-init`), with the settings
# the processor requires and would otherwise create itself: co-partitioned topics, a compacted
# decisions topic, broker-stamped (LogAppendTime) events and commands. Idempotent.
set -euo pipefail
BOOTSTRAP="${BOOTSTRAP:-kafka:9092}"
PARTITIONS="${PARTITIONS:-6}"
topics=/opt/kafka/bin/kafka-topics.sh

create() {
    local topic=$1
    shift
    "$topics" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
        --topic "$topic" --partitions "$PARTITIONS" --replication-factor 1 "$@"
}

create rollout-events --config message.timestamp.type=LogAppendTime
create rollout-commands --config message.timestamp.type=LogAppendTime
create rollout-decisions --config cleanup.policy=compact
create rollout-dead-letter
"$topics" --bootstrap-server "$BOOTSTRAP" --describe
