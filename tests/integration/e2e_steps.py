#!/usr/bin/env python3
"""The steps of a CI job end to end in real Pods, without pytest: one implementation for two callers.

- tests/integration/test_e2e_ci_job.py: its fixtures are thin wrappers around the functions here
  (services, images, storage) and its cases drive `Cluster` (enqueue, one KEDA polling cycle, wait,
  read the outcome back).
- molecule/agent_jobs: create and destroy run this file's `up` and `down`, verify runs `run-job`.

What `up STATE` starts (the roles are not applied: that is converge's or the test's job):
the node test bed (k8s_testbed.py start_testbed, in STATE/k8s), a redis-server with a password and a
git server (the CRATES as bare repositories over git's dumb HTTP protocol), both on the node's bridge
address where Pods reach them, the end-to-end images (tests/testbed/images/e2e_images.py, cached per
machine) imported into the node's containerd and tagged by digest, and a hostPath PersistentVolume
for the role's cargo-cache claim. It writes STATE/e2e.json (0600: it holds the Redis password): the
services' addresses, the images and the role variables `agent_vars()` / `keda_vars()` give, which
Molecule's inventory reads. `down STATE` stops all of it by PID, also after a partial `up`.

`run-job STATE --id ID --crate CRATE` runs one job: enqueue with the raibid.dgx_spark.job_queue
module, one polling cycle of KEDA's ScaledJob controller (keda_scaledjob.py poll_once: the operator
cannot run here) that must create one Job, the Job to its end, then the checks: status Success, the
crate's proof in the log, the queue drained (no lag, nothing pending, no consumer), no container
left running. Prints a JSON summary; exits 1 with the reason otherwise.

Every wait is bounded and its error names what hung; a failed step raises E2EError (the test turns
it into a failure, the command line prints it).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import redis
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from k8s_testbed import (
    K8sTestBed,
    TestBedError,
    free_port,
    keda_vars,
    load_testbed,
    record_timing,
    start_redis,
    start_testbed,
    stop_pidfile,
    stop_testbed,
)
from keda_scaledjob import poll_once
from support import CommandTimeout, KedaCrdError, ansible_env, keda_crd, run_bounded, tail

ROOT = HERE.parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
E2E_IMAGES = ROOT / "tests" / "testbed" / "images" / "e2e_images.py"

NAMESPACE = "raibid-e2e"
SCALEDJOB = "raibid-agent"
STREAM = "raibid:jobs"
GROUP = "raibid-workers"
PV_NAME = "raibid-e2e-cargo-cache"
# Bounds measured on this machine (2 cores, contended): a tiny crate's fmt/clippy/build/test with a
# DinD sidecar takes 20-60 s; the bound leaves room, the measured figures go to the timings file.
JOB_BOUND_S = 240
SLOW_TEST_S = 20
# e2e_images.py's own bounds are longer (a cold agent build is ~25 min on 2 cores); `up` may pass less.
IMAGES_TIMEOUT_S = 9000
SERVICE_START_TIMEOUT_S = 10
ENQUEUE_TIMEOUT_S = 120
NO_CONTAINER_TIMEOUT_S = 30
API_TIMEOUT_S = 30

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
# A test whose name in a successful job's log proves what the job ran: for `docker`, that the crate
# reached the Docker daemon it was given (in DinD mode: this Pod's sidecar, over TLS).
CRATE_PROOF = {"docker": "docker_daemon_of_this_job_answers"}


class E2EError(RuntimeError):
    """An end-to-end step failed or hung; the message names the step (and what it saw)."""


def wait_for(what: str, probe, timeout: float, interval: float = 0.5):
    """probe() until it returns something truthy; raises E2EError naming `what` after `timeout` s.
    `what` may be a callable, evaluated only for the message (the state when it gave up)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise E2EError(f"timed out after {timeout:.0f}s waiting for {what() if callable(what) else what}")
        time.sleep(interval)


# --- processes started for the test, stopped by PID -----------------------------------------------


# --- services the Pods reach on the node's bridge address -----------------------------------------


def start_pod_redis(node_ip: str, workdir: Path) -> dict:
    """redis-server with a password on the node address (Pods reach it; nothing else listens there):
    k8s_testbed.start_redis in `workdir`, stopped by stop_pod_redis. Returns {host, port, password}."""
    try:
        server = start_redis(host=node_ip, workdir=workdir, report=lambda line: None)
    except TestBedError as exc:
        raise E2EError(f"redis-server for the Pods: {exc}") from None
    return {"host": server.host, "port": server.port, "password": server.password}


