//! The job queue: a Redis stream read through a consumer group.

use crate::config::Config;
use crate::resp::{parse_xautoclaim, parse_xreadgroup, Conn, Entry, RedisError, Value};
use std::time::Duration;

/// Status keys live one day, log streams seven.
pub const STATUS_TTL_SECS: u64 = 86_400;
pub const LOG_TTL_SECS: u64 = 7 * 86_400;
pub const LOG_MAXLEN: u64 = 10_000;

/// What the agent needs from the queue (a trait so the run logic can be
/// tested with a fake).
pub trait Queue {
    /// `XGROUP CREATE <stream> <group> 0 MKSTREAM`, BUSYGROUP ignored.
    fn ensure_group(&mut self) -> Result<(), String>;
    /// Claims one entry pending for at least `min_idle_ms` on any consumer.
    fn autoclaim(&mut self, min_idle_ms: u64) -> Result<Option<Entry>, String>;
    /// Reads one new entry, blocking up to `block_ms`.
    fn read_new(&mut self, block_ms: u64) -> Result<Option<Entry>, String>;
    /// How often an entry has been delivered (0 when not pending).
    fn delivery_count(&mut self, entry_id: &str) -> Result<u64, String>;
    fn ack(&mut self, entry_id: &str) -> Result<(), String>;
    /// Stores `raibid:job:<id>:status` (JSON) with a one-day TTL.
    fn set_status(&mut self, job_id: &str, json: &str) -> Result<(), String>;
    /// Appends a line to `raibid:logs:<id>`.
    fn log_line(
        &mut self,
        job_id: &str,
        step: &str,
        stream: &str,
        line: &str,
    ) -> Result<(), String>;
    /// Removes this agent's consumer when it has no pending entries.
    fn release_consumer(&mut self) -> Result<bool, String>;
    /// Removes the other consumers that have nothing pending and were idle at least
    /// `min_idle_ms` (agents killed before they could remove themselves); returns their names.
    fn remove_idle_consumers(&mut self, min_idle_ms: u64) -> Result<Vec<String>, String>;
}

/// Consumers of `XINFO CONSUMERS` (RESP2: one flat name/value array per consumer) that have
/// nothing pending, were idle at least `min_idle_ms` and are not `me`.
pub fn idle_consumers(v: &Value, me: &str, min_idle_ms: u64) -> Vec<String> {
    let mut out = Vec::new();
    for c in v.as_array().unwrap_or_default() {
        let fields = c.as_array().unwrap_or_default();
        let get = |k: &str| {
            fields
                .chunks(2)
                .find(|p| p.len() == 2 && p[0].as_string().as_deref() == Some(k))
                .map(|p| &p[1])
        };
        let (Some(name), Some(pending), Some(idle)) = (
            get("name").and_then(Value::as_string),
            get("pending").and_then(Value::as_int),
            get("idle").and_then(Value::as_int),
        ) else {
            continue;
        };
        if name != me && pending == 0 && idle >= 0 && idle as u64 >= min_idle_ms {
            out.push(name);
        }
    }
    out
}

pub fn status_key(job_id: &str) -> String {
    format!("raibid:job:{job_id}:status")
}

pub fn log_key(job_id: &str) -> String {
    format!("raibid:logs:{job_id}")
}

pub struct RedisQueue {
    conn: Conn,
    stream: String,
    group: String,
    consumer: String,
    log_ttl_set_for: Option<String>,
}

fn err(e: RedisError) -> String {
    e.to_string()
}

impl RedisQueue {
    pub fn connect(cfg: &Config) -> Result<RedisQueue, String> {
        let conn = Conn::connect(
            &cfg.redis_host,
            cfg.redis_port,
            cfg.redis_password.as_deref(),
            Duration::from_secs(5),
        )
        .map_err(|e| {
            format!(
                "cannot connect to Redis {}:{}: {e}",
                cfg.redis_host, cfg.redis_port
            )
        })?;
        Ok(RedisQueue {
            conn,
            stream: cfg.stream.clone(),
            group: cfg.group.clone(),
            consumer: cfg.agent_id.clone(),
            log_ttl_set_for: None,
        })
    }
}

/// Limit on XAUTOCLAIM rounds (each scans up to 10 pending entries).
const AUTOCLAIM_ROUNDS: usize = 1000;

impl Queue for RedisQueue {
    fn ensure_group(&mut self) -> Result<(), String> {
        match self.conn.cmd(&[
            "XGROUP",
            "CREATE",
            &self.stream,
            &self.group,
            "0",
            "MKSTREAM",
        ]) {
            Ok(_) => Ok(()),
            Err(RedisError::Server(m)) if m.starts_with("BUSYGROUP") => Ok(()),
            Err(e) => Err(format!("XGROUP CREATE: {e}")),
        }
    }

    fn autoclaim(&mut self, min_idle_ms: u64) -> Result<Option<Entry>, String> {
        let idle = min_idle_ms.to_string();
        let mut cursor = "0-0".to_string();
        for _ in 0..AUTOCLAIM_ROUNDS {
            let v = self
                .conn
                .cmd(&[
                    "XAUTOCLAIM",
                    &self.stream,
                    &self.group,
                    &self.consumer,
                    &idle,
                    &cursor,
                    "COUNT",
                    "1",
                ])
                .map_err(|e| format!("XAUTOCLAIM: {e}"))?;
            let (next, entries) = parse_xautoclaim(&v).map_err(err)?;
            if let Some(e) = entries.into_iter().next() {
                return Ok(Some(e));
            }
            if next == "0-0" {
                return Ok(None);
            }
            cursor = next;
        }
        Ok(None)
    }

