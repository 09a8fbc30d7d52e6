//! `raibid-agent health`: every check runs (concurrently), none stops the others.

use crate::config::{Config, DockerMode, DEFAULT_TOOLS_FILE};
use crate::exec::{capture, StepOutcome};
use crate::resp::Conn;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// Per-check time limit.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Status::Ok => "✓",
            Status::Warn => "!",
            Status::Fail => "✗",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub status: Status,
    /// What was found (a version, a path, a value); empty when nothing.
    pub value: String,
    pub message: String,
}

impl Check {
    pub fn new(name: &str, status: Status, value: &str, message: &str) -> Check {
        Check {
            name: name.into(),
            status,
            value: value.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub checks: Vec<Check>,
    pub duration_ms: u64,
}

#[derive(Serialize)]
struct JsonCheck<'a> {
    name: &'a str,
    status: &'a str,
    value: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    status: &'a str,
    duration_ms: u64,
    checks: Vec<JsonCheck<'a>>,
}

impl Report {
    pub fn status(&self) -> Status {
        self.checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Ok)
    }

    pub fn failing(&self) -> Vec<&Check> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .collect()
    }

    pub fn summary(&self) -> String {
        let failing = self.failing();
        if failing.is_empty() {
            "Health check PASSED".into()
        } else {
            let names: Vec<&str> = failing.iter().map(|c| c.name.as_str()).collect();
            format!(
                "Health check FAILED ({} failing: {})",
                failing.len(),
                names.join(", ")
            )
        }
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for c in &self.checks {
            s.push_str(&format!(
                "{} {}: {}\n",
                c.status.symbol(),
                c.name,
                c.message
            ));
        }
        s.push_str(&self.summary());
        s.push('\n');
        s
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&JsonReport {
            status: self.status().as_str(),
            duration_ms: self.duration_ms,
            checks: self
                .checks
                .iter()
                .map(|c| JsonCheck {
                    name: &c.name,
                    status: c.status.as_str(),
                    value: &c.value,
                    message: &c.message,
                })
                .collect(),
        })
        .unwrap_or_default()
    }
}

/// A tool to check, from the tools file (`name [version]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolSpec {
    pub name: String,
    pub version: Option<String>,
}

/// Parses the tools file: one tool per line, `name` or `name version`;
/// blank lines and `#` comments are ignored.
pub fn parse_tools(text: &str) -> Vec<ToolSpec> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut parts = l.split_whitespace();
            ToolSpec {
                name: parts.next().unwrap_or("").to_string(),
                version: parts.next().map(|v| v.trim_start_matches('v').to_string()),
            }
        })
        .collect()
}

pub const DEFAULT_TOOLS: &[&str] = &[
    "git",
    "git-lfs",
    "ssh",
    "docker",
    "docker-buildx",
    "rustc",
    "cargo",
    "rustfmt",
    "clippy",
    "cargo-nextest",
    "cargo-audit",
    "cargo-deny",
];

pub fn default_tools() -> Vec<ToolSpec> {
    DEFAULT_TOOLS
        .iter()
        .map(|n| ToolSpec {
            name: n.to_string(),
            version: None,
        })
        .collect()
}

/// The command that proves a tool runs.
pub fn tool_command(name: &str) -> (String, Vec<String>) {
    let v = |p: &str, a: &[&str]| (p.to_string(), a.iter().map(|s| s.to_string()).collect());
    match name {
        "git-lfs" | "lfs" => v("git", &["lfs", "version"]),
        "ssh" => v("ssh", &["-V"]),
        "docker-buildx" | "buildx" => v("docker", &["buildx", "version"]),
        "clippy" | "cargo-clippy" => v("cargo", &["clippy", "--version"]),
        "rustfmt" => v("rustfmt", &["--version"]),
        other => match other.strip_prefix("cargo-") {
            Some(sub) => v("cargo", &[sub, "--version"]),
            None => v(other, &["--version"]),
        },
    }
}

