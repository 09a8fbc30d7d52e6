"""Real services for the KEDA / agent_jobs / smoke tests, started and stopped by the tests.

- The Kubernetes test bed (tests/testbed/k8s): kube-apiserver + kube-controller-manager v1.20.2 built
  from Debian's source package (cached per machine; the first run on a fresh machine builds it,
  about 4-5 min on 2 cores) and etcd, on free loopback ports, stopped by PID.
- The node test bed (`k8s_node_testbed`): the same control plane plus kube-scheduler, a separate
  containerd, a CNI bridge (10.244.77.0/24) and a kubelet registered as a node on 10.244.77.1, so
  that real Pods run (local images only: `imagePullPolicy: Never`; the pause and busybox images are
  imported at start, `K8sTestBed.import_image` adds more). Its first build adds kubelet and
  kube-scheduler (about 7 min on 2 cores with the control plane's Go cache warm).
- A real redis-server (Debian package) on a free loopback port with a password, no persistence.

The fixtures that start them live in conftest.py (`k8s_testbed`, `k8s_node_testbed`,
`redis_server`): one test bed of each kind per pytest session however many modules use it, stopped
at the end. `k8s_testbed` is a control plane of its own, beside the node bed when a session uses
both (free ports each; the node parts exist once per machine), unless K8S_TESTBED_NODE=1 (then it
is the node bed: one test bed for the session). Only one node test bed per machine at a time (the
bridge, the /kubepods cgroups and kubelet's hard-coded paths are machine-wide): a start waits while
another runs (node_testbed_turn, bounded), and start.sh refuses one that was not stopped, saying
which state directory holds it.

Nothing here needs pytest: the same functions start and stop the test beds for Molecule's create and
destroy steps (molecule/keda, molecule/agent_jobs) through this file's command line --
`k8s_testbed.py start STATE [--node]` (builds if needed, starts, writes STATE/testbed.json, prints it)
and `k8s_testbed.py stop STATE` -- so there is one implementation with two entry points. A failure
raises TestBedError naming the step; the fixtures turn it into a test failure.

Every wait is bounded: build.sh (BUILD_TIMEOUT_S, killed with its compilers on expiry), start.sh
(START_TIMEOUT_S; each component's own wait inside it names the component and its log), stop.sh,
image imports and redis-server's first PING. Build and start times go to the terminal and to
.cache/k8s-testbed-timings.jsonl (read by benchmarks).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support import CommandTimeout, keda_crd, run_bounded, tail

ROOT = Path(__file__).resolve().parents[2]
TESTBED = ROOT / "tests" / "testbed" / "k8s"
TIMINGS = ROOT / ".cache" / "k8s-testbed-timings.jsonl"
REDUCED_SCALEDJOB_CRD = TESTBED / "crds" / "scaledjobs.keda.sh-k8s1.20.yaml"
CACHE_DIR = Path(os.environ.get("K8S_TESTBED_CACHE", "/var/cache/raibid-k8s-testbed/v1.20.2"))
# Labels the node test bed's kubelet registers with (K8S_TESTBED_NODE_LABELS overrides).
DEFAULT_NODE_LABELS = {"raibid.dev/testbed": "node", "raibid.dev/agent-pool": "testbed"}
# Bounds: a cold build of everything is ~12-20 min on 2 busy cores.
BUILD_TIMEOUT_S = 2700
START_TIMEOUT_S = 300
STOP_TIMEOUT_S = 180
IMPORT_TIMEOUT_S = 300
REDIS_START_TIMEOUT_S = 10
# A daemon stopped by its pidfile gets SIGKILL after this long.
PID_STOP_TIMEOUT_S = 10
# One node test bed per machine: node.sh writes the running one's state directory here. A start of a
# node bed waits (at most NODE_WAIT_TIMEOUT_S, K8S_TESTBED_NODE_WAIT overrides) while another one runs,
# so that the integration tests and the agent_jobs scenario can run side by side (make test); the lock
# makes the check and the start one step.
NODE_OWNER = Path("/run/raibid-k8s-testbed-node.owner")
NODE_LOCK = Path("/run/lock/raibid-k8s-testbed-node.lock")
NODE_WAIT_TIMEOUT_S = int(os.environ.get("K8S_TESTBED_NODE_WAIT", "3600"))
NODE_WAIT_POLL_S = 5


def keda_vars(kubeconfig: str, triggerauthentications_crd: str | os.PathLike | None = None) -> dict:
    """The keda role variables for this test bed: the CRDs only (the operator cannot run here): the
    pinned TriggerAuthentication CRD and the reduced ScaledJob CRD (the upstream one is too much for
    a 1.20 API server). Used by test_k8s_apply.py, e2e_steps.py and molecule/agent_jobs. Raises
    KedaCrdError when the pinned CRD cannot be had."""
    crd = triggerauthentications_crd or keda_crd("triggerauthentications")
    return {
        "keda_kubeconfig": str(kubeconfig),
        "keda_wait_for_operator": False,
        "keda_manifest_sources": [str(crd), str(REDUCED_SCALEDJOB_CRD)],
    }


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _pid_runs(pid: int, name: str) -> bool:
    """Whether `pid` still runs a command line containing `name` (guards against PID reuse)."""
    try:
        return name in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False


def stop_pidfile(pidfile: Path, name: str, timeout: float = PID_STOP_TIMEOUT_S) -> str:
    """SIGTERM the process in `pidfile` if it still runs `name`, SIGKILL after `timeout` s; removes the
    pidfile. Returns what it did, for the log."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return f"{name}: no pidfile {pidfile}"
    if not _pid_runs(pid, name):
        pidfile.unlink(missing_ok=True)
        return f"{name} ({pid}) was not running"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_runs(pid, name) and time.monotonic() < deadline:
        time.sleep(0.1)
    how = "SIGTERM"
    if _pid_runs(pid, name):
        os.kill(pid, signal.SIGKILL)
        how = f"SIGKILL after ignoring SIGTERM for {timeout:.0f}s"
    pidfile.unlink(missing_ok=True)
    return f"stopped {name} ({pid}, {how})"


