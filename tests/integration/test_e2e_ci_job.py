"""A CI job end to end in real Pods: the roles apply KEDA and the agent jobs, job_queue enqueues, the
Job is created from the ScaledJob as KEDA v2.20.2 does (keda_scaledjob.py; the operator cannot run
here), and the agent image runs the job in a Pod on the test bed's kubelet with a DinD sidecar.

Parts (all real, started by the fixtures): the node test bed (kube-apiserver, controller-manager,
scheduler, kubelet, a separate containerd, a CNI bridge; tests/testbed/k8s), a redis-server and a
git server (dumb HTTP) that Pods reach on the node's bridge address, the agent image and a DinD
image built from Debian's packages (tests/testbed/images), imported into the node's containerd.
The steps are tests/integration/e2e_steps.py's, which molecule/agent_jobs runs too (its verify runs
one DinD job with `e2e_steps.py run-job`); the fixtures here start and stop them for this module.

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

import contextlib
import time

import e2e_steps
import pytest
from conftest import role_play, run_playbook
from e2e_steps import CRATE_PROOF, JOB_BOUND_S, Cluster, E2EError, wait_for
from k8s_testbed import record_timing

# The steps (services, images, storage, the queue, one KEDA polling cycle, the Job's outcome) live in
# e2e_steps.py, shared with molecule/agent_jobs; the fixtures here only start and stop them.
# Resolved before the test bed starts: a missing KEDA CRD fails the module without starting one.
pytestmark = pytest.mark.usefixtures("keda_crds")


@contextlib.contextmanager
def step(what: str):
    """A failed set-up step fails the test with its message (no traceback into e2e_steps)."""
    try:
        yield
    except E2EError as exc:
        pytest.fail(f"{what}: {exc}", pytrace=False)


# --- services the Pods reach on the node's bridge address -----------------------------------------


@pytest.fixture(scope="module")
def pod_redis(k8s_node_testbed, tmp_path_factory):
    """redis-server with a password on the node address (Pods reach it; nothing else listens there)."""
    workdir = tmp_path_factory.mktemp("e2e-redis")
    with step("redis-server for the Pods"):
        server = e2e_steps.start_pod_redis(k8s_node_testbed.node_ip, workdir)
    yield server
    e2e_steps.stop_pod_redis(workdir)


@pytest.fixture(scope="module")
def git_server(k8s_node_testbed, tmp_path_factory):
    """The crates as bare repositories, served over git's dumb HTTP protocol on the node address."""
    workdir = tmp_path_factory.mktemp("e2e-git")
    with step("the git server for the Pods"):
        host = e2e_steps.start_git_server(k8s_node_testbed.node_ip, workdir)
    yield host
    e2e_steps.stop_git_server(workdir)


# --- images, storage, roles ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images(k8s_node_testbed):
    """The agent image, a broken variant and the DinD image, built (cached) and imported."""
    with step("the end-to-end images"):
        return e2e_steps.import_images(k8s_node_testbed)


@pytest.fixture(scope="module")
def cargo_cache_volume(k8s_node_testbed, tmp_path_factory):
    """A PersistentVolume for the role's cargo-cache claim (the test bed has no provisioner)."""
    path = tmp_path_factory.mktemp("e2e-cargo")
    with step("the cargo-cache PersistentVolume"):
        e2e_steps.create_cargo_volume(k8s_node_testbed.kubeconfig, path)
    yield path
    e2e_steps.delete_cargo_volume(k8s_node_testbed.kubeconfig, path)


class AppliedCluster(Cluster):
    """e2e_steps.Cluster, plus the roles applied as site.yml applies them (through conftest's
    bounded ansible-playbook runner)."""

    def __init__(self, bed, tmp, queue: dict, git_host: str, images: dict):
        super().__init__(bed.kubeconfig, bed.ctr, queue, git_host, images)
        self.tmp = tmp
        self.applied: dict[str, dict] = {}  # role -> the settings of its last successful apply

    def apply(self, role: str, extra: dict) -> None:
        """Apply `role` with `extra`, unless its last apply in this module had the same settings: the
        cluster holds them already (no case changes the applied objects), and a re-run is the
        idempotence check Molecule makes (molecule/agent_jobs), ~30 s of CPU here."""
        if self.applied.get(role) == extra:
            return
        self.applied.pop(role, None)
        t0 = time.monotonic()
        run = run_playbook(role_play(self.tmp, role), extra, False)
        self.timings[f"apply-{role}-{extra.get('agent_jobs_docker_access', '')}"] = round(time.monotonic() - t0, 1)
        assert run.rc == 0, run.output[-6000:]
        self.applied[role] = extra


@pytest.fixture(scope="module")
def cluster(k8s_node_testbed, tmp_path_factory, keda_crds, pod_redis, git_server, images, cargo_cache_volume):  # noqa: PLR0917
    c = AppliedCluster(k8s_node_testbed, tmp_path_factory.mktemp("e2e"), pod_redis, git_server, images)
    c.apply("keda", e2e_steps.keda_vars(str(k8s_node_testbed.kubeconfig), keda_crds["triggerauthentications"]))
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
    assert CRATE_PROOF["docker"] in cluster.logs("e2e-dind-ok")
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
