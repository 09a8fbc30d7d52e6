use raibid_agent::config::Config;
use raibid_agent::exec::RealExec;
use raibid_agent::health::{self, Status};
use raibid_agent::log;
use raibid_agent::queue::RedisQueue;
use raibid_agent::runner::{run_agent, EXIT_USAGE};
use std::sync::atomic::{AtomicI32, Ordering};

const HELP: &str = "\
raibid-agent — takes one CI job from a Redis stream and runs the Rust pipeline

USAGE:
    raibid-agent [run]              run (AGENT_MODE=once: at most one job; loop: until SIGTERM)
    raibid-agent health [--json] [--queue]
                                    check the toolchain (--queue: also PING Redis)
    raibid-agent --version | --help

EXIT STATUS (run):
    0    the job succeeded, or there was nothing to do
    1    the job failed (a CI result: build/test failure, invalid entry)
    2    usage or configuration error
    3    health check failed (no job taken)
    4    infrastructure error (Redis unreachable, clone failed; entry left pending)
    143  terminated by SIGTERM (130: SIGINT); entry left pending for reclaim
EXIT STATUS (health): 0 no check failed (warnings allowed), 1 a check failed, 2 usage

ENVIRONMENT (defaults):
    AGENT_ID ($HOSTNAME or agent-<pid>)  REDIS_HOST (raibid-redis-master.raibid-redis.svc.cluster.local)
    REDIS_PORT (6379)  REDIS_PASSWORD  QUEUE_STREAM (raibid:jobs)  CONSUMER_GROUP (raibid-workers)
    WORKSPACE_DIR (/workspace)  GITEA_HOST (gitea.raibid-gitea.svc.cluster.local:3000)  GITEA_TOKEN
    AGENT_MODE (once|loop)  BLOCK_MS (5000)  RECLAIM_IDLE_MS (600000)  JOB_TIMEOUT_SECS (3600)
    STEP_TIMEOUT_SECS (1800)  PIPELINE (fmt,clippy,build,test)  LOG_FORMAT (text|json)
    HEALTH_DOCKER (auto|require|off)  HEALTH_TOOLS_FILE (/usr/local/share/raibid-agent/tools)
    MAX_DELIVERIES (5)  KILL_GRACE_SECS (10)  DOCKER_WAIT_SECS (0: health waits this long for dockerd)
";

static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn usage_error(msg: &str) -> i32 {
    eprintln!("raibid-agent: {msg}\n\n{HELP}");
    EXIT_USAGE
}

fn cmd_run() -> i32 {
    let cfg = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("raibid-agent: configuration error: {e}");
            return EXIT_USAGE;
        }
    };
    log::set_json(cfg.log_json);
    install_signal_handlers();
    log::event(
        "info",
        None,
        &format!(
            "raibid-agent {} starting: agent {} stream {} group {} mode {:?}",
            env!("CARGO_PKG_VERSION"),
            cfg.agent_id,
            cfg.stream,
            cfg.group,
            cfg.mode
        ),
    );
    let opts = health::Options::from_config(&cfg);
    run_agent(
        &cfg,
        || health::run(&opts),
        || RedisQueue::connect(&cfg),
        RealExec::new(&cfg, &SIGNAL),
        &SIGNAL,
    )
}

fn cmd_health(args: &[String]) -> i32 {
    let mut json = false;
    let mut queue = false;
    for a in args {
        match a.as_str() {
            "--json" => json = true,
            "--queue" => queue = true,
            other => return usage_error(&format!("health: unknown option {other:?}")),
        }
    }
    let report = health::run(&health::Options::from_env(queue));
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if report.status() == Status::Fail {
        1
    } else {
        0
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        None => cmd_run(),
        Some("run") if args.len() == 1 => cmd_run(),
        Some("health") => cmd_health(&args[1..]),
        Some("--version") | Some("-V") | Some("version") => {
            println!("raibid-agent {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some("--help") | Some("-h") | Some("help") => {
            print!("{HELP}");
            0
        }
        Some(other) => usage_error(&format!("unknown argument {other:?}")),
    };
    std::process::exit(code);
}