def record_timing(**values) -> None:
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    with TIMINGS.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"at": time.time(), **values}) + "\n")


class TestBedError(RuntimeError):
    """A test bed step failed or hung; the message names the step (and where its logs are)."""


Report = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class K8sTestBed:
    """A started test bed. The node fields are None / empty on a control-plane-only test bed."""

    state_dir: Path
    kubeconfig: Path
    server: str
    build_seconds: float
    start_seconds: float
    env: dict = field(default_factory=dict)
    node_name: str | None = None
    node_ip: str | None = None
    node_labels: dict = field(default_factory=dict)
    containerd_address: str | None = None
    ctr: list[str] = field(default_factory=list)  # ["ctr", "--address", SOCK, "-n", "k8s.io"]
    pause_image: str | None = None
    # "raibid-testbed.local/busybox:1" (build.sh: mkimage.py --busybox), imported at start
    busybox_image: str | None = None

    @property
    def has_node(self) -> bool:
        return self.node_name is not None

    def api_client(self):
        """A kubernetes.client.ApiClient for the admin kubeconfig."""
        return k8s_config.new_client_from_config(config_file=str(self.kubeconfig))

    def import_image(self, tar_path: str | os.PathLike, timeout: float = IMPORT_TIMEOUT_S) -> list[str]:
        """Import a docker-archive (`docker save`) or OCI tar into the node's containerd, namespace
        k8s.io, where the kubelet finds it (use `imagePullPolicy: Never` or IfNotPresent with a
        tag). Returns the image references it contained. Recorded as kind "k8s-image-import"."""
        if not self.has_node:
            raise RuntimeError("import_image needs the node test bed (k8s_node_testbed)")
        t0 = time.monotonic()
        proc = subprocess.run(
            [*self.ctr, "images", "import", str(tar_path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        seconds = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"ctr images import {tar_path} failed: {proc.stderr.strip() or proc.stdout.strip()}")
        refs = re.findall(r"^unpacking (\S+) \(", proc.stdout, re.M)
        record_timing(
            kind="k8s-image-import", seconds=round(seconds, 2), mib=round(Path(tar_path).stat().st_size / 2**20, 1)
        )
        return refs


@dataclass
class RedisServer:
    """A started redis-server (daemonized); `workdir` holds its config (0600, with the password), its
    log and its pidfile."""

    host: str
    port: int
    password: str
    version: str
    workdir: Path

    @property
    def pidfile(self) -> Path:
        return self.workdir / "redis.pid"

    def stop(self) -> str:
        """Stop it by PID (stop_pidfile); returns what was done."""
        return stop_pidfile(self.pidfile, "redis-server")


def read_env_file(path: Path) -> dict:
    """start.sh's env file: KEY=VALUE lines, a value with spaces in double quotes (shell syntax)."""
    env = {}
    for line in path.read_text().splitlines():
        if "=" not in line:
            continue
        key, value = line.split("=", 1)
        env[key] = shlex.split(value)[0] if value.startswith(('"', "'")) else value
    return env


def parse_labels(text: str) -> dict:
    return dict(item.split("=", 1) if "=" in item else (item, "") for item in text.split(",") if item)


def _start_lines(stderr: str | bytes | None) -> str:
    """The last of start.sh's and node.sh's own log lines: what it was waiting for, and which
    component did not answer (the component logs and stop.sh's lines that follow can be long)."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode(errors="replace")
    prefixes = ("[k8s-testbed start]", "[k8s-testbed node]")
    own = [line for line in (stderr or "").splitlines() if line.startswith(prefixes)]
    return tail("\n".join(own), 6)


def running_node_testbed() -> str | None:
    """The state directory of the node test bed running on this machine (one of its daemons alive), or
    None. A bed that was not stopped (every daemon gone) is not running: start.sh then refuses it by
    name. A stop through stop_testbed holds the node-bed lock, so a start never sees one half-stopped."""
    try:
        state = NODE_OWNER.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    try:
        lines = (Path(state) / "pids").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, pid = line.partition(" ")
        if pid.strip().isdigit() and _pid_runs(int(pid), name):
            return state
    return None


@contextlib.contextmanager
def node_testbed_turn(report: Report = _stderr, timeout: float | None = None, poll: float = NODE_WAIT_POLL_S):
    """Hold the machine's node-bed lock once no other node test bed runs; waits at most `timeout`
    seconds (NODE_WAIT_TIMEOUT_S), then raises TestBedError naming the bed that still runs."""
    limit = NODE_WAIT_TIMEOUT_S if timeout is None else timeout
    deadline = time.monotonic() + limit
    said = False
    NODE_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(NODE_LOCK, "a", encoding="utf-8") as lock:
        while True:
            if _try_flock(lock):
                other = running_node_testbed()
                if other is None:
                    _clean_up_stopped_node_testbed(report)
                    try:
                        yield
                    finally:
                        fcntl.flock(lock, fcntl.LOCK_UN)
                    return
                fcntl.flock(lock, fcntl.LOCK_UN)
            else:
                other = "(another start holds " + str(NODE_LOCK) + ")"
            if time.monotonic() >= deadline:
                raise TestBedError(
                    f"another node test bed ran on this machine for more than {limit:.0f} s ({other}); one node "
                    f"bed runs at a time (K8S_TESTBED_NODE_WAIT sets the wait)"
                )
            if not said:
                report(f"[k8s-testbed] waiting for the node test bed in {other} to stop (one per machine)")
                said = True
            time.sleep(poll)


@contextlib.contextmanager
def _node_lock(timeout: float):
    """Hold the node-bed lock (waiting at most `timeout` seconds: a start holds it only while it checks
    and runs start.sh); past that, go on without it rather than leave a bed running."""
    NODE_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(NODE_LOCK, "a", encoding="utf-8") as lock:
        deadline = time.monotonic() + timeout
        while not _try_flock(lock):
            if time.monotonic() >= deadline:
                print(f"[k8s-testbed] {NODE_LOCK} still held after {timeout:.0f}s; stopping without it")
                yield
                return
            time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _clean_up_stopped_node_testbed(report: Report) -> None:
    """A node bed whose daemons are all gone but whose owner file and state remain was killed before
    stop.sh could clean up (a run interrupted harder than its teardown allows): run stop.sh on it now,
    so that its bridge and cgroups do not refuse this start. Only a state directory of these test beds
    (it has a pids file) is touched; anything else is left to start.sh's refusal."""
    try:
        state = Path(NODE_OWNER.read_text(encoding="utf-8").strip())
    except OSError:
        return
    if not (state / "pids").is_file():
        return
    report(f"[k8s-testbed] the node test bed in {state} was not stopped (its daemons are gone): stopping it")
    stop_testbed(state, remove=True, locked=True)


def _try_flock(lock) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def start_testbed(node: bool = False, state: Path | None = None, report: Report = _stderr) -> K8sTestBed:
    """Build (cached per machine) and start a test bed on free loopback ports, in `state` (a new
    directory under /tmp when None; it must not hold a running test bed). A node bed first waits for
    the machine's node bed to be free (node_testbed_turn). Raises TestBedError naming the step that
    failed or hung (the build, the wait, or the component start.sh was waiting for). Writes
    STATE/testbed.json (what load_testbed reads)."""
    parts = ["kube-apiserver", "kube-controller-manager", "etcd"] + (["kubelet", "kube-scheduler"] if node else [])
    cached = all((CACHE_DIR / "bin" / b).exists() for b in parts)
    if node:
        cached = cached and (CACHE_DIR / "images" / "pause.tar").exists() and (CACHE_DIR / "cni" / "bin").exists()
    flag = {"K8S_TESTBED_NODE": "1" if node else "0"}
    t0 = time.monotonic()
    try:
        build = run_bounded(
            [str(TESTBED / "build.sh")], BUILD_TIMEOUT_S, f"k8s test bed build.sh (log: {CACHE_DIR / 'build.log'})",
            env={**os.environ, **flag},
        )  # fmt: skip
    except CommandTimeout as exc:
        raise TestBedError(str(exc)) from None
    build_seconds = time.monotonic() - t0
    if build.returncode != 0:
        raise TestBedError(f"k8s test bed build failed:\n{build.stderr[-4000:]}")
    what = "control plane + node" if node else "control plane"
    report(f"[k8s-testbed] build ({what}) {'(cached)' if cached else '(cold)'}: {build_seconds:.1f}s")

    if state is None:
        state = Path(tempfile.mkdtemp(prefix="raibid-k8s-testbed-"))
    state.mkdir(parents=True, exist_ok=True)
    ports = {
        "K8S_TESTBED_ETCD_PORT": free_port(),
        "K8S_TESTBED_ETCD_PEER_PORT": free_port(),
        "K8S_TESTBED_APISERVER_PORT": free_port(),
        "K8S_TESTBED_CM_PORT": free_port(),
    }
    labels = os.environ.get("K8S_TESTBED_NODE_LABELS", ",".join(f"{k}={v}" for k, v in DEFAULT_NODE_LABELS.items()))
    if node:
        ports.update(
            K8S_TESTBED_SCHEDULER_PORT=free_port(),
            K8S_TESTBED_KUBELET_PORT=free_port(),
            K8S_TESTBED_KUBELET_HEALTHZ_PORT=free_port(),
        )
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, **flag, "K8S_TESTBED_NODE_LABELS": labels}
    waited = time.monotonic()
    with node_testbed_turn(report) if node else contextlib.nullcontext():
        waited = time.monotonic() - waited
        if waited >= NODE_WAIT_POLL_S:
            report(f"[k8s-testbed] the node test bed was free after {waited:.0f}s")
        t0 = time.monotonic()
        start = _run_start(state, env)
    start_seconds = time.monotonic() - t0
    if start.returncode != 0:
        stop_testbed(state, remove=False)
        raise TestBedError(
            f"k8s test bed did not start (logs kept in {state / 'logs'}); start.sh said:\n"
            f"{_start_lines(start.stderr)}\nits output ends:\n{start.stderr[-3000:]}"
        )
    (state / "testbed.json").write_text(
        json.dumps({"node": node, "labels": labels, "build_s": build_seconds, "start_s": start_seconds}) + "\n"
    )
    bed = load_testbed(state)
    if node:
        env = bed.env
        report(
            f"[k8s-testbed] started with node {bed.node_name} ({bed.node_ip}) Ready in {start_seconds:.1f}s"
            f" (control plane {int(env['K8S_TESTBED_CONTROL_PLANE_MS']) / 1000:.1f}s,"
            f" node {int(env['K8S_TESTBED_NODE_START_MS']) / 1000:.1f}s; {env['K8S_TESTBED_SERVER']})"
        )
        record_timing(
            kind="k8s-node-testbed",
            build_s=round(build_seconds, 1),
            build_cached=cached,
            start_s=round(start_seconds, 1),
            control_plane_s=round(int(env["K8S_TESTBED_CONTROL_PLANE_MS"]) / 1000, 1),
            node_ready_s=round(int(env["K8S_TESTBED_NODE_START_MS"]) / 1000, 1),
            image_import_s=round(int(env["K8S_TESTBED_IMAGE_IMPORT_MS"]) / 1000, 2),
        )
    else:
        report(f"[k8s-testbed] started in {start_seconds:.1f}s ({bed.server})")
        record_timing(
            kind="k8s-testbed", build_s=round(build_seconds, 1), build_cached=cached, start_s=round(start_seconds, 1)
        )
    return bed


def _run_start(state: Path, env: dict) -> subprocess.CompletedProcess:
    """start.sh STATE, bounded by START_TIMEOUT_S (on expiry the bed is stopped and TestBedError names
    the component it was waiting for). Not run_bounded: the daemons start.sh leaves running must stay in
    this process group (a Ctrl-C reaches them as before); their output goes to files, so nothing holds
    the pipes after a kill."""
    try:
        return subprocess.run(
            [str(TESTBED / "start.sh"), str(state)],
            env=env,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        stop_testbed(state, remove=False)
        raise TestBedError(
            f"k8s test bed start.sh did not finish within {START_TIMEOUT_S} s (stopped; logs kept in "
            f"{state / 'logs'}); it was at:\n{_start_lines(exc.stderr)}"
        ) from None


def load_testbed(state: Path) -> K8sTestBed:
    """The running test bed in `state` (its env file and testbed.json, as start_testbed wrote them)."""
    try:
        meta = json.loads((state / "testbed.json").read_text())
        env = read_env_file(state / "env")
    except FileNotFoundError as exc:
        raise TestBedError(f"no test bed was started in {state} ({exc.filename} is missing)") from None
    bed = K8sTestBed(state, Path(env["KUBECONFIG"]), env["K8S_TESTBED_SERVER"], meta["build_s"], meta["start_s"], env)
    if meta["node"]:
        bed.node_name = env["K8S_TESTBED_NODE_NAME"]
        bed.node_ip = env["K8S_TESTBED_NODE_IP"]
        bed.node_labels = parse_labels(meta["labels"])
        bed.containerd_address = env["K8S_TESTBED_CONTAINERD_ADDRESS"]
        bed.ctr = shlex.split(env["K8S_TESTBED_CTR"])
        bed.pause_image = env["K8S_TESTBED_PAUSE_IMAGE"]
        bed.busybox_image = env["K8S_TESTBED_BUSYBOX_IMAGE"]
    return bed


def stop_testbed(state: Path, remove: bool = True, locked: bool = False) -> float:
    """stop.sh STATE (by PID, bounded); removes the state directory unless `remove` is false or the
    stop did not finish. A node bed is stopped under the node-bed lock (`locked`: the caller holds it).
    Returns the seconds it took."""
    t0 = time.monotonic()
    node = (state / "node").is_dir() and not locked  # node.sh's part of the state
    try:
        with _node_lock(STOP_TIMEOUT_S) if node else contextlib.nullcontext():
            subprocess.run([str(TESTBED / "stop.sh"), str(state)], timeout=STOP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        print(f"[k8s-testbed] stop.sh {state} did not finish in {STOP_TIMEOUT_S}s; state kept")
        return time.monotonic() - t0
    if remove:
        shutil.rmtree(state, ignore_errors=True)
    return time.monotonic() - t0


def start_redis(host: str = "127.0.0.1", workdir: Path | None = None, report: Report = _stderr) -> RedisServer:
    """redis-server (Debian's) daemonized on a free port of `host` (loopback by default; the node test
    bed's bridge address for Pods) with a random password, no persistence, its PID in
    workdir/redis.pid (a new directory under /tmp when `workdir` is None). Raises TestBedError if it
    exits or does not answer PING within REDIS_START_TIMEOUT_S (then nothing is left running)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise TestBedError(
            "redis-server is missing: `make setup` (tests/testbed/setup.sh) installs Debian's redis-server"
        )
    port = free_port(host)
    password = secrets.token_hex(16)
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="raibid-redis-"))
    workdir.mkdir(parents=True, exist_ok=True)
    server = RedisServer(host, port, password, "", workdir)
    conf, log = workdir / "redis.conf", workdir / "redis.log"
    # The password goes in a 0600 file, not on the command line (visible in ps).
    conf.touch(mode=0o600)
    conf.chmod(0o600)
    conf.write_text(
        f"port {port}\nbind {host}\nsave ''\nappendonly no\ndir {workdir}\n"
        f"requirepass {password}\nmaxmemory-policy noeviction\nprotected-mode no\n"
        f"daemonize yes\npidfile {server.pidfile}\nlogfile {log}\n",
        encoding="utf-8",
    )

    def log_tail() -> str:
        return tail(log.read_text(errors="replace") if log.exists() else "")

    try:
        started = subprocess.run(
            [binary, str(conf)], capture_output=True, text=True, timeout=REDIS_START_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise TestBedError(f"redis-server {conf} did not daemonize within {REDIS_START_TIMEOUT_S} s") from None
    if started.returncode != 0:
        raise TestBedError(
            f"redis-server exited with {started.returncode} during start: {started.stderr or started.stdout}"
            f"; its log ends:\n{log_tail()}"
        )
    # socket_timeout too: a server that accepts but never answers must not block PING forever.
    client = redis.Redis(host=host, port=port, password=password, socket_connect_timeout=1, socket_timeout=1)
    deadline = time.monotonic() + REDIS_START_TIMEOUT_S
    try:
        while True:
            try:
                client.ping()
                break
            except redis.RedisError as exc:
                if time.monotonic() > deadline:
                    server.stop()
                    raise TestBedError(
                        f"redis-server did not answer PING on {host}:{port} within {REDIS_START_TIMEOUT_S} s; "
                        f"its log ({log}) ends:\n{log_tail()}"
                    ) from exc
                time.sleep(0.1)
        server.version = client.info("server")["redis_version"]
    finally:
        client.close()
    report(f"[redis] redis-server {server.version} on {host}:{port} (pid {server.pidfile.read_text().strip()})")
    return server


# CI pods for the rollout tests: bound to a Node by name (no scheduler), their phase set through the
# status subresource as a kubelet would report it (the control-plane test bed has no kubelet).
CI_POD_LABELS = {"app.kubernetes.io/part-of": "raibid-ci"}


def running_ci_pod(core, namespace: str, node: str, name: str = "ci-job") -> None:
    """Create a CI pod (the agent_jobs labels) bound to `node` in `namespace` and report it Running.
    `core` is a kubernetes CoreV1Api; the namespace's default ServiceAccount, which the
    controller-manager creates shortly after the namespace, is waited for (60 s)."""
    body = k8s_client.V1Pod(
        metadata=k8s_client.V1ObjectMeta(name=name, labels=CI_POD_LABELS),
        spec=k8s_client.V1PodSpec(
            node_name=node,
            automount_service_account_token=False,
            containers=[k8s_client.V1Container(name="agent", image="raibid-ci-agent:latest")],
        ),
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            core.create_namespaced_pod(namespace, body)
            break
        except k8s_client.exceptions.ApiException as exc:
            if "serviceaccount" not in str(exc.body) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    set_pod_phase(core, namespace, name, "Running")


def set_pod_phase(core, namespace: str, name: str, phase: str) -> None:
    """Report the pod in `phase` (Running, Succeeded, ...) through its status subresource."""
    core.patch_namespaced_pod_status(name, namespace, {"status": {"phase": phase}})


# Debian's docker-registry (distribution 2.8), unpacked from its .deb, never installed: installing it
# would start a registry service on port 5000 of this machine.
REGISTRY_CACHE = Path(os.environ.get("RAIBID_REGISTRY_CACHE", "/var/cache/raibid-docker-registry"))
REGISTRY_START_TIMEOUT_S = 30


@dataclass
class RegistryServer:
    """A started docker-registry on loopback; `workdir` holds its config, storage and log."""

    url: str
    version: str
    workdir: Path
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def registry_binary(report: Report = _stderr) -> Path:
    """docker-registry from Debian's package in REGISTRY_CACHE/<version>, downloaded once per machine."""
    found = sorted(REGISTRY_CACHE.glob("*/usr/bin/docker-registry"))
    if found:
        return found[-1]
    with tempfile.TemporaryDirectory(prefix="raibid-registry-deb-") as tmp:
        try:
            got = subprocess.run(
                ["apt-get", "download", "docker-registry"],
                check=False,
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=300,
            )
        except subprocess.TimeoutExpired:
            raise TestBedError("apt-get download docker-registry did not finish within 300 s") from None
        debs = sorted(Path(tmp).glob("docker-registry_*.deb"))
        if got.returncode != 0 or not debs:
            raise TestBedError(
                f"apt-get download docker-registry failed ({got.returncode}): {tail(got.stderr)}; "
                "the package lists may be empty (apt-get update)"
            )
        version = debs[0].name.split("_")[1]
        dest = REGISTRY_CACHE / version
        unpacked = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=REGISTRY_CACHE.parent))
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True, timeout=120)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(unpacked, dest)
    report(f"[registry] unpacked docker-registry {version} into {dest}")
    return dest / "usr" / "bin" / "docker-registry"


