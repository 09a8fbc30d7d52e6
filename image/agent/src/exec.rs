//! Running child processes in their own process group, with output
//! streaming, timeouts and cancellation.

use crate::config::{Config, Step};
use crate::job::{redact_url, token_applies, Job};
use crate::runner::{Executor, Sink};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Longest line forwarded to the logs; longer lines are cut.
const MAX_LINE: usize = 16 * 1024;
/// Variables never passed to clones or steps (the job's code is untrusted).
const SECRET_VARS: &[&str] = &["GITEA_TOKEN", "REDIS_PASSWORD"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// How a child process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Exited(i32),
    Signaled(i32),
    /// Killed because its time ran out.
    TimedOut,
    /// Killed because the agent received a termination signal.
    Cancelled,
    SpawnFailed(String),
}

impl StepOutcome {
    pub fn describe(&self) -> String {
        match self {
            StepOutcome::Exited(c) => format!("exited with code {c}"),
            StepOutcome::Signaled(s) => format!("killed by signal {s}"),
            StepOutcome::TimedOut => "timed out".into(),
            StepOutcome::Cancelled => "cancelled".into(),
            StepOutcome::SpawnFailed(e) => format!("could not be started: {e}"),
        }
    }
}

fn spawn_reader<R: Read + Send + 'static>(
    pipe: R,
    stream: Stream,
    tx: mpsc::Sender<(Stream, String)>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut r = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    while matches!(buf.last(), Some(b'\n') | Some(b'\r')) {
                        buf.pop();
                    }
                    buf.truncate(MAX_LINE);
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    if tx.send((stream, line)).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

fn kill_group(pgid: i32, sig: i32) {
    // SAFETY: kill(2) with a negative pid signals the process group we created.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Runs `cmd` in a new process group. Each output line goes to `sink`. When
/// `timeout` passes or `signal` becomes non-zero the group gets SIGTERM, then
/// SIGKILL after `grace`.
pub fn run_cmd(
    cmd: &mut Command,
    timeout: Duration,
    signal: &AtomicI32,
    grace: Duration,
    sink: &mut dyn FnMut(Stream, &str),
) -> StepOutcome {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return StepOutcome::SpawnFailed(e.to_string()),
    };
    let pgid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        spawn_reader(out, Stream::Stdout, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        spawn_reader(err, Stream::Stderr, tx.clone());
    }
    drop(tx);
    let deadline = Instant::now() + timeout;
    let mut killed: Option<StepOutcome> = None;
    let mut term_at: Option<Instant> = None;
    let mut open = true;
    let status = loop {
        if open {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok((s, l)) => {
                    sink(s, &l);
                    // drain what is already there without waiting
                    for _ in 0..256 {
                        match rx.try_recv() {
                            Ok((s, l)) => sink(s, &l),
                            Err(_) => break,
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
            }
        } else {
            thread::sleep(Duration::from_millis(50));
        }
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) => {}
            Err(_) => break None,
        }
        let now = Instant::now();
        if killed.is_none() {
            if signal.load(Ordering::SeqCst) != 0 {
                killed = Some(StepOutcome::Cancelled);
            } else if now >= deadline {
                killed = Some(StepOutcome::TimedOut);
            }
            if killed.is_some() {
                kill_group(pgid, libc::SIGTERM);
                term_at = Some(now);
            }
        } else if let Some(t) = term_at {
            if now.duration_since(t) >= grace {
                kill_group(pgid, libc::SIGKILL);
                term_at = None;
            }
        }
    };
    if killed.is_some() {
        // members that survived the leader (the group cannot be reused while
        // they exist)
        kill_group(pgid, libc::SIGKILL);
    }
    // Collect the remaining output. A grandchild that outlived the leader may
    // hold the pipes open: give it 2 s, then kill the group.
    let drain_until = Instant::now() + Duration::from_secs(2);
    let mut group_killed = killed.is_some();
    while open {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok((s, l)) => sink(s, &l),
            Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if Instant::now() >= drain_until {
                    if group_killed {
                        break;
                    }
                    kill_group(pgid, libc::SIGKILL);
                    group_killed = true;
                }
            }
        }
    }
    if let Some(k) = killed {
        return k;
    }
    match status {
        Some(st) => match (st.code(), st.signal()) {
            (Some(c), _) => StepOutcome::Exited(c),
            (None, Some(s)) => StepOutcome::Signaled(s),
            (None, None) => StepOutcome::Exited(-1),
        },
        None => StepOutcome::SpawnFailed("cannot wait for child".into()),
    }
}

