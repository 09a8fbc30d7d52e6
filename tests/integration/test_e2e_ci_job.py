"""A CI job end to end in real Pods: the roles apply KEDA and the agent jobs, job_queue enqueues, the
Job is created from the ScaledJob as KEDA v2.20.2 does (keda_scaledjob.py; the operator cannot run
here), and the agent image runs the job in a Pod on the test bed's kubelet with a DinD sidecar.

Parts (all real, started by the fixtures): the node test bed (kube-apiserver, controller-manager,
scheduler, kubelet, a separate containerd, a CNI bridge; tests/testbed/k8s), a redis-server and a
git server (dumb HTTP) that Pods reach on the node's bridge address, the agent image and a DinD
image built from Debian's packages (tests/testbed/images), imported into the node's containerd.

Cases (any order: each applies the agent_jobs mode it needs and leaves the queue drained):
1. DinD (legacy sidecar: the test bed is Kubernetes 1.20): two jobs at once -- one whose tests
   reach the Pod's own DinD daemon over TLS and pass, one whose tests fail.
2. A Pod killed mid-job: its entry stays pending; the next Job reclaims it and the killed agent's
   consumer is removed.
3. A broken image (health fails): the Job fails, nothing is taken from the queue.
4. `none` mode: the entry the broken image left is run (nothing was lost).
5. `socket` mode: a job reaches the node's Docker through the socket.
After each: status key, ack, lag 0, no consumer left, the Job's outcome, no container running.
"""

from __future__ import annotations

import functools
import http.server
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import redis
from conftest import ROOT, VENV_BIN, ansible_env, role_play, run_playbook
from k8s_testbed import REDUCED_SCALEDJOB_CRD, record_timing
from keda_scaledjob import poll_once
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

# Resolved before the test bed starts: a missing KEDA CRD fails the module without starting one.
pytestmark = pytest.mark.usefixtures("keda_crds")
NAMESPACE = "raibid-e2e"
SCALEDJOB = "raibid-agent"
STREAM = "raibid:jobs"
GROUP = "raibid-workers"
# Bounds measured on this machine (2 cores, contended): a tiny crate's fmt/clippy/build/test with a
# DinD sidecar takes 20-60 s; the bound leaves room, the measured figures go to the timings file.
JOB_BOUND_S = 240
SLOW_TEST_S = 20

CRATE_TOML = '[package]\nname = "tiny"\nversion = "0.1.0"\nedition = "2021"\n'
# rustfmt-clean and clippy-clean (the agent runs fmt --check and clippy -D warnings).
CRATE_DOCKER = """//! A tiny crate for the end-to-end CI job test.
use std::process::Command;

pub fn answer() -> u32 {
    42
}

/// `docker <args>` on the daemon the job was given; panics with its stderr when it fails.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn answer_is_42() {
        assert_eq!(super::answer(), 42);
    }

    #[test]
    fn docker_daemon_of_this_job_answers() {
        let host = std::env::var("DOCKER_HOST").expect("DOCKER_HOST is set for this job");
        let version = super::docker(&["version", "--format", "{{.Server.Version}}"]);
        assert!(!version.is_empty());
        if host.starts_with("tcp://") {
            // DinD: TLS verified, and the daemon is the sidecar in this Pod (same hostname).
            assert_eq!(std::env::var("DOCKER_TLS_VERIFY").as_deref(), Ok("1"));
            let name = super::docker(&["info", "--format", "{{.Name}}"]);
            let pod = std::fs::read_to_string("/etc/hostname").unwrap();
            assert_eq!(name, pod.trim());
        }
    }
}
"""
CRATE_PLAIN = """pub fn answer() -> u32 {
    @ANSWER@
}

#[cfg(test)]
mod tests {
    #[test]
    fn answer_is_42() {
        assert_eq!(super::answer(), 42);
    }

    #[test]
    fn no_docker_for_this_job() {
        assert!(std::env::var("DOCKER_HOST").is_err());
        assert!(!std::path::Path::new("/var/run/docker.sock").exists());
    }
}
"""
CRATE_SLOW = """pub fn answer() -> u32 {
    42
}

#[cfg(test)]
mod tests {
    #[test]
    fn slow() {
        std::thread::sleep(std::time::Duration::from_secs(@SLOW@));
        assert_eq!(super::answer(), 42);
    }
}
"""
CRATES = {
    "docker": CRATE_DOCKER,
    "nodocker": CRATE_PLAIN.replace("@ANSWER@", "42"),
    "failing": CRATE_PLAIN.replace("@ANSWER@", "41"),
    "slow": CRATE_SLOW.replace("@SLOW@", str(SLOW_TEST_S)),
}


