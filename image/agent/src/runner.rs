//! The run state machine: health → connect → take an entry → run → report.

use crate::config::{Config, Mode, Step};
use crate::exec::{StepOutcome, Stream};
use crate::health::{Report, Status};
use crate::job::{parse_job, redact_url, InvalidJob, Job};
use crate::log;
use crate::queue::Queue;
use crate::resp::Entry;
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// Receives `(step, stream, line)` for every output line.
pub type Sink<'a> = &'a mut dyn FnMut(&str, Stream, &str);

/// Checks out repositories and runs steps.
pub trait Executor {
    fn checkout(
        &mut self,
        url: &str,
        job: &Job,
        dir: &Path,
        timeout: Duration,
        sink: Sink<'_>,
    ) -> Result<(), String>;
    fn run_step(
        &mut self,
        step: Step,
        dir: &Path,
        timeout: Duration,
        sink: Sink<'_>,
    ) -> StepOutcome;
}

pub const EXIT_OK: i32 = 0;
pub const EXIT_JOB_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_HEALTH: i32 = 3;
pub const EXIT_INFRA: i32 = 4;

/// Result of taking (or not) one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Idle,
    Success,
    JobFailed,
    /// Stopped by this signal; the entry stays pending.
    Cancelled(i32),
    /// The job could not be run (clone failed...); the entry stays pending.
    InfraJob(String),
    /// Redis failed.
    QueueError(String),
}

impl Outcome {
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Idle | Outcome::Success => EXIT_OK,
            Outcome::JobFailed => EXIT_JOB_FAILED,
            Outcome::Cancelled(sig) => 128 + sig,
            Outcome::InfraJob(_) | Outcome::QueueError(_) => EXIT_INFRA,
        }
    }
}

pub fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGHUP => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}

#[derive(Serialize)]
struct StatusDoc<'a> {
    status: &'a str,
    agent_id: &'a str,
    updated_at: String,
    message: &'a str,
    exit_code: Option<i32>,
    step: Option<&'a str>,
}

/// The JSON stored in `raibid:job:<id>:status`.
pub fn status_json(
    status: &str,
    agent_id: &str,
    message: &str,
    exit_code: Option<i32>,
    step: Option<&str>,
) -> String {
    serde_json::to_string(&StatusDoc {
        status,
        agent_id,
        updated_at: crate::timefmt::now(),
        message,
        exit_code,
        step,
    })
    .unwrap_or_default()
}

/// Where a job's output lines go: the agent's stdout and `raibid:logs:<id>`. A queue that cannot
/// store them is reported once per sink, and the job goes on.
fn log_sink<'s, Q: Queue>(queue: &'s mut Q, id: &'s str) -> impl FnMut(&str, Stream, &str) + 's {
    let mut warned = false;
    move |step: &str, stream: Stream, line: &str| {
        log::line(id, step, stream.name(), line);
        if let Err(e) = queue.log_line(id, step, stream.name(), line) {
            if !warned {
                warned = true;
                log::event("warn", Some(id), &format!("cannot store log lines: {e}"));
            }
        }
    }
}

pub struct Agent<'a, Q: Queue, E: Executor> {
    pub cfg: &'a Config,
    pub queue: Q,
    pub exec: E,
    pub signal: &'a AtomicI32,
}

/// Health first (any failure: exit 3 without touching the queue), then
/// connect and run.
pub fn run_agent<Q: Queue, E: Executor>(
    cfg: &Config,
    health: impl FnOnce() -> Report,
    connect: impl FnOnce() -> Result<Q, String>,
    exec: E,
    signal: &AtomicI32,
) -> i32 {
    let report = health();
    if report.status() == Status::Fail {
        for c in report.failing() {
            log::event(
                "error",
                None,
                &format!("health check failed: {}: {}", c.name, c.message),
            );
        }
        log::event("error", None, &report.summary());
        return EXIT_HEALTH;
    }
    let queue = match connect() {
        Ok(q) => q,
        Err(e) => {
            log::event("error", None, &e);
            return EXIT_INFRA;
        }
    };
    Agent {
        cfg,
        queue,
        exec,
        signal,
    }
    .run()
}