    fn read_new(&mut self, block_ms: u64) -> Result<Option<Entry>, String> {
        let block = block_ms.to_string();
        let v = self
            .conn
            .cmd_blocking(
                &[
                    "XREADGROUP",
                    "GROUP",
                    &self.group,
                    &self.consumer,
                    "COUNT",
                    "1",
                    "BLOCK",
                    &block,
                    "STREAMS",
                    &self.stream,
                    ">",
                ],
                Duration::from_millis(block_ms),
            )
            .map_err(|e| format!("XREADGROUP: {e}"))?;
        Ok(parse_xreadgroup(&v).map_err(err)?.into_iter().next())
    }

    fn delivery_count(&mut self, entry_id: &str) -> Result<u64, String> {
        let v = self
            .conn
            .cmd(&[
                "XPENDING",
                &self.stream,
                &self.group,
                entry_id,
                entry_id,
                "1",
            ])
            .map_err(|e| format!("XPENDING: {e}"))?;
        Ok(v.as_array()
            .and_then(|a| a.first())
            .and_then(Value::as_array)
            .and_then(|e| e.get(3))
            .and_then(Value::as_int)
            .unwrap_or(0)
            .max(0) as u64)
    }

    fn ack(&mut self, entry_id: &str) -> Result<(), String> {
        self.conn
            .cmd(&["XACK", &self.stream, &self.group, entry_id])
            .map(|_| ())
            .map_err(|e| format!("XACK: {e}"))
    }

    fn set_status(&mut self, job_id: &str, json: &str) -> Result<(), String> {
        let ttl = STATUS_TTL_SECS.to_string();
        // SET ... EX is SET + EXPIRE in one atomic command
        self.conn
            .cmd(&["SET", &status_key(job_id), json, "EX", &ttl])
            .map(|_| ())
            .map_err(|e| format!("SET status: {e}"))
    }

    fn log_line(
        &mut self,
        job_id: &str,
        step: &str,
        stream: &str,
        line: &str,
    ) -> Result<(), String> {
        let key = log_key(job_id);
        let maxlen = LOG_MAXLEN.to_string();
        self.conn
            .cmd(&[
                "XADD", &key, "MAXLEN", "~", &maxlen, "*", "line", line, "step", step, "stream",
                stream,
            ])
            .map_err(|e| format!("XADD log: {e}"))?;
        if self.log_ttl_set_for.as_deref() != Some(job_id) {
            self.conn
                .cmd(&["EXPIRE", &key, &LOG_TTL_SECS.to_string()])
                .map_err(|e| format!("EXPIRE log: {e}"))?;
            self.log_ttl_set_for = Some(job_id.to_string());
        }
        Ok(())
    }

    fn remove_idle_consumers(&mut self, min_idle_ms: u64) -> Result<Vec<String>, String> {
        let v = self
            .conn
            .cmd(&["XINFO", "CONSUMERS", &self.stream, &self.group])
            .map_err(|e| format!("XINFO CONSUMERS: {e}"))?;
        let mut removed = Vec::new();
        for name in idle_consumers(&v, &self.consumer, min_idle_ms) {
            // DELCONSUMER returns the pending count it dropped: 0 here unless the consumer
            // took an entry since XINFO (then it is not idle; keep it).
            let dropped = self
                .conn
                .cmd(&["XGROUP", "DELCONSUMER", &self.stream, &self.group, &name])
                .map_err(|e| format!("XGROUP DELCONSUMER: {e}"))?;
            if dropped.as_int() == Some(0) {
                removed.push(name);
            }
        }
        Ok(removed)
    }

    fn release_consumer(&mut self) -> Result<bool, String> {
        let v = self
            .conn
            .cmd(&[
                "XPENDING",
                &self.stream,
                &self.group,
                "-",
                "+",
                "1",
                &self.consumer,
            ])
            .map_err(|e| format!("XPENDING: {e}"))?;
        if v.as_array().is_some_and(|a| !a.is_empty()) {
            return Ok(false);
        }
        self.conn
            .cmd(&[
                "XGROUP",
                "DELCONSUMER",
                &self.stream,
                &self.group,
                &self.consumer,
            ])
            .map_err(|e| format!("XGROUP DELCONSUMER: {e}"))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(name: &str, pending: i64, idle: i64) -> Value {
        Value::Array(vec![
            Value::Bulk(b"name".to_vec()),
            Value::Bulk(name.as_bytes().to_vec()),
            Value::Bulk(b"pending".to_vec()),
            Value::Int(pending),
            Value::Bulk(b"idle".to_vec()),
            Value::Int(idle),
            Value::Bulk(b"inactive".to_vec()),
            Value::Int(idle),
        ])
    }

    #[test]
    fn idle_consumers_keeps_busy_recent_and_self() {
        let reply = Value::Array(vec![
            consumer("dead-idle", 0, 700_000),
            consumer("dead-with-work", 2, 900_000),
            consumer("recent", 0, 10),
            consumer("me", 0, 900_000),
        ]);
        assert_eq!(
            idle_consumers(&reply, "me", 600_000),
            vec!["dead-idle".to_string()]
        );
        assert!(idle_consumers(&Value::Array(vec![]), "me", 0).is_empty());
        assert!(idle_consumers(&Value::Nil, "me", 0).is_empty());
    }
}
