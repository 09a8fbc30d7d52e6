//! Configuration from environment variables.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// A pipeline step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Fmt,
    Clippy,
    Build,
    Test,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Fmt => "fmt",
            Step::Clippy => "clippy",
            Step::Build => "build",
            Step::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Step> {
        match s {
            "fmt" => Some(Step::Fmt),
            "clippy" => Some(Step::Clippy),
            "build" => Some(Step::Build),
            "test" => Some(Step::Test),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Once,
    Loop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerMode {
    Auto,
    Require,
    Off,
}

impl DockerMode {
    pub fn parse(s: &str) -> Option<DockerMode> {
        match s {
            "auto" => Some(DockerMode::Auto),
            "require" => Some(DockerMode::Require),
            "off" => Some(DockerMode::Off),
            _ => None,
        }
    }
}

pub const DEFAULT_TOOLS_FILE: &str = "/usr/local/share/raibid-agent/tools";

#[derive(Debug, Clone)]
pub struct Config {
    pub agent_id: String,
    pub redis_host: String,
    pub redis_port: u16,
    pub redis_password: Option<String>,
    pub stream: String,
    pub group: String,
    pub workspace_dir: PathBuf,
    pub gitea_host: String,
    pub gitea_token: Option<String>,
    pub mode: Mode,
    pub block_ms: u64,
    pub reclaim_idle_ms: u64,
    pub job_timeout: Duration,
    pub step_timeout: Duration,
    pub pipeline: Vec<Step>,
    pub log_json: bool,
    pub health_docker: DockerMode,
    /// How long health waits for the Docker daemon to answer (a DinD sidecar starting).
    pub docker_wait: Duration,
    pub tools_file: PathBuf,
    pub max_deliveries: u64,
    /// Time between SIGTERM and SIGKILL when stopping a step.
    pub kill_grace: Duration,
}

fn num<T: FromStr>(
    get: &dyn Fn(&str) -> Option<String>,
    key: &str,
    default: T,
) -> Result<T, String> {
    match get(key) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{key}={v:?} is not a valid number")),
    }
}

impl Config {
    pub fn from_env() -> Result<Config, String> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Builds the configuration from a variable lookup; empty values count
    /// as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let get = move |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let get: &dyn Fn(&str) -> Option<String> = &get;
        let text = |k: &str, d: &str| get(k).unwrap_or_else(|| d.to_string());

        let agent_id = get("AGENT_ID")
            .or_else(|| get("HOSTNAME"))
            .unwrap_or_else(|| format!("agent-{}", std::process::id()));
        if agent_id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!("AGENT_ID={agent_id:?} must not contain whitespace"));
        }
        let mode = match text("AGENT_MODE", "once").as_str() {
            "once" => Mode::Once,
            "loop" => Mode::Loop,
            other => return Err(format!("AGENT_MODE={other:?}: expected once or loop")),
        };
        let log_json = match text("LOG_FORMAT", "text").as_str() {
            "text" => false,
            "json" => true,
            other => return Err(format!("LOG_FORMAT={other:?}: expected text or json")),
        };
        let docker = text("HEALTH_DOCKER", "auto");
        let health_docker = DockerMode::parse(&docker)
            .ok_or_else(|| format!("HEALTH_DOCKER={docker:?}: expected auto, require or off"))?;
        let mut pipeline = Vec::new();
        for s in text("PIPELINE", "fmt,clippy,build,test").split(',') {
            let s = s.trim();
            if s.is_empty() {
                continue;
            }
            pipeline.push(Step::parse(s).ok_or_else(|| {
                format!("PIPELINE: unknown step {s:?} (known: fmt, clippy, build, test)")
            })?);
        }
        let job_timeout: u64 = num(get, "JOB_TIMEOUT_SECS", 3600)?;
        let step_timeout: u64 = num(get, "STEP_TIMEOUT_SECS", 1800)?;
        if job_timeout == 0 || step_timeout == 0 {
            return Err("JOB_TIMEOUT_SECS and STEP_TIMEOUT_SECS must be > 0".into());
        }
        let cfg = Config {
            agent_id,
            redis_host: text(
                "REDIS_HOST",
                "raibid-redis-master.raibid-redis.svc.cluster.local",
            ),
            redis_port: num(get, "REDIS_PORT", 6379)?,
            redis_password: get("REDIS_PASSWORD"),
            stream: text("QUEUE_STREAM", "raibid:jobs"),
            group: text("CONSUMER_GROUP", "raibid-workers"),
            workspace_dir: PathBuf::from(text("WORKSPACE_DIR", "/workspace")),
            gitea_host: text("GITEA_HOST", "gitea.raibid-gitea.svc.cluster.local:3000"),
            gitea_token: get("GITEA_TOKEN"),
            mode,
            block_ms: num(get, "BLOCK_MS", 5000)?,
            reclaim_idle_ms: num(get, "RECLAIM_IDLE_MS", 600_000)?,
            job_timeout: Duration::from_secs(job_timeout),
            step_timeout: Duration::from_secs(step_timeout),
            pipeline,
            log_json,
            health_docker,
            docker_wait: Duration::from_secs(num(get, "DOCKER_WAIT_SECS", 0)?),
            tools_file: PathBuf::from(text("HEALTH_TOOLS_FILE", DEFAULT_TOOLS_FILE)),
            max_deliveries: num(get, "MAX_DELIVERIES", 5)?,
            kill_grace: Duration::from_secs(num(get, "KILL_GRACE_SECS", 10)?),
        };
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |k| m.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = cfg(&[("HOSTNAME", "pod-1"), ("REDIS_PASSWORD", "")]).unwrap();
        assert_eq!(c.agent_id, "pod-1");
        assert_eq!(c.redis_port, 6379);
        assert_eq!(c.redis_password, None);
        assert_eq!(c.stream, "raibid:jobs");
        assert_eq!(c.group, "raibid-workers");
        assert_eq!(c.mode, Mode::Once);
        assert_eq!(c.block_ms, 5000);
        assert_eq!(c.reclaim_idle_ms, 600_000);
        assert_eq!(
            c.pipeline,
            vec![Step::Fmt, Step::Clippy, Step::Build, Step::Test]
        );
        assert_eq!(c.health_docker, DockerMode::Auto);
        assert_eq!(c.docker_wait, Duration::ZERO);
        assert_eq!(c.job_timeout, Duration::from_secs(3600));
        assert!(cfg(&[]).unwrap().agent_id.starts_with("agent-"));
    }

    #[test]
    fn overrides_and_errors() {
        let c = cfg(&[
            ("AGENT_ID", "a"),
            ("PIPELINE", "build, test"),
            ("AGENT_MODE", "loop"),
        ])
        .unwrap();
        assert_eq!(c.agent_id, "a");
        assert_eq!(c.pipeline, vec![Step::Build, Step::Test]);
        assert_eq!(c.mode, Mode::Loop);
        assert!(cfg(&[("PIPELINE", "build,deploy")]).is_err());
        assert!(cfg(&[("REDIS_PORT", "70000")]).is_err());
        assert!(cfg(&[("AGENT_MODE", "forever")]).is_err());
        assert!(cfg(&[("LOG_FORMAT", "xml")]).is_err());
        assert!(cfg(&[("HEALTH_DOCKER", "yes")]).is_err());
        assert!(cfg(&[("STEP_TIMEOUT_SECS", "0")]).is_err());
    }
}