def stop_pod_redis(workdir: Path) -> str:
    return stop_pidfile(workdir / "redis.pid", "redis-server")


def make_git_repos(srv: Path) -> None:
    """Each of CRATES as a bare repository srv/test/<name>.git, ready for git's dumb HTTP protocol."""
    env = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"}
    git = functools.partial(subprocess.run, check=True, capture_output=True, env=env, timeout=60)
    for name, lib in CRATES.items():
        work = srv.parent / "work" / name
        (work / "src").mkdir(parents=True)
        (work / "Cargo.toml").write_text(CRATE_TOML)
        (work / "src" / "lib.rs").write_text(lib)
        git(["git", "init", "-q", "-b", "main", str(work)])
        git(["git", "-C", str(work), "add", "."])
        git(["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", name])
        bare = srv / "test" / f"{name}.git"
        git(["git", "clone", "-q", "--bare", str(work), str(bare)])
        git(["git", "-C", str(bare), "update-server-info"])


def start_git_server(node_ip: str, workdir: Path) -> str:
    """The crates as bare repositories served over git's dumb HTTP protocol on the node address by a
    detached `python -m http.server` (PID in workdir/git-http.pid, log in workdir/git-http.log), so it
    outlives the caller. Returns host:port."""
    workdir.mkdir(parents=True, exist_ok=True)
    srv = workdir / "srv"
    make_git_repos(srv)
    port = free_port(node_ip)
    with (workdir / "git-http.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", node_ip, "--directory", str(srv)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (workdir / "git-http.pid").write_text(f"{proc.pid}\n")
    url = f"http://{node_ip}:{port}/test/docker.git/info/refs"

    def serves():
        if proc.poll() is not None:
            raise E2EError(
                f"the git server (http.server on {node_ip}:{port}) exited with {proc.returncode}; its log ends:\n"
                f"{tail((workdir / 'git-http.log').read_text(errors='replace'))}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False

    try:
        wait_for(f"the git server to serve {url}", serves, SERVICE_START_TIMEOUT_S, 0.1)
    except E2EError:
        stop_git_server(workdir)
        raise
    return f"{node_ip}:{port}"


def stop_git_server(workdir: Path) -> str:
    return stop_pidfile(workdir / "git-http.pid", "http.server")


# --- images, storage -------------------------------------------------------------------------------


def image_digest(bed: K8sTestBed, name: str) -> str:
    """The manifest digest containerd stored for an imported image (what a Pod's image@digest names)."""
    out = subprocess.run(
        [*bed.ctr, "images", "ls", f"name=={name}"], capture_output=True, text=True, check=True, timeout=60
    )
    (row,) = out.stdout.splitlines()[1:]
    return next(col for col in row.split() if col.startswith("sha256:"))


def import_images(bed: K8sTestBed, timeout: float = IMAGES_TIMEOUT_S) -> dict:
    """The agent image, a broken variant and the DinD image, built (cached per machine) and imported.
    Returns {"agent"|"broken"|"dind": {reference, repository, digest}}."""
    t0 = time.monotonic()
    try:
        out = run_bounded([sys.executable, str(E2E_IMAGES)], timeout, f"{E2E_IMAGES} (the end-to-end images)")
    except CommandTimeout as exc:
        raise E2EError(str(exc)) from None
    if out.returncode != 0:
        raise E2EError(f"building the end-to-end images failed:\n{out.stderr[-4000:]}")
    built = json.loads(out.stdout)["images"]
    build_s = time.monotonic() - t0
    t0 = time.monotonic()
    refs = {}
    for key, name in (("agent", "agent"), ("broken", "agent-broken"), ("dind", "dind")):
        try:
            names = bed.import_image(Path(built[name]["tar"]))
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            raise E2EError(f"importing the {name} image into the node's containerd: {exc}") from None
        ref = next(n for n in names if n.endswith(built[name]["ref"].split("/", 1)[-1]))
        repository, digest = ref.rsplit(":", 1)[0], image_digest(bed, ref)
        # A pull records the image under its digest name too; an import only under its tag. The CRI
        # resolves repo@sha256:... by that name, so record it as a pull would.
        subprocess.run(
            [*bed.ctr, "images", "tag", "--force", ref, f"{repository}@{digest}"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        refs[key] = {"reference": ref, "repository": repository, "digest": digest}
    record_timing(kind="e2e-images", build_s=round(build_s, 1), import_s=round(time.monotonic() - t0, 1))
    return refs


def create_cargo_volume(kubeconfig: str | os.PathLike, path: Path) -> None:
    """A hostPath PersistentVolume at `path` for the role's cargo-cache claim (the test bed has no
    provisioner): registry/ and git/ owned by the agent's uid 1000."""
    path.mkdir(parents=True, exist_ok=True)
    for sub in ("registry", "git"):
        (path / sub).mkdir(exist_ok=True)
        shutil.chown(path / sub, 1000, 1000)
    path.chmod(0o755)
    core = k8s_client.CoreV1Api(k8s_config.new_client_from_config(config_file=str(kubeconfig)))
    try:
        core.create_persistent_volume(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": PV_NAME},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "",
                    "persistentVolumeReclaimPolicy": "Retain",
                    "hostPath": {"path": str(path), "type": "Directory"},
                },
            },
            _request_timeout=API_TIMEOUT_S,
        )
    except k8s_client.ApiException as exc:
        raise E2EError(f"creating PersistentVolume {PV_NAME} ({path}): {exc.status} {exc.reason} {exc.body}") from None


def delete_cargo_volume(kubeconfig: str | os.PathLike, path: Path) -> None:
    core = k8s_client.CoreV1Api(k8s_config.new_client_from_config(config_file=str(kubeconfig)))
    core.delete_persistent_volume(PV_NAME, _request_timeout=API_TIMEOUT_S)
    shutil.rmtree(path, ignore_errors=True)


# --- what the roles are given ----------------------------------------------------------------------


def agent_vars(kubeconfig: str, queue: dict, git_host: str, images: dict, image: str = "agent", **overrides) -> dict:
    """The agent_jobs role variables for this test bed: its services, the imported image `image`
    ("agent" or "broken"), small requests for two cores; `overrides` last."""
    return {
        "agent_jobs_kubeconfig": str(kubeconfig),
        "agent_jobs_namespace": NAMESPACE,
        "agent_jobs_name": SCALEDJOB,
        "agent_jobs_gitea_token": "e2e-token-not-checked-by-the-git-server",
        "agent_jobs_redis_password": queue["password"],
        "agent_jobs_redis_host": queue["host"],
        "agent_jobs_redis_port": queue["port"],
        "agent_jobs_queue_stream": STREAM,
        "agent_jobs_consumer_group": GROUP,
        "agent_jobs_gitea_host": git_host,
        "agent_jobs_image_repository": images[image]["repository"],
        "agent_jobs_image_digest": images[image]["digest"],
        "agent_jobs_dind_image": images["dind"]["reference"],
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


# --- the cluster: the queue, one KEDA polling cycle at a time, the outcome -------------------------


class Cluster:
    """The queue, one KEDA polling cycle at a time, and what the Jobs did, on a started test bed."""

    def __init__(self, kubeconfig: str | os.PathLike, ctr: list[str], queue: dict, git_host: str, images: dict):
        self.kubeconfig = str(kubeconfig)
        self.ctr_cmd = list(ctr)
        self.queue = queue
        self.conn = redis.Redis(
            host=queue["host"], port=queue["port"], password=queue["password"], socket_connect_timeout=5
        )
        self.git_host = git_host
        self.images = images
        self.api = k8s_config.new_client_from_config(config_file=self.kubeconfig)
        self.batch = k8s_client.BatchV1Api(self.api)
        self.core = k8s_client.CoreV1Api(self.api)
        self.timings: dict[str, float] = {}

    @classmethod
    def from_state(cls, state: dict) -> Cluster:
        """From what `up` wrote to STATE/e2e.json."""
        return cls(state["kubeconfig"], state["ctr"], state["redis"], state["git_host"], state["images"])

    def agent_vars(self, image: str = "agent", **overrides) -> dict:
        return agent_vars(self.kubeconfig, self.queue, self.git_host, self.images, image, **overrides)

    def enqueue(self, job_id: str, crate: str) -> None:
        module_args = {
            "host": self.queue["host"],
            "port": self.queue["port"],
            "password": self.queue["password"],
            "stream": STREAM,
            "group": GROUP,
            "job": {"id": job_id, "repo": f"test/{crate}"},
        }
        cmd = [str(VENV_BIN / "ansible"), "localhost", "-c", "local", "-m", "raibid.dgx_spark.job_queue",
               "-a", json.dumps(module_args), "-e", f"ansible_python_interpreter={VENV_BIN / 'python'}"]  # fmt: skip
        what = f"enqueueing {job_id} with raibid.dgx_spark.job_queue"
        try:
            proc = run_bounded(cmd, ENQUEUE_TIMEOUT_S, what, cwd=ROOT, env=ansible_env())
        except CommandTimeout as exc:
            raise E2EError(str(exc)) from None
        if proc.returncode != 0:
            # The module's arguments hold the Redis password; ansible prints results, not arguments.
            raise E2EError(f"{what} failed (rc {proc.returncode}):\n{tail(proc.stdout + proc.stderr)}")

    def poll(self, expect_jobs: int) -> list[str]:
        """One polling cycle; it must create `expect_jobs` Jobs. Returns their names."""
        result = poll_once(self.api, self.conn, NAMESPACE, SCALEDJOB)
        if len(result.created) != expect_jobs:
            raise E2EError(
                f"the KEDA polling cycle created {len(result.created)} Job(s), expected {expect_jobs}: {result}"
            )
        return result.created

    def job_done(self, name: str, bound: float = JOB_BOUND_S) -> tuple[str, float]:
        """Wait for Job `name` to finish: ("Complete" | "Failed", seconds waited)."""
        t0 = time.monotonic()

        def finished():
            job = self.batch.read_namespaced_job(name, NAMESPACE, _request_timeout=API_TIMEOUT_S)
            for cond in job.status.conditions or []:
                if cond.type in ("Complete", "Failed") and cond.status == "True":
                    return cond.type
            return None

        outcome = wait_for(
            lambda: f"Job {NAMESPACE}/{name} to finish (pods: {self.pod_phases(name)})", finished, bound, 1
        )
        return outcome, round(time.monotonic() - t0, 1)

    def pods(self, job: str):
        return self.core.list_namespaced_pod(
            NAMESPACE, label_selector=f"job-name={job}", _request_timeout=API_TIMEOUT_S
        ).items

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
        if group["lag"] != 0 or group["pending"] != 0:
            raise E2EError(f"the queue is not drained: group {GROUP} has lag {group['lag']}, pending "
                           f"{group['pending']} ({group})")  # fmt: skip
        if self.consumers():
            raise E2EError(f"every agent removes its consumer, yet group {GROUP} has {self.consumers()}")

    def assert_no_container_running(self) -> None:
        wait_for(
            lambda: f"no container running in the node's containerd (running: {self.running_containers()})",
            lambda: self.running_containers() == [] or None,
            NO_CONTAINER_TIMEOUT_S,
            1,
        )

    def ctr(self, *args: str) -> str:
        cmd = [*self.ctr_cmd, *args]
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

    def run_job(self, job_id: str, crate: str, bound: float = JOB_BOUND_S) -> dict:
        """One job end to end (enqueue, one polling cycle that creates its Job, the Job to its end) and
        the checks a successful job must pass. Returns the summary; raises E2EError with the reason."""
        if crate not in CRATES:
            raise E2EError(f"--crate {crate!r}: not one of the git server's crates {sorted(CRATES)}")
        if self.status(job_id) is not None:
            raise E2EError(f"job id {job_id!r} already has a status in Redis: give a new one")
        t0 = time.monotonic()
        self.enqueue(job_id, crate)
        (job,) = self.poll(expect_jobs=1)
        outcome, job_s = self.job_done(job, bound)
        status, logs = self.status(job_id) or {}, self.logs(job_id)
        summary = {
            "id": job_id,
            "crate": crate,
            "job": f"{NAMESPACE}/{job}",
            "outcome": outcome,
            "status": status.get("status"),
            "agent_id": status.get("agent_id"),
            "pods": [p.metadata.name for p in self.pods(job)],
            "job_s": job_s,
            "enqueue_to_done_s": round(time.monotonic() - t0, 1),
            "proof": {"test": CRATE_PROOF.get(crate), "in_log": CRATE_PROOF.get(crate, "") in logs},
        }
        if outcome != "Complete" or summary["status"] != "Success":
            raise E2EError(
                f"job {job_id} ({crate}): Job {summary['job']} {outcome}, status {status or 'none'}; its log ends:\n"
                f"{tail(logs)}"
            )
        if not summary["proof"]["in_log"]:
            raise E2EError(
                f"job {job_id} ({crate}) succeeded but its log never names {CRATE_PROOF[crate]}:\n{tail(logs)}"
            )
        self.assert_queue_drained()
        self.assert_no_container_running()
        group = self.group()
        summary["queue"] = {"lag": group["lag"], "pending": group["pending"], "consumers": self.consumers()}
        summary["containers_running"] = self.running_containers()
        return summary


# --- the command line: up / run-job / down ---------------------------------------------------------


def state_file(state: Path) -> Path:
    return state / "e2e.json"


def load_state(state: Path) -> dict:
    try:
        return json.loads(state_file(state).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise E2EError(f"nothing was started in {state} ({state_file(state)} is missing): run `up` first") from None


def up(state: Path, images_timeout: float = IMAGES_TIMEOUT_S) -> dict:
    """Start everything in `state` (see the module's docstring); writes and returns STATE/e2e.json's
    content. A failure stops what this call started (logs stay under STATE) and raises E2EError."""
    state.mkdir(parents=True, exist_ok=True)
    # Before the test bed starts: a missing KEDA CRD fails in seconds, saying how to provide it.
    try:
        crd = keda_crd("triggerauthentications")
    except KedaCrdError as exc:
        raise E2EError(str(exc)) from None
    if (state / "k8s" / "testbed.json").exists():
        raise E2EError(f"{state} already holds a started test bed: run `down {state}` first")
    try:
        bed = start_testbed(node=True, state=state / "k8s")
    except TestBedError as exc:
        raise E2EError(f"starting the node test bed: {exc}") from None
    try:
        assert bed.node_ip is not None
        queue = start_pod_redis(bed.node_ip, state / "redis")
        git_host = start_git_server(bed.node_ip, state / "git")
        images = import_images(bed, images_timeout)
        create_cargo_volume(bed.kubeconfig, state / "cargo-cache")
        data = {
            "kubeconfig": str(bed.kubeconfig),
            "node_ip": bed.node_ip,
            "ctr": bed.ctr,
            "redis": queue,
            "git_host": git_host,
            "images": images,
            "cargo_cache": str(state / "cargo-cache"),
            "agent_vars": agent_vars(str(bed.kubeconfig), queue, git_host, images),
            "keda_vars": keda_vars(str(bed.kubeconfig), crd),
        }
        path = state_file(state)
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except BaseException:
        down(state, remove=False)
        raise
    return data


def down(state: Path, remove: bool = True) -> list[str]:
    """Stop what `up` started in `state`, by PID, in reverse order; safe when nothing or only part was
    started. Removes STATE unless `remove` is false (the logs stay then). Returns what it did."""
    done = []
    bed_dir = state / "k8s"
    if (state / "cargo-cache").exists():
        try:
            delete_cargo_volume(load_testbed(bed_dir).kubeconfig, state / "cargo-cache")
            done.append(f"deleted PersistentVolume {PV_NAME}")
        except Exception as exc:  # the API server may be gone already: stop.sh removes its data anyway
            done.append(f"PersistentVolume {PV_NAME} not deleted ({type(exc).__name__}: {str(exc)[:200]})")
            shutil.rmtree(state / "cargo-cache", ignore_errors=True)
    if (state / "git").exists():
        done.append(stop_git_server(state / "git"))
    if (state / "redis").exists():
        done.append(stop_pod_redis(state / "redis"))
    if bed_dir.exists():
        seconds = stop_testbed(bed_dir, remove=remove)
        done.append(f"stopped the node test bed {bed_dir} in {seconds:.1f}s")
    if remove and state.exists():
        shutil.rmtree(state, ignore_errors=True)
    return done


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="e2e_steps.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p_up = sub.add_parser("up", help="start the node test bed, Redis, the git server, the images, the PV")
    p_up.add_argument("state", type=Path)
    p_up.add_argument("--images-timeout", type=float, default=IMAGES_TIMEOUT_S, help="bound of the image build (s)")
    p_run = sub.add_parser("run-job", help="run one CI job to its end and check it succeeded")
    p_run.add_argument("state", type=Path)
    p_run.add_argument("--id", required=True, help="a job id not used before on this test bed")
    p_run.add_argument("--crate", default="docker", choices=sorted(CRATES))
    p_run.add_argument("--bound", type=float, default=JOB_BOUND_S, help="how long the Job may take (s)")
    p_down = sub.add_parser("down", help="stop everything `up` started (by PID) and remove STATE")
    p_down.add_argument("state", type=Path)
    args = parser.parse_args(argv)
    state = args.state.resolve()
    try:
        if args.action == "up":
            data = up(state, args.images_timeout)
            shown = {k: v for k, v in data.items() if k not in ("redis", "agent_vars")}
            print(json.dumps({**shown, "redis": f"{data['redis']['host']}:{data['redis']['port']}"}, indent=2))
        elif args.action == "run-job":
            summary = Cluster.from_state(load_state(state)).run_job(args.id, args.crate, args.bound)
            print(json.dumps(summary))
        else:
            for line in down(state):
                print(f"[e2e] {line}", file=sys.stderr)
    except (E2EError, TestBedError, redis.RedisError, k8s_client.ApiException, subprocess.SubprocessError) as exc:
        name = "" if isinstance(exc, (E2EError, TestBedError)) else f"{type(exc).__name__}: "
        print(f"e2e_steps.py {args.action} {state}: {name}{exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