impl<Q: Queue, E: Executor> Agent<'_, Q, E> {
    fn signalled(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// Steps 2–5 (repeated in loop mode); returns the exit status.
    pub fn run(&mut self) -> i32 {
        if let Err(e) = self.queue.ensure_group() {
            log::event("error", None, &format!("queue error: {e}"));
            return EXIT_INFRA;
        }
        loop {
            if let Some(sig) = self.signalled() {
                log::event(
                    "info",
                    None,
                    &format!("received {}; stopping", signal_name(sig)),
                );
                return 128 + sig;
            }
            let taken = match self.take() {
                Ok(t) => t,
                Err(e) => {
                    log::event("error", None, &format!("queue error: {e}"));
                    return EXIT_INFRA;
                }
            };
            let Some((entry, reclaimed)) = taken else {
                if self.cfg.mode == Mode::Once {
                    log::event("info", None, "no job in the queue; nothing to do");
                    self.release();
                    return EXIT_OK;
                }
                continue;
            };
            if let Some(sig) = self.signalled() {
                log::event(
                    "warn",
                    None,
                    &format!(
                        "received {} after taking entry {}; left pending for reclaim",
                        signal_name(sig),
                        entry.id
                    ),
                );
                return 128 + sig;
            }
            let outcome = self.process(entry, reclaimed);
            let code = outcome.exit_code();
            match (&outcome, self.cfg.mode) {
                (Outcome::Cancelled(_) | Outcome::QueueError(_), _) => {
                    if let Outcome::QueueError(e) = &outcome {
                        log::event("error", None, &format!("queue error: {e}"));
                    }
                    return code;
                }
                (_, Mode::Once) => {
                    self.release();
                    return code;
                }
                (Outcome::InfraJob(e), Mode::Loop) => {
                    log::event("warn", None, &format!("job not run ({e}); continuing"));
                    std::thread::sleep(Duration::from_secs(1));
                }
                _ => {}
            }
        }
    }

    fn release(&mut self) {
        match self.queue.remove_idle_consumers(self.cfg.reclaim_idle_ms) {
            Ok(gone) if !gone.is_empty() => log::event(
                "info",
                None,
                &format!(
                    "removed idle consumers with nothing pending: {}",
                    gone.join(", ")
                ),
            ),
            Ok(_) => {}
            Err(e) => log::event("warn", None, &format!("could not list consumers: {e}")),
        }
        match self.queue.release_consumer() {
            Ok(true) => log::event(
                "info",
                None,
                &format!("removed consumer {}", self.cfg.agent_id),
            ),
            Ok(false) => {}
            Err(e) => log::event("warn", None, &format!("could not remove consumer: {e}")),
        }
    }

    /// XAUTOCLAIM first (entries abandoned by other consumers), then new ones.
    fn take(&mut self) -> Result<Option<(Entry, bool)>, String> {
        if let Some(e) = self.queue.autoclaim(self.cfg.reclaim_idle_ms)? {
            log::event("info", None, &format!("reclaimed pending entry {}", e.id));
            return Ok(Some((e, true)));
        }
        Ok(self.queue.read_new(self.cfg.block_ms)?.map(|e| (e, false)))
    }

    fn set(
        &mut self,
        id: &str,
        status: &str,
        msg: &str,
        code: Option<i32>,
        step: Option<&str>,
    ) -> Result<(), String> {
        self.queue.set_status(
            id,
            &status_json(status, &self.cfg.agent_id, msg, code, step),
        )
    }

    /// Runs one entry; removes the checkout whatever happens.
    pub fn process(&mut self, entry: Entry, reclaimed: bool) -> Outcome {
        let parsed = match entry.field("job") {
            Some(raw) => parse_job(raw),
            None => Err(InvalidJob {
                id: None,
                reason: "entry has no `job` field".into(),
            }),
        };
        let job = match parsed {
            Ok(j) => j,
            Err(inv) => return self.reject(&entry, inv),
        };
        let dir = self.cfg.workspace_dir.join(&job.id);
        let outcome = match self.run_job(&entry, &job, &dir, reclaimed) {
            Ok(o) => o,
            Err(e) => Outcome::QueueError(e),
        };
        if dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                log::event(
                    "warn",
                    Some(&job.id),
                    &format!("cannot remove {}: {e}", dir.display()),
                );
            }
        }
        outcome
    }

    /// An entry that can never succeed: record Failed when it has an id, ack.
    fn reject(&mut self, entry: &Entry, inv: InvalidJob) -> Outcome {
        let msg = format!("invalid job entry: {}", inv.reason);
        log::event(
            "error",
            inv.id.as_deref(),
            &format!("stream entry {}: {msg}; acknowledging it", entry.id),
        );
        if let Some(id) = &inv.id {
            if let Err(e) = self.set(id, "Failed", &msg, None, None) {
                return Outcome::QueueError(e);
            }
        }
        match self.queue.ack(&entry.id) {
            Ok(()) => Outcome::JobFailed,
            Err(e) => Outcome::QueueError(e),
        }
    }

    fn finish_failed(
        &mut self,
        entry: &Entry,
        job: &Job,
        step: Step,
        msg: String,
        code: Option<i32>,
    ) -> Result<Outcome, String> {
        log::event("error", Some(&job.id), &msg);
        self.set(&job.id, "Failed", &msg, code, Some(step.name()))?;
        self.queue.ack(&entry.id)?;
        Ok(Outcome::JobFailed)
    }

    fn cancel(&mut self, job: &Job, sig: i32, step: &str) -> Result<Outcome, String> {
        let msg = format!(
            "agent received {} during step {step}; entry left pending for reclaim",
            signal_name(sig)
        );
        log::event("warn", Some(&job.id), &msg);
        self.set(&job.id, "Cancelled", &msg, None, Some(step))?;
        Ok(Outcome::Cancelled(sig))
    }

    fn run_job(
        &mut self,
        entry: &Entry,
        job: &Job,
        dir: &Path,
        reclaimed: bool,
    ) -> Result<Outcome, String> {
        if reclaimed {
            match self.queue.delivery_count(&entry.id) {
                Ok(n) if n > self.cfg.max_deliveries => {
                    let msg = format!(
                        "giving up after {n} deliveries (MAX_DELIVERIES={}); the job never finished",
                        self.cfg.max_deliveries
                    );
                    log::event("error", Some(&job.id), &msg);
                    self.set(&job.id, "Failed", &msg, None, None)?;
                    self.queue.ack(&entry.id)?;
                    return Ok(Outcome::JobFailed);
                }
                Ok(_) => {}
                Err(e) => log::event(
                    "warn",
                    Some(&job.id),
                    &format!("cannot read delivery count: {e}"),
                ),
            }
        }
        let url = job.clone_url(&self.cfg.gitea_host);
        let reference = job
            .commit
            .as_deref()
            .or(job.branch.as_deref())
            .unwrap_or("default branch");
        log::event(
            "info",
            Some(&job.id),
            &format!("entry {}: {} at {reference}", entry.id, redact_url(&url)),
        );
        let start = Instant::now();
        let deadline = start + self.cfg.job_timeout;
        self.set(
            &job.id,
            "Running",
            &format!("cloning {}", redact_url(&url)),
            None,
            Some("clone"),
        )?;
        if dir.exists() {
            let _ = std::fs::remove_dir_all(dir);
        }
        let clone_timeout = self.cfg.step_timeout.min(self.cfg.job_timeout);
        let res = self.exec.checkout(
            &url,
            job,
            dir,
            clone_timeout,
            &mut log_sink(&mut self.queue, &job.id),
        );
        if let Err(e) = res {
            if let Some(sig) = self.signalled() {
                return self.cancel(job, sig, "clone");
            }
            let msg = format!("clone failed: {e}; entry left pending for reclaim");
            log::event("error", Some(&job.id), &msg);
            self.set(&job.id, "Failed", &msg, None, Some("clone"))?;
            return Ok(Outcome::InfraJob(msg));
        }
        let steps = self.cfg.pipeline.clone();
        for step in steps {
            let name = step.name();
            if let Some(sig) = self.signalled() {
                return self.cancel(job, sig, name);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                let msg = format!(
                    "job timed out before step {name} (JOB_TIMEOUT_SECS={})",
                    self.cfg.job_timeout.as_secs()
                );
                return self.finish_failed(entry, job, step, msg, Some(124));
            }
            let (timeout, limit) = if self.cfg.step_timeout <= remaining {
                (
                    self.cfg.step_timeout,
                    format!("STEP_TIMEOUT_SECS={}", self.cfg.step_timeout.as_secs()),
                )
            } else {
                (
                    remaining,
                    format!("JOB_TIMEOUT_SECS={}", self.cfg.job_timeout.as_secs()),
                )
            };
            self.set(
                &job.id,
                "Running",
                &format!("running step {name}"),
                None,
                Some(name),
            )?;
            log::event("info", Some(&job.id), &format!("step {name}: starting"));
            let out =
                self.exec
                    .run_step(step, dir, timeout, &mut log_sink(&mut self.queue, &job.id));
            if out != StepOutcome::Exited(0) {
                if let Some(sig) = self.signalled() {
                    return self.cancel(job, sig, name);
                }
            }
            match out {
                StepOutcome::Exited(0) => {
                    log::event("info", Some(&job.id), &format!("step {name}: passed"))
                }
                StepOutcome::Exited(c) => {
                    return self.finish_failed(
                        entry,
                        job,
                        step,
                        format!("step {name} failed with exit code {c}"),
                        Some(c),
                    )
                }
                StepOutcome::Signaled(s) => {
                    return self.finish_failed(
                        entry,
                        job,
                        step,
                        format!("step {name} was killed by signal {s}"),
                        Some(128 + s),
                    )
                }
                StepOutcome::TimedOut => {
                    let msg = format!(
                        "step {name} timed out after {}s ({limit})",
                        timeout.as_secs()
                    );
                    return self.finish_failed(entry, job, step, msg, Some(124));
                }
                StepOutcome::Cancelled => return self.cancel(job, libc::SIGTERM, name),
                StepOutcome::SpawnFailed(e) => {
                    let msg = format!(
                        "step {name} could not be started: {e}; entry left pending for reclaim"
                    );
                    log::event("error", Some(&job.id), &msg);
                    self.set(&job.id, "Failed", &msg, None, Some(name))?;
                    return Ok(Outcome::InfraJob(msg));
                }
            }
        }
        let names: Vec<&str> = self.cfg.pipeline.iter().map(|s| s.name()).collect();
        let msg = format!(
            "all steps passed ({}) in {}s",
            names.join(", "),
            start.elapsed().as_secs()
        );
        log::event("info", Some(&job.id), &msg);
        self.set(&job.id, "Success", &msg, Some(0), None)?;
        self.queue.ack(&entry.id)?;
        Ok(Outcome::Success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Check;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;

    #[derive(Default)]
    struct State {
        pending: VecDeque<Entry>,
        new: VecDeque<Entry>,
        acked: Vec<String>,
        statuses: Vec<(String, serde_json::Value)>,
        logs: Vec<String>,
        reads: usize,
        released: bool,
        deliveries: u64,
        idle_sweeps: Vec<u64>,
    }

    #[derive(Clone, Default)]
    struct FakeQueue(Rc<RefCell<State>>);

    impl Queue for FakeQueue {
        fn ensure_group(&mut self) -> Result<(), String> {
            Ok(())
        }
        fn autoclaim(&mut self, _: u64) -> Result<Option<Entry>, String> {
            self.0.borrow_mut().reads += 1;
            Ok(self.0.borrow_mut().pending.pop_front())
        }
        fn read_new(&mut self, _: u64) -> Result<Option<Entry>, String> {
            self.0.borrow_mut().reads += 1;
            Ok(self.0.borrow_mut().new.pop_front())
        }
        fn delivery_count(&mut self, _: &str) -> Result<u64, String> {
            Ok(self.0.borrow().deliveries)
        }
        fn ack(&mut self, id: &str) -> Result<(), String> {
            self.0.borrow_mut().acked.push(id.into());
            Ok(())
        }
        fn set_status(&mut self, job: &str, json: &str) -> Result<(), String> {
            self.0
                .borrow_mut()
                .statuses
                .push((job.into(), serde_json::from_str(json).unwrap()));
            Ok(())
        }
        fn log_line(&mut self, _: &str, step: &str, _: &str, line: &str) -> Result<(), String> {
            self.0.borrow_mut().logs.push(format!("{step}:{line}"));
            Ok(())
        }
        fn release_consumer(&mut self) -> Result<bool, String> {
            self.0.borrow_mut().released = true;
            Ok(true)
        }
        fn remove_idle_consumers(&mut self, min_idle_ms: u64) -> Result<Vec<String>, String> {
            self.0.borrow_mut().idle_sweeps.push(min_idle_ms);
            Ok(vec![])
        }
    }

    struct FakeExec<'a> {
        clone_ok: bool,
        fail_step: Option<(Step, StepOutcome)>,
        /// sets the signal while running this step
        signal_on: Option<(Step, &'a AtomicI32)>,
        ran: Vec<Step>,
    }

    impl<'a> FakeExec<'a> {
        fn ok() -> Self {
            FakeExec {
                clone_ok: true,
                fail_step: None,
                signal_on: None,
                ran: vec![],
            }
        }
    }

    impl Executor for &mut FakeExec<'_> {
        fn checkout(
            &mut self,
            _: &str,
            _: &Job,
            _: &Path,
            _: Duration,
            sink: Sink<'_>,
        ) -> Result<(), String> {
            sink("clone", Stream::Stderr, "Cloning");
            if self.clone_ok {
                Ok(())
            } else {
                Err("repository not found".into())
            }
        }
        fn run_step(&mut self, step: Step, _: &Path, _: Duration, sink: Sink<'_>) -> StepOutcome {
            self.ran.push(step);
            sink(step.name(), Stream::Stdout, "working");
            if let Some((s, sig)) = self.signal_on {
                if s == step {
                    sig.store(libc::SIGTERM, Ordering::SeqCst);
                    return StepOutcome::Cancelled;
                }
            }
            match &self.fail_step {
                Some((s, out)) if *s == step => out.clone(),
                _ => StepOutcome::Exited(0),
            }
        }
    }

    fn cfg() -> Config {
        let mut c = Config::from_lookup(|k| match k {
            "AGENT_ID" => Some("agent-t".into()),
            "WORKSPACE_DIR" => Some(
                std::env::temp_dir()
                    .join("raibid-agent-unit")
                    .display()
                    .to_string(),
            ),
            _ => None,
        })
        .unwrap();
        c.max_deliveries = 3;
        c
    }

    fn entry(id: &str, job: &str) -> Entry {
        Entry {
            id: id.into(),
            fields: vec![("job".into(), job.into())],
        }
    }

    fn healthy() -> Report {
        Report {
            checks: vec![],
            duration_ms: 0,
        }
    }

    const JOB: &str = r#"{"id":"j1","repo":"o/r","branch":"main","commit":""}"#;

    fn run(q: &FakeQueue, exec: &mut FakeExec, sig: &AtomicI32) -> i32 {
        let c = cfg();
        run_agent(&c, healthy, || Ok(q.clone()), exec, sig)
    }

    fn last_status(q: &FakeQueue) -> serde_json::Value {
        q.0.borrow().statuses.last().unwrap().1.clone()
    }

    #[test]
    fn nothing_to_do_exits_zero() {
        let q = FakeQueue::default();
        let sig = AtomicI32::new(0);
        assert_eq!(run(&q, &mut FakeExec::ok(), &sig), 0);
        let s = q.0.borrow();
        assert!(s.statuses.is_empty());
        assert!(s.released);
        assert_eq!(
            s.idle_sweeps.len(),
            1,
            "idle consumers swept once at the end"
        );
        assert_eq!(s.reads, 2);
    }

    #[test]
    fn job_succeeds() {
        let q = FakeQueue::default();
        q.0.borrow_mut().new.push_back(entry("1-0", JOB));
        let sig = AtomicI32::new(0);
        let mut ex = FakeExec::ok();
        assert_eq!(run(&q, &mut ex, &sig), 0);
        assert_eq!(
            ex.ran,
            vec![Step::Fmt, Step::Clippy, Step::Build, Step::Test]
        );
        let st = last_status(&q);
        assert_eq!(st["status"], "Success");
        assert_eq!(st["exit_code"], 0);
        assert_eq!(st["agent_id"], "agent-t");
        let s = q.0.borrow();
        assert_eq!(s.acked, vec!["1-0"]);
        assert_eq!(s.statuses[0].1["status"], "Running");
        assert!(s.logs.contains(&"test:working".to_string()));
        assert!(s.logs.contains(&"clone:Cloning".to_string()));
    }

    #[test]
    fn step_fails() {
        let q = FakeQueue::default();
        q.0.borrow_mut().new.push_back(entry("1-0", JOB));
        let sig = AtomicI32::new(0);
        let mut ex = FakeExec::ok();
        ex.fail_step = Some((Step::Clippy, StepOutcome::Exited(101)));
        assert_eq!(run(&q, &mut ex, &sig), 1);
        assert_eq!(ex.ran, vec![Step::Fmt, Step::Clippy]);
        let st = last_status(&q);
        assert_eq!(st["status"], "Failed");
        assert_eq!(st["exit_code"], 101);
        assert_eq!(st["step"], "clippy");
        assert_eq!(st["message"], "step clippy failed with exit code 101");
        assert_eq!(q.0.borrow().acked, vec!["1-0"]);
    }

    #[test]
    fn step_timeout_is_reported() {
        let q = FakeQueue::default();
        q.0.borrow_mut().new.push_back(entry("1-0", JOB));
        let sig = AtomicI32::new(0);
        let mut ex = FakeExec::ok();
        ex.fail_step = Some((Step::Test, StepOutcome::TimedOut));
        assert_eq!(run(&q, &mut ex, &sig), 1);
        let st = last_status(&q);
        assert_eq!(st["status"], "Failed");
        assert_eq!(st["exit_code"], 124);
        assert!(
            st["message"].as_str().unwrap().contains("timed out"),
            "{st}"
        );
    }

    #[test]
    fn sigterm_cancels_without_ack() {
        let q = FakeQueue::default();
        q.0.borrow_mut().new.push_back(entry("1-0", JOB));
        let sig = AtomicI32::new(0);
        let mut ex = FakeExec::ok();
        ex.signal_on = Some((Step::Build, &sig));
        assert_eq!(run(&q, &mut ex, &sig), 143);
        let st = last_status(&q);
        assert_eq!(st["status"], "Cancelled");
        assert_eq!(
            st["message"],
            "agent received SIGTERM during step build; entry left pending for reclaim"
        );
        assert!(q.0.borrow().acked.is_empty());
        assert_eq!(ex.ran, vec![Step::Fmt, Step::Clippy, Step::Build]);
    }

    #[test]
    fn clone_failure_leaves_entry_pending() {
        let q = FakeQueue::default();
        q.0.borrow_mut().new.push_back(entry("1-0", JOB));
        let sig = AtomicI32::new(0);
        let mut ex = FakeExec::ok();
        ex.clone_ok = false;
        assert_eq!(run(&q, &mut ex, &sig), 4);
        let st = last_status(&q);
        assert_eq!(st["status"], "Failed");
        assert!(st["message"].as_str().unwrap().starts_with("clone failed"));
        assert!(q.0.borrow().acked.is_empty());
        assert!(ex.ran.is_empty());
    }

    #[test]
    fn health_failure_reads_nothing() {
        let q = FakeQueue::default();
        q.0.borrow_mut().new.push_back(entry("1-0", JOB));
        let sig = AtomicI32::new(0);
        let c = cfg();
        let mut connected = false;
        let bad = || Report {
            checks: vec![Check::new("cargo", Status::Fail, "", "not found")],
            duration_ms: 1,
        };
        let code = run_agent(
            &c,
            bad,
            || {
                connected = true;
                Ok(q.clone())
            },
            &mut FakeExec::ok(),
            &sig,
        );
        assert_eq!(code, 3);
        assert!(!connected);
        assert_eq!(q.0.borrow().reads, 0);
    }

    #[test]
    fn invalid_entries_are_acked() {
        let q = FakeQueue::default();
        q.0.borrow_mut()
            .new
            .push_back(entry("1-0", r#"{"id":"j2","branch":"x"}"#));
        let sig = AtomicI32::new(0);
        assert_eq!(run(&q, &mut FakeExec::ok(), &sig), 1);
        let st = last_status(&q);
        assert_eq!(st["status"], "Failed");
        assert!(st["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid job entry: "));
        assert_eq!(q.0.borrow().acked, vec!["1-0"]);

        let q = FakeQueue::default();
        q.0.borrow_mut().new.push_back(entry("2-0", "garbage"));
        assert_eq!(run(&q, &mut FakeExec::ok(), &sig), 1);
        assert!(q.0.borrow().statuses.is_empty());
        assert_eq!(q.0.borrow().acked, vec!["2-0"]);
    }

    #[test]
    fn reclaimed_entry_runs_and_poison_entry_is_dropped() {
        let q = FakeQueue::default();
        q.0.borrow_mut().pending.push_back(entry("1-0", JOB));
        q.0.borrow_mut().deliveries = 2;
        let sig = AtomicI32::new(0);
        assert_eq!(run(&q, &mut FakeExec::ok(), &sig), 0);
        assert_eq!(q.0.borrow().acked, vec!["1-0"]);
        assert_eq!(q.0.borrow().reads, 1);

        let q = FakeQueue::default();
        q.0.borrow_mut().pending.push_back(entry("1-0", JOB));
        q.0.borrow_mut().deliveries = 4;
        let mut ex = FakeExec::ok();
        assert_eq!(run(&q, &mut ex, &sig), 1);
        assert!(ex.ran.is_empty());
        assert_eq!(last_status(&q)["status"], "Failed");
        assert_eq!(q.0.borrow().acked, vec!["1-0"]);
    }

    #[test]
    fn signal_before_taking_exits() {
        let q = FakeQueue::default();
        q.0.borrow_mut().new.push_back(entry("1-0", JOB));
        let sig = AtomicI32::new(libc::SIGTERM);
        assert_eq!(run(&q, &mut FakeExec::ok(), &sig), 143);
        assert_eq!(q.0.borrow().reads, 0);
    }

    #[test]
    fn status_json_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&status_json("Running", "a", "m", None, Some("fmt"))).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 6);
        assert_eq!(v["exit_code"], serde_json::Value::Null);
        assert_eq!(v["step"], "fmt");
    }
}
