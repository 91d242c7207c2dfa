//! The Kafka shell: everything that talks to the brokers (consumer, producer, rebalance
//! context, topic admin, state restore, retries of transient metadata errors). The rollout
//! engine never sees rdkafka types.

pub mod admin;
pub mod audit;
pub mod client;
pub mod operate;
pub mod processor;
pub mod read;
pub mod restore;
pub mod retry;