/// First version-like token (`1.2.3`, `v0.17.1`, `OpenSSH_9.2p1` → `9.2p1`).
pub fn extract_version(s: &str) -> Option<String> {
    s.split(|c: char| c.is_whitespace() || matches!(c, '/' | '_' | ',' | '(' | ')' | ';'))
        .map(|t| t.strip_prefix('v').unwrap_or(t))
        .find(|t| t.starts_with(|c: char| c.is_ascii_digit()) && t.contains('.'))
        .map(str::to_string)
}

/// `1.85` matches `1.85.0`; `1.85.0` matches only `1.85.0`.
pub fn version_matches(reported: &str, expected: &str) -> bool {
    reported == expected || reported.starts_with(&format!("{expected}."))
}

fn check_tool(t: &ToolSpec) -> Check {
    let (prog, args) = tool_command(&t.name);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmdline = format!("{prog} {}", args.join(" "));
    let (out, cap) = capture(&prog, &argv, CHECK_TIMEOUT);
    let first = cap.first_line();
    match out {
        StepOutcome::Exited(0) => match &t.version {
            None => Check::new(&t.name, Status::Ok, &first, &first),
            Some(exp) => match extract_version(&first) {
                Some(r) if version_matches(&r, exp) => {
                    Check::new(&t.name, Status::Ok, &first, &first)
                }
                Some(r) => Check::new(
                    &t.name,
                    Status::Fail,
                    &first,
                    &format!("version {r}, expected {exp} ({first})"),
                ),
                None => Check::new(
                    &t.name,
                    Status::Fail,
                    &first,
                    &format!("no version in {first:?}, expected {exp}"),
                ),
            },
        },
        StepOutcome::SpawnFailed(e) => Check::new(
            &t.name,
            Status::Fail,
            "",
            &format!("`{cmdline}`: {prog} not found ({e})"),
        ),
        StepOutcome::TimedOut => Check::new(
            &t.name,
            Status::Fail,
            "",
            &format!("`{cmdline}` timed out after {}s", CHECK_TIMEOUT.as_secs()),
        ),
        other => {
            let detail = if first.is_empty() {
                String::new()
            } else {
                format!(": {first}")
            };
            Check::new(
                &t.name,
                Status::Fail,
                "",
                &format!("`{cmdline}` {}{detail}", other.describe()),
            )
        }
    }
}

/// Creates and deletes a file in `dir`.
pub fn check_writable(name: &str, dir: &Path) -> Check {
    let shown = dir.display().to_string();
    if !dir.is_dir() {
        return Check::new(
            name,
            Status::Fail,
            &shown,
            &format!("{shown} does not exist or is not a directory"),
        );
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let probe = dir.join(format!(".raibid-health-{}-{nanos}", std::process::id()));
    let res = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| f.write_all(b"ok"));
    match res {
        Ok(()) => match std::fs::remove_file(&probe) {
            Ok(()) => Check::new(name, Status::Ok, &shown, &format!("{shown} is writable")),
            Err(e) => Check::new(
                name,
                Status::Warn,
                &shown,
                &format!("{shown}: cannot delete probe file: {e}"),
            ),
        },
        Err(e) => Check::new(
            name,
            Status::Fail,
            &shown,
            &format!("{shown} is not writable: {e}"),
        ),
    }
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.trim().is_empty())
}

fn check_env(k: &str) -> Check {
    let name = format!("env:{k}");
    match env(k) {
        Some(v) => Check::new(&name, Status::Ok, &v, &format!("{k}={v}")),
        None => Check::new(&name, Status::Warn, "", &format!("{k} is not set")),
    }
}