def start_registry(workdir: Path | None = None, report: Report = _stderr) -> RegistryServer:
    """docker-registry on a free loopback port with filesystem storage in `workdir`; raises TestBedError
    when it exits or its /v2/ does not answer 200 within REGISTRY_START_TIMEOUT_S."""
    binary = registry_binary(report)
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="raibid-registry-"))
    port = free_port()
    conf, log = workdir / "config.yml", workdir / "registry.log"
    conf.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {workdir / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n",
        encoding="utf-8",
    )
    with log.open("wb") as out:
        process = subprocess.Popen([str(binary), "serve", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    server = RegistryServer(f"http://127.0.0.1:{port}", "", workdir, process)
    deadline = time.monotonic() + REGISTRY_START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"{server.url}/v2/", timeout=1) as answer:
                if answer.status == 200:
                    break
        except OSError as exc:
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise TestBedError(
                    f"docker-registry did not answer {server.url}/v2/ within {REGISTRY_START_TIMEOUT_S} s "
                    f"(exit status {process.poll()}); its log ends:\n{tail(log.read_text(errors='replace'))}"
                ) from exc
            time.sleep(0.2)
    server.version = binary.parent.parent.parent.name
    report(f"[registry] docker-registry {server.version} on {server.url} (pid {process.pid})")
    return server


def main(argv: list[str]) -> int:
    """`start STATE [--node]`: build if needed, start, print STATE/testbed.json's fields and the
    kubeconfig as JSON. `stop STATE`: stop by PID and remove STATE. Exit 1 with the reason on stderr."""
    parser = argparse.ArgumentParser(prog="k8s_testbed.py", description=main.__doc__)
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("state", type=Path, help="the test bed's state directory")
    parser.add_argument("--node", action="store_true", help="with one node (kubelet, containerd): real Pods run")
    args = parser.parse_args(argv)
    state = args.state.resolve()
    try:
        if args.action == "start":
            bed = start_testbed(args.node, state)
            print(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(bed).items()}))
        else:
            seconds = stop_testbed(state)
            if (state / "pids").exists():
                raise TestBedError(f"stop.sh did not finish within {STOP_TIMEOUT_S} s; the state is kept")
            print(f"[k8s-testbed] stopped {state} in {seconds:.1f}s", file=sys.stderr)
    except TestBedError as exc:
        print(f"k8s_testbed.py {args.action} {state}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