def wait_for(what: str, probe, timeout: float, interval: float = 0.5):
    """probe() until it returns something truthy; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --- services the Pods reach on the node's bridge address -----------------------------------------


@pytest.fixture(scope="module")
def pod_redis(k8s_node_testbed):
    """redis-server with a password on the node address (Pods reach it; nothing else listens there)."""
    workdir = Path(tempfile.mkdtemp(prefix="raibid-e2e-redis-"))
    password = secrets.token_hex(16)
    sock = __import__("socket").socket()
    sock.bind((k8s_node_testbed.node_ip, 0))
    port = sock.getsockname()[1]
    sock.close()
    conf = workdir / "redis.conf"
    conf.write_text(
        f"port {port}\nbind {k8s_node_testbed.node_ip}\nsave ''\nappendonly no\ndir {workdir}\n"
        f"requirepass {password}\nprotected-mode no\n",
        encoding="utf-8",
    )
    conf.chmod(0o600)
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", str(conf)], stdout=subprocess.DEVNULL)
    conn = redis.Redis(host=k8s_node_testbed.node_ip, port=port, password=password, socket_connect_timeout=1)

    def answers():
        if proc.poll() is not None:
            pytest.fail(f"redis-server exited with {proc.returncode}")
        try:
            return conn.ping()
        except redis.ConnectionError:
            return False

    wait_for("redis-server on the node address", answers, 10, 0.1)
    yield {"host": k8s_node_testbed.node_ip, "port": port, "password": password, "conn": conn}
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def git_server(k8s_node_testbed):
    """The crates as bare repositories, served over git's dumb HTTP protocol on the node address."""
    root = Path(tempfile.mkdtemp(prefix="raibid-e2e-git-"))
    env = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"}
    for name, lib in CRATES.items():
        work = root / "work" / name
        (work / "src").mkdir(parents=True)
        (work / "Cargo.toml").write_text(CRATE_TOML)
        (work / "src" / "lib.rs").write_text(lib)
        git = functools.partial(subprocess.run, check=True, capture_output=True, env=env)
        git(["git", "init", "-q", "-b", "main", str(work)])
        git(["git", "-C", str(work), "add", "."])
        git(["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", name])
        bare = root / "srv" / "test" / f"{name}.git"
        git(["git", "clone", "-q", "--bare", str(work), str(bare)])
        git(["git", "-C", str(bare), "update-server-info"])
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root / "srv"))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer((k8s_node_testbed.node_ip, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"{k8s_node_testbed.node_ip}:{server.server_address[1]}"
    server.shutdown()
    shutil.rmtree(root, ignore_errors=True)


# --- images, storage, roles ------------------------------------------------------------------------


def image_digest(bed, name: str) -> str:
    """The manifest digest containerd stored for an imported image (what a Pod's image@digest names)."""
    out = subprocess.run([*bed.ctr, "images", "ls", f"name=={name}"], capture_output=True, text=True, check=True)
    (row,) = out.stdout.splitlines()[1:]
    return next(col for col in row.split() if col.startswith("sha256:"))


@pytest.fixture(scope="module")
def images(k8s_node_testbed):
    """The agent image, a broken variant and the DinD image, built (cached) and imported."""
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "testbed" / "images" / "e2e_images.py")],
        capture_output=True,
        text=True,
        check=False,
        timeout=9000,
    )
    if out.returncode != 0:
        pytest.fail(f"building the end-to-end images failed:\n{out.stderr[-4000:]}")
    built = json.loads(out.stdout)["images"]
    build_s = time.monotonic() - t0
    t0 = time.monotonic()
    refs = {}
    for key, name in (("agent", "agent"), ("broken", "agent-broken"), ("dind", "dind")):
        names = k8s_node_testbed.import_image(Path(built[name]["tar"]))
        ref = next(n for n in names if n.endswith(built[name]["ref"].split("/", 1)[-1]))
        repository, digest = ref.rsplit(":", 1)[0], image_digest(k8s_node_testbed, ref)
        # A pull records the image under its digest name too; an import only under its tag. The CRI
        # resolves repo@sha256:... by that name, so record it as a pull would.
        subprocess.run([*k8s_node_testbed.ctr, "images", "tag", "--force", ref, f"{repository}@{digest}"], check=True)
        refs[key] = {"reference": ref, "repository": repository, "digest": digest}
    record_timing(kind="e2e-images", build_s=round(build_s, 1), import_s=round(time.monotonic() - t0, 1))
    return refs