/// Output of a short command, for probes.
#[derive(Debug, Default)]
pub struct Captured {
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl Captured {
    /// First non-empty line of stdout, else of stderr.
    pub fn first_line(&self) -> String {
        self.stdout
            .iter()
            .chain(self.stderr.iter())
            .map(|l| l.trim())
            .find(|l| !l.is_empty())
            .unwrap_or("")
            .to_string()
    }
}

static NEVER: AtomicI32 = AtomicI32::new(0);

/// Runs a short command and captures its output.
pub fn capture(program: &str, args: &[&str], timeout: Duration) -> (StepOutcome, Captured) {
    let mut cap = Captured::default();
    let mut cmd = Command::new(program);
    cmd.args(args);
    for v in SECRET_VARS {
        cmd.env_remove(v);
    }
    let out = run_cmd(
        &mut cmd,
        timeout,
        &NEVER,
        Duration::from_secs(1),
        &mut |s, l| match s {
            Stream::Stdout => cap.stdout.push(l.to_string()),
            Stream::Stderr => cap.stderr.push(l.to_string()),
        },
    );
    (out, cap)
}

/// The real executor: `git` for checkouts, `cargo` for steps.
pub struct RealExec<'a> {
    pub signal: &'a AtomicI32,
    pub gitea_host: String,
    pub gitea_token: Option<String>,
    pub kill_grace: Duration,
    nextest: Option<bool>,
}

impl<'a> RealExec<'a> {
    pub fn new(cfg: &Config, signal: &'a AtomicI32) -> Self {
        RealExec {
            signal,
            gitea_host: cfg.gitea_host.clone(),
            gitea_token: cfg.gitea_token.clone(),
            kill_grace: cfg.kill_grace,
            nextest: None,
        }
    }

    fn has_nextest(&mut self) -> bool {
        *self.nextest.get_or_insert_with(|| {
            matches!(
                capture("cargo", &["nextest", "--version"], Duration::from_secs(10)).0,
                StepOutcome::Exited(0)
            )
        })
    }

    /// The command of a step (program and arguments).
    pub fn step_args(&mut self, step: Step) -> Vec<&'static str> {
        match step {
            Step::Fmt => vec!["fmt", "--all", "--", "--check"],
            Step::Clippy => vec!["clippy", "--all-targets", "--", "-D", "warnings"],
            Step::Build => vec!["build"],
            Step::Test if self.has_nextest() => vec!["nextest", "run", "--no-tests=warn"],
            Step::Test => vec!["test"],
        }
    }

    fn git(&self, url: &str) -> Command {
        let mut c = Command::new("git");
        for v in SECRET_VARS {
            c.env_remove(v);
        }
        c.env("GIT_TERMINAL_PROMPT", "0");
        if let Some(t) = &self.gitea_token {
            if token_applies(url, &self.gitea_host) {
                // command-scoped config like `git -c`, but kept out of argv
                // (and so out of `ps`); git-lfs honours it too
                c.env("GIT_CONFIG_COUNT", "1")
                    .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                    .env("GIT_CONFIG_VALUE_0", format!("Authorization: token {t}"));
            }
        }
        c
    }
}