fn check_git_identity() -> Check {
    let name = "git-identity";
    if let (Some(n), Some(e)) = (env("GIT_AUTHOR_NAME"), env("GIT_AUTHOR_EMAIL")) {
        let v = format!("{n} <{e}>");
        return Check::new(name, Status::Ok, &v, &format!("{v} (GIT_AUTHOR_*)"));
    }
    let get = |key: &str| {
        let (out, cap) = capture("git", &["config", "--get", key], CHECK_TIMEOUT);
        (out == StepOutcome::Exited(0))
            .then(|| cap.first_line())
            .filter(|s| !s.is_empty())
    };
    match (get("user.name"), get("user.email")) {
        (Some(n), Some(e)) => {
            let v = format!("{n} <{e}>");
            Check::new(name, Status::Ok, &v, &v)
        }
        _ => Check::new(
            name,
            Status::Warn,
            "",
            "no git identity (set user.name and user.email, or GIT_AUTHOR_NAME and GIT_AUTHOR_EMAIL)",
        ),
    }
}

/// `docker version` until it answers or `wait` has passed (a DinD sidecar may still be starting
/// when the agent starts: the agent waits for it before it takes a job, never after).
fn check_docker_daemon(mode: DockerMode, wait: Duration) -> Check {
    let name = "docker-daemon";
    let configured = env("DOCKER_HOST").is_some() || Path::new("/var/run/docker.sock").exists();
    match mode {
        DockerMode::Off => return Check::new(name, Status::Ok, "", "skipped (HEALTH_DOCKER=off)"),
        DockerMode::Auto if !configured => {
            return Check::new(
                name,
                Status::Ok,
                "",
                "not configured (no DOCKER_HOST, no /var/run/docker.sock)",
            )
        }
        _ => {}
    }
    let bad = if mode == DockerMode::Require {
        Status::Fail
    } else {
        Status::Warn
    };
    let deadline = Instant::now() + wait;
    let (out, cap) = loop {
        let (out, cap) = capture(
            "docker",
            &["version", "--format", "{{.Server.Version}}"],
            CHECK_TIMEOUT,
        );
        let answered = matches!(out, StepOutcome::Exited(0)) && !cap.first_line().is_empty();
        if answered || Instant::now() >= deadline {
            break (out, cap);
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let first = cap.first_line();
    match out {
        StepOutcome::Exited(0) if !first.is_empty() => Check::new(
            name,
            Status::Ok,
            &first,
            &format!("daemon reachable (server {first})"),
        ),
        other => {
            let why = cap
                .stderr
                .iter()
                .find(|l| !l.trim().is_empty())
                .cloned()
                .unwrap_or_else(|| other.describe());
            Check::new(name, bad, "", &format!("daemon not reachable: {why}"))
        }
    }
}

/// Where `health --queue` pings.
#[derive(Debug, Clone)]
pub struct QueueTarget {
    pub host: String,
    pub port: u16,
    pub password: Option<String>,
}

fn check_redis(t: &QueueTarget) -> Check {
    let name = "redis";
    let addr = format!("{}:{}", t.host, t.port);
    let res = Conn::connect(&t.host, t.port, t.password.as_deref(), CHECK_TIMEOUT)
        .and_then(|mut c| c.cmd(&["PING"]));
    match res {
        Ok(v) => {
            let pong = v.as_string().unwrap_or_default();
            Check::new(name, Status::Ok, &pong, &format!("{addr} answered {pong}"))
        }
        Err(e) => Check::new(name, Status::Fail, "", &format!("{addr}: {e}")),
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub tools_file: PathBuf,
    pub workspace_dir: PathBuf,
    pub docker: DockerMode,
    /// Retry the daemon check this long (DOCKER_WAIT_SECS).
    pub docker_wait: Duration,
    pub queue: Option<QueueTarget>,
    /// A configuration error to report as a failing `config` check.
    pub config_error: Option<String>,
}

impl Options {
    pub fn from_config(cfg: &Config) -> Options {
        Options {
            tools_file: cfg.tools_file.clone(),
            workspace_dir: cfg.workspace_dir.clone(),
            docker: cfg.health_docker,
            docker_wait: cfg.docker_wait,
            queue: None,
            config_error: None,
        }
    }

    /// Lenient: an invalid configuration becomes a failing check.
    pub fn from_env(queue: bool) -> Options {
        match Config::from_env() {
            Ok(cfg) => {
                let mut o = Options::from_config(&cfg);
                if queue {
                    o.queue = Some(QueueTarget {
                        host: cfg.redis_host.clone(),
                        port: cfg.redis_port,
                        password: cfg.redis_password.clone(),
                    });
                }
                o
            }
            Err(e) => Options {
                tools_file: PathBuf::from(
                    env("HEALTH_TOOLS_FILE").unwrap_or_else(|| DEFAULT_TOOLS_FILE.into()),
                ),
                workspace_dir: PathBuf::from(
                    env("WORKSPACE_DIR").unwrap_or_else(|| "/workspace".into()),
                ),
                docker: env("HEALTH_DOCKER")
                    .and_then(|d| DockerMode::parse(&d))
                    .unwrap_or(DockerMode::Auto),
                docker_wait: Duration::ZERO,
                queue: None,
                config_error: Some(e),
            },
        }
    }
}

type Job = Box<dyn FnOnce() -> Check + Send>;

/// Runs every check concurrently; the report keeps a fixed order.
pub fn run(opts: &Options) -> Report {
    let start = Instant::now();
    let mut fixed: Vec<Check> = Vec::new();
    if let Some(e) = &opts.config_error {
        fixed.push(Check::new("config", Status::Fail, "", e));
    }
    let tools = match std::fs::read_to_string(&opts.tools_file) {
        Ok(t) => parse_tools(&t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => default_tools(),
        Err(e) => {
            fixed.push(Check::new(
                "tools-file",
                Status::Fail,
                &opts.tools_file.display().to_string(),
                &format!("cannot read {}: {e}", opts.tools_file.display()),
            ));
            default_tools()
        }
    };
    let mut jobs: Vec<Job> = Vec::new();
    for t in tools {
        jobs.push(Box::new(move || check_tool(&t)));
    }
    let ws = opts.workspace_dir.clone();
    jobs.push(Box::new(move || check_writable("dir:WORKSPACE_DIR", &ws)));
    jobs.push(Box::new(|| match env("CARGO_HOME") {
        Some(h) => check_writable("dir:CARGO_HOME", Path::new(&h)),
        None => match env("HOME").map(|h| Path::new(&h).join(".cargo")) {
            Some(p) if p.is_dir() => check_writable("dir:CARGO_HOME", &p),
            _ => Check::new(
                "dir:CARGO_HOME",
                Status::Warn,
                "",
                "CARGO_HOME not set and ~/.cargo missing",
            ),
        },
    }));
    jobs.push(Box::new(check_git_identity));
    let (docker, wait) = (opts.docker, opts.docker_wait);
    jobs.push(Box::new(move || check_docker_daemon(docker, wait)));
    if let Some(q) = opts.queue.clone() {
        jobs.push(Box::new(move || check_redis(&q)));
    }
    let handles: Vec<_> = jobs.into_iter().map(thread::spawn).collect();
    let mut checks = fixed;
    for h in handles {
        checks.push(
            h.join()
                .unwrap_or_else(|_| Check::new("internal", Status::Fail, "", "check panicked")),
        );
    }
    for k in ["RUST_BACKTRACE", "CARGO_HOME", "CARGO_TARGET_DIR"] {
        checks.push(check_env(k));
    }
    Report {
        checks,
        duration_ms: start.elapsed().as_millis() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_file() {
        let t =
            parse_tools("# tools\ngit\n\ncargo-nextest 0.9.100  # pinned\nrustc v1.85.0 extra\n");
        assert_eq!(
            t,
            vec![
                ToolSpec {
                    name: "git".into(),
                    version: None
                },
                ToolSpec {
                    name: "cargo-nextest".into(),
                    version: Some("0.9.100".into())
                },
                ToolSpec {
                    name: "rustc".into(),
                    version: Some("1.85.0".into())
                },
            ]
        );
        assert!(parse_tools("").is_empty());
    }

    #[test]
    fn commands() {
        assert_eq!(
            tool_command("git-lfs"),
            ("git".into(), vec!["lfs".into(), "version".into()])
        );
        assert_eq!(
            tool_command("cargo-nextest").1,
            vec!["nextest", "--version"]
        );
        assert_eq!(tool_command("clippy").1, vec!["clippy", "--version"]);
        assert_eq!(tool_command("docker-buildx").1, vec!["buildx", "version"]);
        assert_eq!(tool_command("ssh").1, vec!["-V"]);
        assert_eq!(tool_command("rustc").0, "rustc");
    }

    #[test]
    fn versions() {
        assert_eq!(
            extract_version("cargo-nextest 0.9.100 (abc 2025-01-01)").as_deref(),
            Some("0.9.100")
        );
        assert_eq!(
            extract_version("git-lfs/3.6.1 (GitHub; linux amd64; go 1.23)").as_deref(),
            Some("3.6.1")
        );
        assert_eq!(
            extract_version("Docker version 27.3.1, build ce12230").as_deref(),
            Some("27.3.1")
        );
        assert_eq!(
            extract_version("github.com/docker/buildx v0.17.1 257815a").as_deref(),
            Some("0.17.1")
        );
        assert_eq!(
            extract_version("OpenSSH_9.2p1 Debian-2, OpenSSL 3.0.15").as_deref(),
            Some("9.2p1")
        );
        assert_eq!(
            extract_version("clippy 0.1.85 (4d91de4e48 2025-02-17)").as_deref(),
            Some("0.1.85")
        );
        assert_eq!(extract_version("nothing here"), None);
        assert!(version_matches("1.85.0", "1.85"));
        assert!(version_matches("1.85.0", "1.85.0"));
        assert!(!version_matches("1.85.1", "1.85.0"));
        assert!(!version_matches("1.850", "1.85"));
    }

    #[test]
    fn tool_checks() {
        let ok = check_tool(&ToolSpec {
            name: "sh-not-a-tool-xyz".into(),
            version: None,
        });
        assert_eq!(ok.status, Status::Fail);
        assert!(ok.message.contains("not found"), "{}", ok.message);
        let git = check_tool(&ToolSpec {
            name: "git".into(),
            version: None,
        });
        assert_eq!(git.status, Status::Ok, "{}", git.message);
        let pinned = check_tool(&ToolSpec {
            name: "git".into(),
            version: Some("0.0.1".into()),
        });
        assert_eq!(pinned.status, Status::Fail);
    }

    #[test]
    fn report_output() {
        let r = Report {
            checks: vec![
                Check::new(
                    "git",
                    Status::Ok,
                    "git version 2.47.3",
                    "git version 2.47.3",
                ),
                Check::new("env:CARGO_HOME", Status::Warn, "", "CARGO_HOME is not set"),
                Check::new("cargo-deny", Status::Fail, "", "not found"),
            ],
            duration_ms: 12,
        };
        assert_eq!(r.status(), Status::Fail);
        let text = r.to_text();
        assert!(text.contains("✓ git: git version 2.47.3\n"));
        assert!(text.contains("! env:CARGO_HOME: CARGO_HOME is not set\n"));
        assert!(text.ends_with("Health check FAILED (1 failing: cargo-deny)\n"));
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["status"], "fail");
        assert_eq!(v["duration_ms"], 12);
        assert_eq!(v["checks"][0]["value"], "git version 2.47.3");
        assert_eq!(v["checks"][2]["status"], "fail");
        assert!(r.to_json().starts_with(
            r#"{"status":"fail","duration_ms":12,"checks":[{"name":"git","status":"ok","value":"#
        ));
    }

    #[test]
    fn writable() {
        let d = std::env::temp_dir();
        assert_eq!(check_writable("t", &d).status, Status::Ok);
        assert_eq!(
            check_writable("t", Path::new("/nonexistent/dir")).status,
            Status::Fail
        );
    }
}
