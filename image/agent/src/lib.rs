//! raibid-agent: a small synchronous CI agent.
//!
//! It takes one job from a Redis stream (consumer group), clones the
//! repository, runs the Rust pipeline and records the result in Redis.
//! See README.md for the contract.

pub mod config;
pub mod exec;
pub mod health;
pub mod job;
pub mod log;
pub mod queue;
pub mod resp;
pub mod runner;
pub mod timefmt;
