//! End-to-end tests: the built binary against a real `redis-server`
//! (started here on a free loopback port) and local bare git repositories.

use raibid_agent::resp::{Conn, Value};
use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const PASSWORD: &str = "x";
const STREAM: &str = "raibid:jobs";
const GROUP: &str = "raibid-workers";

struct Redis {
    child: Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Redis {
    fn start() -> Redis {
        let found = Command::new("sh")
            .args(["-c", "command -v redis-server"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            found,
            "redis-server is required for these tests: apt-get install redis-server"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                PASSWORD,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (apt-get install redis-server)");
        let r = Redis { child, port };
        let start = Instant::now();
        loop {
            if let Ok(mut c) =
                Conn::connect("127.0.0.1", port, Some(PASSWORD), Duration::from_secs(1))
            {
                if c.cmd(&["PING"]).is_ok() {
                    return r;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn conn(&self) -> Conn {
        Conn::connect(
            "127.0.0.1",
            self.port,
            Some(PASSWORD),
            Duration::from_secs(2),
        )
        .unwrap()
    }

    fn cmd(&self, args: &[&str]) -> Value {
        self.conn().cmd(args).unwrap()
    }

    fn status(&self, job: &str) -> serde_json::Value {
        let v = self.cmd(&["GET", &format!("raibid:job:{job}:status")]);
        serde_json::from_str(&v.as_string().expect("status key is set")).unwrap()
    }

    /// XINFO GROUPS as name → (field → value) of the first group.
    fn group_info(&self) -> HashMap<String, Value> {
        let v = self.cmd(&["XINFO", "GROUPS", STREAM]);
        let g = &v.as_array().unwrap()[0];
        g.as_array()
            .unwrap()
            .chunks(2)
            .map(|p| (p[0].as_string().unwrap(), p[1].clone()))
            .collect()
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "raibid-agent-it-{}-{}-{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tiny crate in a bare repository; returns its `file://` URL.
fn crate_repo(root: &Path, passing: bool) -> String {
    let src = root.join("src-crate");
    std::fs::create_dir_all(src.join("src")).unwrap();
    std::fs::write(
        src.join("Cargo.toml"),
        "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
    )
    .unwrap();
    let expected = if passing { 4 } else { 5 };
    std::fs::write(
        src.join("src/lib.rs"),
        format!(
            "pub fn add(a: i32, b: i32) -> i32 {{ a + b }}\n\n#[cfg(test)]\nmod tests {{\n    #[test]\n    fn adds() {{ assert_eq!(super::add(2, 2), {expected}); }}\n}}\n"
        ),
    )
    .unwrap();
    git(&src, &["init", "-q", "-b", "main"]);
    git(&src, &["add", "."]);
    git(&src, &["commit", "-q", "-m", "init"]);
    let bare = root.join("crate.git");
    git(
        root,
        &[
            "clone",
            "-q",
            "--bare",
            src.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    format!("file://{}", bare.display())
}

fn run_agent(redis: &Redis, root: &Path, extra: &[(&str, &str)]) -> (Output, Duration) {
    let tools = root.join("tools");
    std::fs::write(&tools, "git\ncargo\nrustc\n").unwrap();
    let ws = root.join("workspace");
    std::fs::create_dir_all(&ws).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_raibid-agent"));
    cmd.env("AGENT_ID", "it-agent")
        .env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", redis.port.to_string())
        .env("REDIS_PASSWORD", PASSWORD)
        .env("QUEUE_STREAM", STREAM)
        .env("CONSUMER_GROUP", GROUP)
        .env("WORKSPACE_DIR", &ws)
        .env("HEALTH_TOOLS_FILE", &tools)
        .env("HEALTH_DOCKER", "off")
        .env("PIPELINE", "build,test")
        .env("BLOCK_MS", "200")
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env("AGENT_MODE", "once")
        .env_remove("GITEA_TOKEN");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let out = cmd.output().unwrap();
    (out, start.elapsed())
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn enqueue(redis: &Redis, id: &str, repo: &str) -> String {
    let job = serde_json::json!({
        "id": id, "repo": repo, "branch": "main", "commit": "", "status": "Pending",
        "started_at": null, "finished_at": null, "duration": null, "agent_id": null, "exit_code": null
    });
    redis
        .cmd(&["XADD", STREAM, "*", "job", &job.to_string()])
        .as_string()
        .unwrap()
}

#[test]
fn job_enqueued_before_group_exists_succeeds() {
    let redis = Redis::start();
    let root = tmpdir("ok");
    let url = crate_repo(&root, true);
    // the stream exists, the group does not yet
    enqueue(&redis, "job-ok", &url);
    let (out, _) = run_agent(&redis, &root, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let st = redis.status("job-ok");
    assert_eq!(st["status"], "Success", "{st}");
    assert_eq!(st["exit_code"], 0);
    assert_eq!(st["agent_id"], "it-agent");
    let g = redis.group_info();
    assert_eq!(g["pending"], Value::Int(0), "{g:?}");
    assert_eq!(g["lag"], Value::Int(0), "{g:?}");
    // logs stored with a TTL; the checkout is gone; the consumer removed
    let logs = redis.cmd(&["XLEN", "raibid:logs:job-ok"]);
    assert!(matches!(logs, Value::Int(n) if n > 0), "{logs:?}");
    assert!(matches!(redis.cmd(&["TTL", "raibid:logs:job-ok"]), Value::Int(t) if t > 0));
    assert!(
        matches!(redis.cmd(&["TTL", "raibid:job:job-ok:status"]), Value::Int(t) if t > 0 && t <= 86_400)
    );
    assert!(!root.join("workspace/job-ok").exists());
    assert_eq!(g["consumers"], Value::Int(0), "{g:?}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn failing_test_records_failed() {
    let redis = Redis::start();
    let root = tmpdir("fail");
    let url = crate_repo(&root, false);
    enqueue(&redis, "job-fail", &url);
    let (out, _) = run_agent(&redis, &root, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let st = redis.status("job-fail");
    assert_eq!(st["status"], "Failed", "{st}");
    assert_eq!(st["step"], "test");
    assert!(st["exit_code"].as_i64().unwrap() != 0, "{st}");
    assert!(st["message"]
        .as_str()
        .unwrap()
        .starts_with("step test failed with exit code"));
    assert_eq!(redis.group_info()["pending"], Value::Int(0));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn pending_entry_of_dead_consumer_is_reclaimed() {
    let redis = Redis::start();
    let root = tmpdir("reclaim");
    let url = crate_repo(&root, true);
    redis.cmd(&["XGROUP", "CREATE", STREAM, GROUP, "0", "MKSTREAM"]);
    enqueue(&redis, "job-reclaim", &url);
    let got = redis.cmd(&[
        "XREADGROUP",
        "GROUP",
        GROUP,
        "dead",
        "COUNT",
        "1",
        "STREAMS",
        STREAM,
        ">",
    ]);
    assert!(got.as_array().is_some(), "{got:?}");
    assert_eq!(redis.group_info()["pending"], Value::Int(1));
    std::thread::sleep(Duration::from_millis(20));
    let (out, _) = run_agent(&redis, &root, &[("RECLAIM_IDLE_MS", "1")]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("reclaimed pending entry"));
    assert_eq!(redis.status("job-reclaim")["status"], "Success");
    assert_eq!(redis.group_info()["pending"], Value::Int(0));
    // The dead agent's consumer (nothing pending after the reclaim) is gone, and so is this one.
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("removed idle consumers with nothing pending: dead"));
    assert_eq!(redis.group_info()["consumers"], Value::Int(0));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn empty_queue_exits_zero_quickly() {
    let redis = Redis::start();
    let root = tmpdir("empty");
    let (out, took) = run_agent(&redis, &root, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let g = redis.group_info();
    assert_eq!(g["consumers"], Value::Int(0), "{g:?}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn invalid_entry_is_acked_and_clone_failure_stays_pending() {
    let redis = Redis::start();
    let root = tmpdir("bad");
    redis.cmd(&[
        "XADD",
        STREAM,
        "*",
        "job",
        r#"{"id":"job-bad","branch":"main"}"#,
    ]);
    let (out, _) = run_agent(&redis, &root, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let st = redis.status("job-bad");
    assert_eq!(st["status"], "Failed");
    assert!(st["message"]
        .as_str()
        .unwrap()
        .starts_with("invalid job entry: "));
    assert_eq!(redis.group_info()["pending"], Value::Int(0));

    let missing = format!("file://{}/nope.git", root.display());
    enqueue(&redis, "job-noclone", &missing);
    let (out, _) = run_agent(&redis, &root, &[]);
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let st = redis.status("job-noclone");
    assert_eq!(st["status"], "Failed");
    assert!(
        st["message"].as_str().unwrap().starts_with("clone failed"),
        "{st}"
    );
    assert_eq!(redis.group_info()["pending"], Value::Int(1));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn sigterm_during_step_cancels_and_leaves_pending() {
    let redis = Redis::start();
    let root = tmpdir("term");
    let url = crate_repo(&root, true);
    enqueue(&redis, "job-term", &url);
    let tools = root.join("tools");
    std::fs::write(&tools, "git\ncargo\nrustc\n").unwrap();
    let ws = root.join("workspace");
    std::fs::create_dir_all(&ws).unwrap();
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // a fake cargo that sleeps, first in PATH
    let fake = bin.join("cargo");
    std::fs::write(&fake, "#!/bin/sh\nexec sleep 30\n").unwrap();
    Command::new("chmod")
        .args(["+x", fake.to_str().unwrap()])
        .status()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    std::fs::write(root.join("tools-git-only"), "git\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_raibid-agent"))
        .env("AGENT_ID", "it-agent")
        .env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", redis.port.to_string())
        .env("REDIS_PASSWORD", PASSWORD)
        .env("WORKSPACE_DIR", &ws)
        .env("HEALTH_TOOLS_FILE", root.join("tools-git-only"))
        .env("HEALTH_DOCKER", "off")
        .env("PIPELINE", "build")
        .env("PATH", &path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let running = redis.cmd(&["GET", "raibid:job:job-term:status"]);
        if let Some(s) = running.as_string() {
            if s.contains("\"step\":\"build\"") {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "build step never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    let st = redis.status("job-term");
    assert_eq!(st["status"], "Cancelled", "{st}");
    assert_eq!(
        st["message"],
        "agent received SIGTERM during step build; entry left pending for reclaim"
    );
    assert_eq!(redis.group_info()["pending"], Value::Int(1));
    assert!(start.elapsed() < Duration::from_secs(15));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn health_json_shape() {
    let root = tmpdir("health");
    std::fs::write(
        root.join("tools"),
        "git\ncargo\nrustc\nnot-a-real-tool-xyz\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_raibid-agent"))
        .args(["health", "--json"])
        .env("HEALTH_TOOLS_FILE", root.join("tools"))
        .env("WORKSPACE_DIR", &root)
        .env("HEALTH_DOCKER", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "fail");
    assert!(v["duration_ms"].as_u64().unwrap() < 2000, "{v}");
    let checks = v["checks"].as_array().unwrap();
    let by_name = |n: &str| checks.iter().find(|c| c["name"] == n).cloned().unwrap();
    assert_eq!(by_name("git")["status"], "ok");
    assert_eq!(by_name("not-a-real-tool-xyz")["status"], "fail");
    for c in checks {
        let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 4, "{c}");
        assert!(c["value"].is_string() && c["message"].is_string());
    }
    let ver = Command::new(env!("CARGO_BIN_EXE_raibid-agent"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ver.stdout).trim(),
        format!("raibid-agent {}", env!("CARGO_PKG_VERSION"))
    );
    let _ = std::fs::remove_dir_all(&root);
}