@pytest.fixture(scope="module")
def cargo_cache_volume(k8s_node_testbed):
    """A PersistentVolume for the role's cargo-cache claim (the test bed has no provisioner)."""
    path = Path(tempfile.mkdtemp(prefix="raibid-e2e-cargo-"))
    for sub in ("registry", "git"):
        (path / sub).mkdir()
        shutil.chown(path / sub, 1000, 1000)
    path.chmod(0o755)
    core = k8s_client.CoreV1Api(k8s_config.new_client_from_config(config_file=str(k8s_node_testbed.kubeconfig)))
    core.create_persistent_volume(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": "raibid-e2e-cargo-cache"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": str(path), "type": "Directory"},
            },
        }
    )
    yield path
    core.delete_persistent_volume("raibid-e2e-cargo-cache")
    shutil.rmtree(path, ignore_errors=True)


class Cluster:
    """The roles as site.yml applies them, the queue, and one KEDA polling cycle at a time."""

    def __init__(self, bed, tmp: Path, queue: dict, git_host: str, images: dict):
        self.bed = bed
        self.tmp = tmp
        self.queue = queue
        self.conn: redis.Redis = queue["conn"]
        self.git_host = git_host
        self.images = images
        self.api = k8s_config.new_client_from_config(config_file=str(bed.kubeconfig))
        self.batch = k8s_client.BatchV1Api(self.api)
        self.core = k8s_client.CoreV1Api(self.api)
        self.timings: dict[str, float] = {}

    def apply(self, role: str, extra: dict) -> None:
        t0 = time.monotonic()
        run = run_playbook(role_play(self.tmp, role), extra, False)
        self.timings[f"apply-{role}-{extra.get('agent_jobs_docker_access', '')}"] = round(time.monotonic() - t0, 1)
        assert run.rc == 0, run.out[-6000:]

    def agent_vars(self, image: str = "agent", **overrides) -> dict:
        repo, digest = self.images[image]["repository"], self.images[image]["digest"]
        return {
            "agent_jobs_kubeconfig": str(self.bed.kubeconfig),
            "agent_jobs_namespace": NAMESPACE,
            "agent_jobs_name": SCALEDJOB,
            "agent_jobs_gitea_token": "e2e-token-not-checked-by-the-git-server",
            "agent_jobs_redis_password": self.queue["password"],
            "agent_jobs_redis_host": self.queue["host"],
            "agent_jobs_redis_port": self.queue["port"],
            "agent_jobs_queue_stream": STREAM,
            "agent_jobs_consumer_group": GROUP,
            "agent_jobs_gitea_host": self.git_host,
            "agent_jobs_image_repository": repo,
            "agent_jobs_image_digest": digest,
            "agent_jobs_dind_image": self.images["dind"]["reference"],
            "agent_jobs_cargo_cache_size": "1Gi",
            # Two cores on the test machine: requests that fit two Jobs at once.
            "agent_jobs_resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "4Gi"}},
            "agent_jobs_dind_resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "2Gi"}},
            "agent_jobs_dind_storage_size": "2Gi",
            "agent_jobs_workspace_size": "2Gi",
            # Entries of a killed agent are reclaimed after 3 s (default 10 min).
            "agent_jobs_extra_env": {"RECLAIM_IDLE_MS": "3000", "BLOCK_MS": "2000"},
            **overrides,
        }

    def enqueue(self, job_id: str, crate: str) -> None:
        module_args = {
            "host": self.queue["host"],
            "port": self.queue["port"],
            "password": self.queue["password"],
            "stream": STREAM,
            "group": GROUP,
            "job": {"id": job_id, "repo": f"test/{crate}"},
        }
        proc = subprocess.run(
            [str(VENV_BIN / "ansible"), "localhost", "-c", "local", "-m", "raibid.dgx_spark.job_queue",
             "-a", json.dumps(module_args), "-e", f"ansible_python_interpreter={VENV_BIN / 'python'}"],
            cwd=ROOT, env=ansible_env(), capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def poll(self, expect_jobs: int) -> list[str]:
        result = poll_once(self.api, self.conn, NAMESPACE, SCALEDJOB)
        assert len(result.created) == expect_jobs, result
        return result.created

    def job_done(self, name: str, bound: float = JOB_BOUND_S) -> tuple[str, float]:
        t0 = time.monotonic()

        def finished():
            job = self.batch.read_namespaced_job(name, NAMESPACE)
            for cond in job.status.conditions or []:
                if cond.type in ("Complete", "Failed") and cond.status == "True":
                    return cond.type
            return None

        outcome = wait_for(f"Job {NAMESPACE}/{name} to finish (pods: {self.pod_phases(name)})", finished, bound, 1)
        return outcome, round(time.monotonic() - t0, 1)

    def pods(self, job: str):
        return self.core.list_namespaced_pod(NAMESPACE, label_selector=f"job-name={job}").items

    def pod_phases(self, job: str) -> list[str]:
        try:
            return [f"{p.metadata.name}={p.status.phase}" for p in self.pods(job)]
        except Exception as exc:  # only for the timeout message
            return [str(exc)]

    def status(self, job_id: str) -> dict | None:
        raw = self.conn.get(f"raibid:job:{job_id}:status")
        return json.loads(raw) if raw else None

    def logs(self, job_id: str) -> str:
        return "\n".join(f[b"line"].decode() for _, f in self.conn.xrange(f"raibid:logs:{job_id}"))

    def group(self) -> dict:
        (info,) = [g for g in self.conn.xinfo_groups(STREAM) if g["name"] in (GROUP, GROUP.encode())]
        return info

    def consumers(self) -> list[str]:
        return [c["name"].decode() if isinstance(c["name"], bytes) else c["name"]
                for c in self.conn.xinfo_consumers(STREAM, GROUP)]  # fmt: skip

    def assert_queue_drained(self) -> None:
        group = self.group()
        assert group["lag"] == 0, group
        assert group["pending"] == 0, group
        assert self.consumers() == [], "every agent removed its consumer"

    def assert_no_container_running(self) -> None:
        def none_running():
            return self.running_containers() == [] or None

        wait_for(f"no container running in the node's containerd (running: {self.running_containers()})",
                 none_running, 30, 1)  # fmt: skip

    def ctr(self, *args: str) -> str:
        cmd = [*self.bed.ctr, *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout

    def containers(self) -> dict[str, dict]:
        """containerd containers of the node: id -> the CRI labels (pod, container name)."""
        out = {}
        for cid in self.ctr("containers", "ls", "-q").split():
            info = json.loads(self.ctr("containers", "info", cid))
            out[cid] = info.get("Labels") or {}
        return out

    def running_containers(self) -> list[str]:
        running = {line.split()[0] for line in self.ctr("tasks", "ls").splitlines()[1:] if "RUNNING" in line}
        return sorted(
            f"{labels.get('io.kubernetes.pod.name')}/{labels.get('io.kubernetes.container.name', 'sandbox')}"
            for cid, labels in self.containers().items()
            if cid in running
        )

    def kill_container(self, pod: str, container: str) -> None:
        """SIGKILL one container of a Pod, as the OOM killer or a node failure would."""
        (cid,) = [
            cid
            for cid, labels in self.containers().items()
            if labels.get("io.kubernetes.pod.name") == pod and labels.get("io.kubernetes.container.name") == container
        ]
        self.ctr("tasks", "kill", "--signal", "SIGKILL", cid)


@pytest.fixture(scope="module")
def cluster(k8s_node_testbed, tmp_path_factory, keda_crds, pod_redis, git_server, images, cargo_cache_volume):  # noqa: PLR0917
    c = Cluster(k8s_node_testbed, tmp_path_factory.mktemp("e2e"), pod_redis, git_server, images)
    c.apply(
        "keda",
        {
            "keda_kubeconfig": str(k8s_node_testbed.kubeconfig),
            "keda_wait_for_operator": False,
            "keda_manifest_sources": [str(keda_crds["triggerauthentications"]), str(REDUCED_SCALEDJOB_CRD)],
        },
    )
    yield c
    record_timing(kind="e2e", **c.timings)


# --- the cases -------------------------------------------------------------------------------------


def test_dind_jobs_pass_and_fail(cluster):
    t0 = time.monotonic()
    cluster.apply("agent_jobs", cluster.agent_vars())
    cluster.enqueue("e2e-dind-ok", "docker")
    cluster.enqueue("e2e-dind-fails", "failing")
    t_enqueued = time.monotonic()
    created = cluster.poll(expect_jobs=2)
    outcomes = {}
    for name in created:
        outcomes[name] = cluster.job_done(name)
    cluster.timings["dind-enqueue-to-both-done_s"] = round(time.monotonic() - t_enqueued, 1)

    ok, failed = cluster.status("e2e-dind-ok"), cluster.status("e2e-dind-fails")
    assert ok and ok["status"] == "Success", (ok, cluster.logs("e2e-dind-ok")[-3000:])
    assert failed and failed["status"] == "Failed", failed
    # Which Job ran which entry: the status names the agent (the Pod, through the downward API).
    by_agent = {p.metadata.name: job for job in created for p in cluster.pods(job)}
    assert ok["agent_id"] in by_agent and failed["agent_id"] in by_agent, (ok, failed, by_agent)
    assert outcomes[by_agent[ok["agent_id"]]][0] == "Complete"
    assert outcomes[by_agent[failed["agent_id"]]][0] == "Failed"
    # The crate's test reached this Pod's DinD daemon over TLS (it asserts the daemon's name is the Pod's).
    assert "docker_daemon_of_this_job_answers" in cluster.logs("e2e-dind-ok")
    cluster.assert_queue_drained()
    cluster.assert_no_container_running()
    cluster.timings["dind-job_s"] = outcomes[by_agent[ok["agent_id"]]][1]
    cluster.timings["dind-case_s"] = round(time.monotonic() - t0, 1)


def test_killed_pod_entry_is_reclaimed_by_the_next_job(cluster):
    # DinD, whichever case ran before: the job after the kill uses Docker.
    cluster.apply("agent_jobs", cluster.agent_vars())
    cluster.enqueue("e2e-slow", "slow")
    (first,) = cluster.poll(expect_jobs=1)
    running = wait_for(
        "the agent to start the slow job",
        lambda: (cluster.status("e2e-slow") or {}).get("status") == "Running" and cluster.status("e2e-slow"),
        JOB_BOUND_S,
        1,
    )
    killed_agent = running["agent_id"]
    cluster.kill_container(pod=killed_agent, container="agent")
    assert cluster.job_done(first)[0] == "Failed"
    group = cluster.group()
    assert group["pending"] == 1 and group["lag"] == 0, group
    assert killed_agent in cluster.consumers()

    # Lag mode counts only undelivered entries: the next enqueue starts the next Job, which
    # reclaims the abandoned entry first (RECLAIM_IDLE_MS), then another Job takes the new one.
    time.sleep(3)
    cluster.enqueue("e2e-after-kill", "docker")
    (second,) = cluster.poll(expect_jobs=1)
    assert cluster.job_done(second)[0] == "Complete"
    slow = cluster.status("e2e-slow")
    assert slow["status"] == "Success" and slow["agent_id"] != killed_agent, slow
    assert killed_agent not in cluster.consumers(), "the killed agent's consumer was removed"
    (third,) = cluster.poll(expect_jobs=1)
    assert cluster.job_done(third)[0] == "Complete"
    assert cluster.status("e2e-after-kill")["status"] == "Success"
    cluster.assert_queue_drained()
    cluster.assert_no_container_running()


def test_broken_image_takes_nothing_then_none_mode_runs_the_entry(cluster):
    cluster.apply("agent_jobs", cluster.agent_vars(image="broken"))
    cluster.enqueue("e2e-held", "nodocker")
    (broken,) = cluster.poll(expect_jobs=1)
    assert cluster.job_done(broken)[0] == "Failed"
    (pod,) = cluster.pods(broken)
    agent_state = next(s for s in pod.status.container_statuses if s.name == "agent").state
    assert agent_state.terminated and agent_state.terminated.exit_code == 3, agent_state
    group = cluster.group()
    assert group["lag"] == 1 and group["pending"] == 0, ("the entry is still queued", group)
    assert cluster.status("e2e-held") is None

    cluster.apply("agent_jobs", cluster.agent_vars(agent_jobs_docker_access="none"))
    (job,) = cluster.poll(expect_jobs=1)
    assert cluster.job_done(job)[0] == "Complete"
    assert cluster.status("e2e-held")["status"] == "Success", cluster.logs("e2e-held")[-3000:]
    cluster.assert_queue_drained()
    cluster.assert_no_container_running()


def test_socket_mode_runs_a_job_on_the_node_docker(cluster):
    cluster.apply(
        "agent_jobs",
        cluster.agent_vars(agent_jobs_docker_access="socket", agent_jobs_allow_docker_socket=True),
    )
    cluster.enqueue("e2e-socket", "docker")
    (job,) = cluster.poll(expect_jobs=1)
    assert cluster.job_done(job)[0] == "Complete"
    assert cluster.status("e2e-socket")["status"] == "Success", cluster.logs("e2e-socket")[-3000:]
    cluster.assert_queue_drained()
    cluster.assert_no_container_running()
