//! Agent log output on stdout, as text or JSON lines (`LOG_FORMAT`).

use serde::Serialize;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// Selects JSON-lines output instead of text.
pub fn set_json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

#[derive(Serialize)]
struct Event<'a> {
    ts: String,
    level: &'a str,
    job_id: Option<&'a str>,
    msg: &'a str,
}

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    level: &'a str,
    job_id: &'a str,
    step: &'a str,
    stream: &'a str,
    line: &'a str,
}

fn emit(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

/// An agent event (`level`: info, warn, error).
pub fn event(level: &str, job: Option<&str>, msg: &str) {
    let ts = crate::timefmt::now();
    let s = if JSON.load(Ordering::Relaxed) {
        serde_json::to_string(&Event {
            ts,
            level,
            job_id: job,
            msg,
        })
        .unwrap_or_default()
    } else {
        match job {
            Some(j) => format!("{ts} {level:<5} [{j}] {msg}"),
            None => format!("{ts} {level:<5} {msg}"),
        }
    };
    emit(&s);
}

/// A line of output of a job step.
pub fn line(job: &str, step: &str, stream: &str, line: &str) {
    let s = if JSON.load(Ordering::Relaxed) {
        serde_json::to_string(&Line {
            ts: crate::timefmt::now(),
            level: "info",
            job_id: job,
            step,
            stream,
            line,
        })
        .unwrap_or_default()
    } else if stream == "stderr" {
        format!("[{job}/{step}!] {line}")
    } else {
        format!("[{job}/{step}] {line}")
    };
    emit(&s);
}