impl Executor for RealExec<'_> {
    fn checkout(
        &mut self,
        url: &str,
        job: &Job,
        dir: &Path,
        timeout: Duration,
        sink: Sink<'_>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut clone = self.git(url);
        clone.arg("clone").arg("--quiet");
        if job.commit.is_none() {
            if let Some(b) = &job.branch {
                clone.arg("--branch").arg(b);
            }
        }
        clone.arg("--").arg(url).arg(dir);
        let out = run_cmd(
            &mut clone,
            timeout,
            self.signal,
            self.kill_grace,
            &mut |s, l| sink("clone", s, l),
        );
        if out != StepOutcome::Exited(0) {
            return Err(format!("git clone {} {}", redact_url(url), out.describe()));
        }
        if let Some(commit) = &job.commit {
            let mut co = self.git(url);
            co.arg("-C")
                .arg(dir)
                .args([
                    "-c",
                    "advice.detachedHead=false",
                    "checkout",
                    "--quiet",
                    "--detach",
                ])
                .arg(commit);
            let left = deadline.saturating_duration_since(Instant::now());
            let out = run_cmd(&mut co, left, self.signal, self.kill_grace, &mut |s, l| {
                sink("clone", s, l)
            });
            if out != StepOutcome::Exited(0) {
                return Err(format!("git checkout {commit} {}", out.describe()));
            }
        }
        Ok(())
    }

    fn run_step(
        &mut self,
        step: Step,
        dir: &Path,
        timeout: Duration,
        sink: Sink<'_>,
    ) -> StepOutcome {
        let args = self.step_args(step);
        let mut cmd = Command::new("cargo");
        cmd.args(&args).current_dir(dir);
        for v in SECRET_VARS {
            cmd.env_remove(v);
        }
        sink(
            step.name(),
            Stream::Stdout,
            &format!("$ cargo {}", args.join(" ")),
        );
        run_cmd(
            &mut cmd,
            timeout,
            self.signal,
            self.kill_grace,
            &mut |s, l| sink(step.name(), s, l),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(
        script: &str,
        timeout: Duration,
        grace: Duration,
        signal: &AtomicI32,
    ) -> (StepOutcome, Vec<String>, Duration) {
        let mut lines = Vec::new();
        let start = Instant::now();
        let out = run_cmd(
            Command::new("sh").args(["-c", script]),
            timeout,
            signal,
            grace,
            &mut |s, l| lines.push(format!("{}:{l}", s.name())),
        );
        (out, lines, start.elapsed())
    }

    #[test]
    fn captures_output_and_exit_code() {
        let sig = AtomicI32::new(0);
        let (out, lines, _) = sh(
            "echo one; echo two >&2; exit 3",
            Duration::from_secs(10),
            Duration::from_secs(1),
            &sig,
        );
        assert_eq!(out, StepOutcome::Exited(3));
        assert!(lines.contains(&"stdout:one".to_string()), "{lines:?}");
        assert!(lines.contains(&"stderr:two".to_string()), "{lines:?}");
    }

    #[test]
    fn step_timeout_kills_the_group() {
        let sig = AtomicI32::new(0);
        let (out, _, took) = sh(
            "sleep 30 & sleep 30",
            Duration::from_millis(300),
            Duration::from_secs(5),
            &sig,
        );
        assert_eq!(out, StepOutcome::TimedOut);
        assert!(took < Duration::from_secs(4), "took {took:?}");
    }

    #[test]
    fn sigkill_after_grace_when_term_is_ignored() {
        let sig = AtomicI32::new(0);
        let (out, _, took) = sh(
            "trap '' TERM; sleep 30",
            Duration::from_millis(200),
            Duration::from_millis(500),
            &sig,
        );
        assert_eq!(out, StepOutcome::TimedOut);
        assert!(took < Duration::from_secs(4), "took {took:?}");
    }

    #[test]
    fn signal_flag_cancels() {
        let sig = AtomicI32::new(libc::SIGTERM);
        let (out, _, took) = sh(
            "sleep 30",
            Duration::from_secs(60),
            Duration::from_secs(5),
            &sig,
        );
        assert_eq!(out, StepOutcome::Cancelled);
        assert!(took < Duration::from_secs(3));
    }

    #[test]
    fn spawn_failure_and_signal_exit() {
        let sig = AtomicI32::new(0);
        let out = run_cmd(
            &mut Command::new("/nonexistent/x"),
            Duration::from_secs(1),
            &sig,
            Duration::from_secs(1),
            &mut |_, _| {},
        );
        assert!(matches!(out, StepOutcome::SpawnFailed(_)));
        let (out, _, _) = sh(
            "kill -9 $$",
            Duration::from_secs(5),
            Duration::from_secs(1),
            &sig,
        );
        assert_eq!(out, StepOutcome::Signaled(9));
    }

    #[test]
    fn capture_first_line() {
        let (out, cap) = capture("sh", &["-c", "echo 'x 1.2' >&2"], Duration::from_secs(5));
        assert_eq!(out, StepOutcome::Exited(0));
        assert_eq!(cap.first_line(), "x 1.2");
    }
}
