"""Real services for the KEDA / agent_jobs / smoke tests, started and stopped by the tests.

- The Kubernetes test bed (tests/testbed/k8s): kube-apiserver + kube-controller-manager v1.20.2 built
  from Debian's source package (cached per machine; the first run on a fresh machine builds it,
  about 4-5 min on 2 cores) and etcd, on free loopback ports, stopped by PID.
- A real redis-server (Debian package) on a free loopback port with a password, no persistence.

Test modules import the fixtures (`from k8s_testbed import k8s_testbed  # noqa: F401`). Each
service is started once per pytest process however many modules use it, and stopped at the end.
Build and start times go to the terminal and to .cache/k8s-testbed-timings.jsonl (read by
benchmarks).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
TESTBED = ROOT / "tests" / "testbed" / "k8s"
TIMINGS = ROOT / ".cache" / "k8s-testbed-timings.jsonl"
SHARED_CRDS = ROOT.parent / "shared" / "data" / "keda-v2.20.2-crds"
REDUCED_SCALEDJOB_CRD = TESTBED / "crds" / "scaledjobs.keda.sh-k8s1.20.yaml"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def record_timing(**values) -> None:
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    with TIMINGS.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"at": time.time(), **values}) + "\n")


def say(request: pytest.FixtureRequest, line: str) -> None:
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    # Fixture output is captured; these figures should reach the terminal (and CI's log) anyway.
    if capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)
    else:
        reporter.write_line(line)


@dataclass
class K8sTestBed:
    state_dir: Path
    kubeconfig: Path
    server: str
    build_seconds: float
    start_seconds: float
    env: dict = field(default_factory=dict)


@dataclass
class RedisServer:
    host: str
    port: int
    password: str
    version: str
    process: subprocess.Popen


_STARTED: dict[str, object] = {}


def _start_testbed(request: pytest.FixtureRequest) -> K8sTestBed:
    cached = all(
        (Path(os.environ.get("K8S_TESTBED_CACHE", "/var/cache/raibid-k8s-testbed/v1.20.2")) / "bin" / b).exists()
        for b in ("kube-apiserver", "kube-controller-manager", "etcd")
    )
    t0 = time.monotonic()
    build = subprocess.run([str(TESTBED / "build.sh")], capture_output=True, text=True, check=False)
    build_seconds = time.monotonic() - t0
    if build.returncode != 0:
        pytest.fail(f"k8s test bed build failed:\n{build.stderr[-4000:]}")
    say(request, f"[k8s-testbed] build {'(cached)' if cached else '(cold)'}: {build_seconds:.1f}s")

    state = Path(tempfile.mkdtemp(prefix="raibid-k8s-testbed-"))
    ports = {
        "K8S_TESTBED_ETCD_PORT": free_port(),
        "K8S_TESTBED_ETCD_PEER_PORT": free_port(),
        "K8S_TESTBED_APISERVER_PORT": free_port(),
        "K8S_TESTBED_CM_PORT": free_port(),
    }
    t0 = time.monotonic()
    start = subprocess.run(
        [str(TESTBED / "start.sh"), str(state)],
        env={**os.environ, **{k: str(v) for k, v in ports.items()}},
        capture_output=True,
        text=True,
        check=False,
    )
    start_seconds = time.monotonic() - t0
    if start.returncode != 0:
        subprocess.run([str(TESTBED / "stop.sh"), str(state)], check=False)
        pytest.fail(f"k8s test bed did not start:\n{start.stderr[-4000:]}")
    env = dict(line.split("=", 1) for line in (state / "env").read_text().splitlines() if "=" in line)
    say(request, f"[k8s-testbed] started in {start_seconds:.1f}s ({env['K8S_TESTBED_SERVER']})")
    record_timing(
        kind="k8s-testbed", build_s=round(build_seconds, 1), build_cached=cached, start_s=round(start_seconds, 1)
    )
    return K8sTestBed(state, Path(env["KUBECONFIG"]), env["K8S_TESTBED_SERVER"], build_seconds, start_seconds, env)


@pytest.fixture(scope="session")
def k8s_testbed(request):
    """A running kube-apiserver 1.20.2 (+ controller-manager, etcd); yields K8sTestBed."""
    owner = "k8s_testbed" not in _STARTED
    if owner:
        _STARTED["k8s_testbed"] = _start_testbed(request)
    bed = _STARTED["k8s_testbed"]
    yield bed
    if owner:
        subprocess.run([str(TESTBED / "stop.sh"), str(bed.state_dir)], check=False)
        shutil.rmtree(bed.state_dir, ignore_errors=True)
        del _STARTED["k8s_testbed"]


def _start_redis(request: pytest.FixtureRequest) -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is missing: `make setup` (tests/testbed/setup.sh) installs Debian's redis-server")
    port = free_port()
    password = secrets.token_hex(16)
    workdir = tempfile.mkdtemp(prefix="raibid-redis-")
    conf = Path(workdir) / "redis.conf"
    # The password goes in a 0600 file, not on the command line (visible in ps).
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\nsave ''\nappendonly no\ndir {workdir}\n"
        f"requirepass {password}\nmaxmemory-policy noeviction\n",
        encoding="utf-8",
    )
    conf.chmod(0o600)
    proc = subprocess.Popen([binary, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port, password=password, socket_connect_timeout=1)
    for _ in range(100):
        if proc.poll() is not None:
            pytest.fail(f"redis-server exited with {proc.returncode}")
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.1)
    else:
        proc.terminate()
        pytest.fail("redis-server did not answer PING within 10s")
    version = client.info("server")["redis_version"]
    say(request, f"[redis] redis-server {version} on 127.0.0.1:{port} (pid {proc.pid})")
    server = RedisServer("127.0.0.1", port, password, version, proc)
    server.workdir = workdir  # type: ignore[attr-defined]
    return server


@pytest.fixture(scope="session")
def redis_server(request):
    """A real redis-server on a free loopback port, with a password; stopped by PID at the end."""
    owner = "redis" not in _STARTED
    if owner:
        _STARTED["redis"] = _start_redis(request)
    server = _STARTED["redis"]
    yield server
    if owner:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
        shutil.rmtree(server.workdir, ignore_errors=True)  # type: ignore[attr-defined]
        del _STARTED["redis"]


def keda_crd_path(name: str) -> Path:
    """An upstream KEDA v2.20.2 CRD from shared/data (kept outside the repository, per its README);
    skips the calling test, saying so, where that folder is absent."""
    path = SHARED_CRDS / f"keda.sh_{name}.yaml"
    if not path.exists():
        pytest.skip(f"KEDA v2.20.2 CRDs not found at {SHARED_CRDS} (shared/data is absent here); not checked")
    return path
