#!/usr/bin/env python3
"""Benchmarks: print figures, assert nothing.

Sections (run all, or pick with --only NAME ...):
  images    test-node images: presence and the last measured cold build time of each
            (--rebuild NAME rebuilds one image from scratch now and times it)
  molecule  the last recorded run of each Molecule scenario (tests/molecule_scenario.py)
  lab       site.yml on the lab-in-a-box node: cold converge on a fresh node, then a no-op
            re-run, with wall time and executed task counts (ok/changed/skipped)
  release   wall time of each release check (tests/release/check.py), tarball size
  k8s       Kubernetes test bed build/start, keda and agent_jobs apply / no-op re-apply (last test run)
  registry_buildkit  registry pull-through first vs cached pull (upstream stopped); BuildKit cold build vs
            rebuild from the registry cache after a prune (last registry_cache / buildkit scenario runs)

Other roles add sections by appending (name, function) to SECTIONS.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
CACHE = ROOT / ".cache"
sys.path.insert(0, str(ROOT / "tests"))
from support import play_recap  # tests/support.py


def env() -> dict:
    e = dict(os.environ)
    e.update(
        PATH=f"{VENV_BIN}:{e.get('PATH', '')}",
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_FORCE_COLOR="false",
        ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.default",
    )
    return e


def row(label: str, value: str) -> None:
    print(f"  {label:<52} {value}")


def timed(cmd: List[str]) -> Tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, check=False)
    return time.monotonic() - started, proc


def recap(text: str) -> str:
    hosts = play_recap(text)
    if not hosts:
        return "no recap"
    ok, changed, skipped, failed = (
        sum(c.get(k, 0) for c in hosts.values()) for k in ("ok", "changed", "skipped", "failed")
    )
    return f"tasks ok={ok} changed={changed} skipped={skipped} failed={failed}"


def latest_jsonl(path: Path, key: str) -> dict:
    latest: dict = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            latest[rec[key]] = rec
    return latest


def section_images(args: argparse.Namespace) -> None:
    if args.rebuild:
        seconds, proc = timed([str(VENV_BIN / "python"), "molecule/images/build.py", "--force", args.rebuild])
        row(f"cold build of {args.rebuild} (now)", f"{seconds:.0f} s" + ("" if proc.returncode == 0 else " FAILED"))
    listing = subprocess.run(
        [str(VENV_BIN / "python"), "molecule/images/build.py", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    timings = latest_jsonl(CACHE / "node-image-timings.jsonl", "image")
    for line in listing.splitlines():
        name, ref, state = line.split("\t")
        size = ""
        if state == "present":
            out = subprocess.run(
                ["docker", "image", "inspect", "-f", "{{.Size}}", ref], capture_output=True, text=True, check=False
            ).stdout.strip()
            size = f", {int(out) / 1e6:.0f} MB" if out.isdigit() else ""
        took = timings.get(name, {}).get("seconds")
        row(f"node image {name}", f"{state}{size}, last cold build {took:.0f} s" if took else f"{state}{size}")


def section_molecule(_args: argparse.Namespace) -> None:
    runs = latest_jsonl(CACHE / "molecule-timings.jsonl", "scenario")
    if not runs:
        row("molecule", "no recorded run (make molecule)")
    for name, rec in sorted(runs.items()):
        state = "pass" if rec.get("ok") else f"FAIL ({rec.get('failed_step')})"
        row(
            f"molecule {name}",
            f"{state}: test {rec.get('test_s', '-')} s, check-mode {rec.get('check_s', '-')} s, "
            f"total {rec.get('total_s', '-')} s",
        )


def section_lab(_args: argparse.Namespace) -> None:
    ansible_playbook = str(VENV_BIN / "ansible-playbook")
    timed([ansible_playbook, "tests/testbed/lab.yml", "-e", "lab_state=absent"])
    seconds, proc = timed([ansible_playbook, "tests/testbed/lab.yml"])
    row("lab node start (container + systemd up)", f"{seconds:.1f} s" + ("" if proc.returncode == 0 else " FAILED"))
    for label in ("site.yml cold converge (fresh node)", "site.yml no-op re-run"):
        seconds, proc = timed([ansible_playbook, "site.yml", "-i", "inventory/local"])
        status = "" if proc.returncode == 0 else f" FAILED rc={proc.returncode}"
        row(label, f"{seconds:.1f} s, {recap(proc.stdout)}{status}")
    seconds, proc = timed([ansible_playbook, "site.yml", "-i", "inventory/local", "--check", "--diff"])
    row("site.yml --check --diff on the converged node", f"{seconds:.1f} s, {recap(proc.stdout)}")
    # How many services a run restarts: a no-change run, a key dockerd reloads, a key that needs a restart,
    # and the run that takes the key away again (the collection removes the key it wrote).
    runs = [
        ("no-change run", []),
        ("reload key insecure-registries", ["-e", '{"container_runtime_insecure_registries": ["10.0.4.2"]}']),
        ("restart key log-opts (reload key removed)", ["-e", '{"container_runtime_log_opts": {"max-size": "20m"}}']),
        ("back to the inventory (log-opts default again)", []),
    ]
    for label, extra in runs:
        before = service_starts(LAB_NODE)
        seconds, proc = timed([ansible_playbook, "site.yml", "-i", "inventory/local", *extra])
        after = service_starts(LAB_NODE)
        restarted = sorted(name for name, stamp in after.items() if before.get(name) != stamp)
        status = "" if proc.returncode == 0 else f" FAILED rc={proc.returncode}"
        row(f"restarts: {label}", f"{len(restarted)} {restarted or ''} ({seconds:.1f} s, {recap(proc.stdout)}){status}")


LAB_NODE = "raibid-lab-spark"
LAB_SERVICES = ["docker", "containerd", "raibid-registry@local", "raibid-registry@docker.io", "raibid-registry@ghcr.io"]


def service_starts(node: str) -> dict:
    """Main PID and start time of each service on the lab node (a change means it was restarted)."""
    argv = ["docker", "exec", node, "systemctl", "show", "--property=Id,MainPID,ExecMainStartTimestampMonotonic"]
    proc = subprocess.run([*argv, *LAB_SERVICES], capture_output=True, text=True, check=False)
    starts = {}
    for block in proc.stdout.strip().split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if fields.get("Id"):
            stamp = (fields.get("MainPID"), fields.get("ExecMainStartTimestampMonotonic"))
            starts[fields["Id"].removesuffix(".service")] = stamp
    return starts


def section_release(_args: argparse.Namespace) -> None:
    """Wall time of each release check (tests/release/check.py) and the size of the built tarball."""
    checks = ["role-docs", "drift", "ansible-doc", "tarball", "changelog", "ee", "galaxy-import", "sanity", "units"]
    _, proc = timed([str(VENV_BIN / "python"), "tests/release/check.py", *checks])
    tarball = ""
    for line in proc.stdout.splitlines():
        match = re.match(r"^  (\S+)\s+([0-9.]+)s  (ok|FAILED)$", line)
        if match:
            row(f"release check {match.group(1)}", f"{match.group(2)} s ({match.group(3)})")
        match = re.match(r"^  (\.cache/release/dist/\S+): (\d+) entries, (\d+) KiB$", line)
        if match and not tarball:
            tarball = f"{match.group(2)} entries, {match.group(3)} KiB"
            row("collection tarball", tarball)


def section_k8s(_args: argparse.Namespace) -> None:
    """Kubernetes test bed and the keda / agent_jobs roles, as last measured by the tests
    (tests/integration/test_k8s_apply.py records into .cache/k8s-testbed-timings.jsonl)."""
    build = Path(os.environ.get("K8S_TESTBED_CACHE", "/var/cache/raibid-k8s-testbed/v1.20.2")) / "build-times.json"
    if build.exists():
        data = json.loads(build.read_text())
        kind = "warm Go cache" if data.get("gocache_warm_at_start") else "cold"
        row(
            f"test bed build ({kind}), kube-apiserver+controller-manager",
            f"{data['total_s']} s (make {data['make_s']} s)",
        )
    else:
        row("test bed build", "not built on this machine yet")
    timings = CACHE / "k8s-testbed-timings.jsonl"
    last: dict = {}
    if timings.exists():
        for line in timings.read_text().splitlines():
            entry = json.loads(line)
            last[entry["kind"]] = entry
    bed = last.get("k8s-testbed")
    if bed:
        row("test bed build step in the tests", f"{bed['build_s']} s ({'cached' if bed['build_cached'] else 'built'})")
        row("test bed start (etcd, apiserver /readyz, controller-manager)", f"{bed['start_s']} s")
    keda = last.get("keda-crds")
    if keda:
        row("keda (CRDs only, no operator): apply / no-op re-apply", f"{keda['apply_s']} s / {keda['reapply_s']} s")
    jobs = last.get("agent_jobs")
    if jobs:
        row(
            "agent_jobs: apply / no-op re-apply / --check --diff",
            f"{jobs['apply_s']} s / {jobs['reapply_s']} s / {jobs['check_s']} s",
        )
    if not last:
        row("k8s timings", "none recorded yet: run `make integration`")


def section_registry_buildkit(_args: argparse.Namespace) -> None:
    """Registry pull-through and BuildKit registry-cache figures from the last registry_cache and buildkit
    scenario verify runs (they record into .cache/registry-buildkit-timings.jsonl)."""
    print("registry cache and BuildKit (last Molecule verify)")
    latest = latest_jsonl(CACHE / "registry-buildkit-timings.jsonl", "metric")
    pull = latest.get("registry_pull_through")
    if pull:
        row("pull through proxy, first pull (8 MiB layer)", str(pull["first_pull"]))
        row("pull through proxy, cached pull, upstream stopped", str(pull["cached_pull_upstream_down"]))
    else:
        row("registry pull-through", "not recorded (make molecule SCENARIOS=registry_cache)")
    build = latest.get("buildkit_registry_cache")
    if build:
        row("BuildKit cold build", f"{build['cold_build_s']} s")
        row(
            "BuildKit rebuild from registry cache after prune",
            f"{build['rebuild_from_registry_cache_s']} s ({build['cached_steps']}/{build['layer_steps']} steps CACHED)",
        )
    else:
        row("BuildKit registry cache", "not recorded (make molecule SCENARIOS=buildkit)")


def section_agent_image(_args: argparse.Namespace) -> None:
    """Agent image figures from the last agent_image scenario verify (.cache/agent-image-timings.jsonl)."""
    print("agent image (last Molecule verify of agent_image)")
    rec = latest_jsonl(CACHE / "agent-image-timings.jsonl", "metric").get("agent_image")
    if not rec:
        row("agent image", "not recorded (make molecule SCENARIOS=agent_image)")
        return
    build = rec.get("last_build") or {}
    if build:
        row(
            "last build on the node",
            f"{build.get('duration_s')} s ({build.get('cached_steps')}/{build.get('layer_steps')} steps CACHED)",
        )
    row("rebuild after a health-check-only change", f"{rec['health_only_rebuild_s']} s")
    row("no-op role run (nothing built or pushed)", f"{rec['noop_role_run_s']} s")
    row("image size", f"{rec['size_mb']} MB")
    for layer in rec.get("biggest_layers", []):
        row("  layer", f"{layer['mb']} MB  {layer['step']}")
    health = f"{rec['health_duration_ms']} ms in the agent, {rec['health_elapsed_s']} s with docker run"
    row("raibid-agent health", health)
    row("agent_image_verify", f"{rec['verify_duration_s']} s ({rec['verify_checks']} checks)")


def section_health(_args: argparse.Namespace) -> None:
    """Wall time of playbooks/healthcheck.yml over 3 and then 5 nodes (benchmarks/health-fleet.yml)."""
    ansible_playbook = str(VENV_BIN / "ansible-playbook")
    fleet = [ansible_playbook, "benchmarks/health-fleet.yml", "-e", "bench_fleet_size=5"]
    seconds, proc = timed(fleet)
    if proc.returncode != 0:
        row("health: 5 nodes started", f"FAILED rc={proc.returncode} ({seconds:.0f} s)")
        return
    try:
        for size in (3, 5):
            docker = {"ansible_connection": "community.docker.docker"}
            hosts = {f"raibid-bench-health-{n}": docker for n in range(1, size + 1)}
            inventory = CACHE / f"bench-health-{size}.json"
            inventory.write_text(json.dumps({"dgx_spark": {"hosts": hosts}}))
            report = CACHE / f"bench-health-{size}"
            for run in ("first", "second"):
                cmd = [ansible_playbook, "playbooks/healthcheck.yml", "-i", str(inventory)]
                cmd += ["-e", json.dumps({"health_report_dir": str(report), "health_fail_on": "never"})]
                seconds, proc = timed(cmd)
                if proc.returncode != 0:
                    row(f"healthcheck.yml, {size} nodes, {run} run", f"FAILED rc={proc.returncode}")
                    continue
                nodes = json.loads((report / "health-report.json").read_text())["nodes"]
                per_node = sorted(int(n.get("elapsed_ms", 0)) for n in nodes.values())
                row(
                    f"healthcheck.yml, {size} nodes, {run} run",
                    f"{seconds:.1f} s wall; node_health {per_node[0]}-{per_node[-1]} ms per node",
                )
    finally:
        timed([*fleet, "-e", "bench_fleet_state=absent"])
    runs = latest_jsonl(CACHE / "molecule-timings.jsonl", "scenario")
    if "fleet" in runs:
        row("molecule fleet (3 converged nodes, rollout steps)", f"total {runs['fleet'].get('total_s', '-')} s")


SECTIONS: List[Tuple[str, Callable[[argparse.Namespace], None]]] = [
    ("images", section_images),
    ("molecule", section_molecule),
    ("lab", section_lab),
    ("release", section_release),
    ("k8s", section_k8s),
    ("registry_buildkit", section_registry_buildkit),
    ("agent_image", section_agent_image),
    ("health", section_health),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--only", nargs="*", default=[], help="sections to run")
    parser.add_argument("--rebuild", metavar="IMAGE", help="rebuild one node image from scratch and time it")
    args = parser.parse_args()
    for name, func in SECTIONS:
        if args.only and name not in args.only:
            continue
        print(f"[{name}]")
        func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
