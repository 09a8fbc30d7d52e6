"""Unit tests for the agent_image_verify module glue, with a stand-in docker CLI that runs the script locally."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.raibid.dgx_spark.plugins.module_utils.agent_image import (
    ALWAYS_TOOLS,
    CARGO_CHECKS,
    EXPECTED_ENV,
    REQUIRED_LABELS,
)
from ansible_collections.raibid.dgx_spark.plugins.modules import agent_image_verify

sys.path.insert(0, os.path.dirname(__file__))
import docker_cli_flags

# Flags of the real commands where the host has no docker CLI to ask: `docker run --help`, `docker exec --help`,
# `docker rm --help` and `docker image inspect --help` of Docker 28.2. True: the flag takes a value.
DOCUMENTED_FLAGS = {
    "run": {
        **dict.fromkeys(
            "--add-host -a --attach --blkio-weight --blkio-weight-device --cap-add --cap-drop --cgroup-parent "
            "--cgroupns --cidfile --cpu-period --cpu-quota --cpu-rt-period --cpu-rt-runtime -c --cpu-shares --cpus "
            "--cpuset-cpus --cpuset-mems --detach-keys --device --device-cgroup-rule --device-read-bps "
            "--device-read-iops --device-write-bps --device-write-iops --dns --dns-option --dns-search --domainname "
            "--entrypoint -e --env --env-file --expose --gpus --group-add --health-cmd --health-interval "
            "--health-retries --health-start-period --health-timeout -h --hostname --ip --ip6 --ipc --isolation "
            "--kernel-memory -l --label --label-file --link --link-local-ip --log-driver --log-opt --mac-address -m "
            "--memory --memory-reservation --memory-swap --memory-swappiness --mount --name --network "
            "--network-alias --oom-score-adj --pid --pids-limit --platform -p --publish --pull --restart --runtime "
            "--security-opt --shm-size --stop-signal --stop-timeout --storage-opt --sysctl --tmpfs --ulimit -u "
            "--user --userns --uts -v --volume --volume-driver --volumes-from -w --workdir".split(),
            True,
        ),
        **dict.fromkeys(
            "-d --detach --disable-content-trust --init -i --interactive --no-healthcheck --oom-kill-disable "
            "--privileged -P --publish-all -q --quiet --read-only --rm --sig-proxy -t --tty --use-api-socket".split(),
            False,
        ),
    },
    "exec": {
        **dict.fromkeys("--detach-keys -e --env --env-file -u --user -w --workdir".split(), True),
        **dict.fromkeys("-d --detach -i --interactive --privileged -t --tty".split(), False),
    },
    "rm": dict.fromkeys("-f --force -l --link -v --volumes".split(), False),
    "image inspect": {"-f": True, "--format": True},
}


def real_flags(command: str) -> dict:
    return docker_cli_flags.real_flags(command, DOCUMENTED_FLAGS)


# Stand-in docker CLI. It refuses flags the real command does not have (rc 125, as docker does), stops
# reading flags at the first positional argument of run and exec (docker does; the rest is the command),
# answers `image inspect` from $STATE/images.json and `run` by running the command on this host with the
# image's Env, PATH=$STATE/bin (stand-in tools) and TMPDIR=$STATE/tmp. Calls go to $STATE/calls (JSON lines).
FAKE_DOCKER = """#!{python}
import json, os, subprocess, sys, time
state = os.environ["STATE"]
args = sys.argv[1:]
with open(os.path.join(state, "calls"), "a") as fh:
    fh.write(json.dumps(args) + "\\n")
flags = json.load(open(os.path.join(state, "flags.json")))
cmd = next((c for c in sorted(flags, key=len, reverse=True) if args[: len(c.split())] == c.split()), None)
if cmd is None:
    sys.stderr.write("fake docker: unexpected command " + " ".join(args) + "\\n"); sys.exit(2)
opts, positional, rest = {{}}, [], args[len(cmd.split()) :]
while rest:
    arg = rest.pop(0)
    if arg.startswith("-") and arg != "-" and not (positional and cmd in ("run", "exec")):
        name, eq, value = arg.partition("=")
        if name not in flags[cmd]:
            sys.stderr.write("unknown flag: " + name + "\\n"); sys.exit(125)
        if flags[cmd][name] and not eq:
            value = rest.pop(0)
        opts.setdefault(name, []).append(value)
    else:
        positional.append(arg)
images = json.load(open(os.path.join(state, "images.json")))
if cmd == "image inspect":
    missing = [p for p in positional if p not in images]
    if missing:
        sys.stderr.write("Error response from daemon: No such image: " + missing[0] + "\\n"); sys.exit(1)
    print(json.dumps([images[p] for p in positional])); sys.exit(0)
if cmd == "rm":
    sys.exit(0)
if cmd == "run":
    assert opts.get("--rm") and opts.get("--pull") == ["never"], opts
    assert "--entrypoint" not in opts and "--user" not in opts and "-u" not in opts, opts
    target, command = positional[0], positional[1:]
    if target not in images:
        sys.stderr.write("docker: Error response from daemon: No such image: " + target + "\\n"); sys.exit(125)
    env = dict(e.split("=", 1) for e in images[target]["Config"]["Env"])
else:
    target, command = positional[0], positional[1:]
    running = json.load(open(os.path.join(state, "containers.json")))
    if target not in running:
        sys.stderr.write("Error response from daemon: No such container: " + target + "\\n"); sys.exit(1)
    env = dict(running[target])
for name in opts.get("--env", []) + opts.get("-e", []):
    key, eq, value = name.partition("=")
    if eq:
        sys.stderr.write("fake docker: a value on the command line: " + key + "\\n"); sys.exit(2)
    if key in os.environ:
        env[key] = os.environ[key]
json.dump({{k: v for k, v in env.items()}}, open(os.path.join(state, "env.json"), "w"))
if os.path.exists(os.path.join(state, "hang")):
    time.sleep(60)
env.update(PATH=os.path.join(state, "bin"), TMPDIR=os.path.join(state, "tmp"))
proc = subprocess.run(command, env=env, cwd=os.path.join(state, "tmp"), capture_output=True, text=True)
sys.stdout.write(proc.stdout); sys.stderr.write(proc.stderr); sys.exit(proc.returncode)
"""

HEALTH_OK = {
    "status": "ok",
    "duration_ms": 412,
    "checks": [{"name": "cargo-nextest", "status": "ok", "value": "cargo-nextest 0.9.100", "message": "pinned"}],
}
# Stand-in tools, shell scripts as in test_agent_image_utils (cargo runs cargo-<name> for subcommands).
STUBS = {
    "git": 'case "$1" in --version) echo "git version 2.39.5";; lfs) echo "git-lfs/3.3.0 (GitHub; linux arm64)";; esac',
    "ssh": 'echo "OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024" >&2',
    "docker": 'if [ "$1" = buildx ]; then echo "github.com/docker/buildx v0.24.0 d0e5e86"; '
    'else echo "Docker version 28.2.2, build e6534b4"; fi',
    "rustc": 'echo "rustc 1.85.0 (4d91de4e4 2025-02-17)"',
    "rustfmt": 'echo "rustfmt 1.8.0-stable (4d91de4e48 2025-02-17)"',
    "cargo-clippy": 'echo "clippy 0.1.85 (4d91de4e48 2025-02-17)"',
    "cargo-audit": 'echo "cargo-audit-audit 0.21.2"',
    "cargo-deny": 'echo "cargo-deny 0.18.3"',
    "cargo-nextest": 'if [ "$2" = --version ]; then echo "cargo-nextest 0.9.100 (3c9f1ac 2025-06-20)"; exit 0; fi\n'
    '[ "$CARGO_NET_OFFLINE" = true ] || { echo "error: would need the network" >&2; exit 101; }\n'
    'echo "     Summary [   0.004s] 1 test run: 1 passed, 0 skipped" >&2',
    "cargo": 'case "$1" in\n'
    '  --version) echo "cargo 1.85.0 (d73d2caf9 2024-12-31)";;\n'
    '  new) mkdir -p "$4/src" && echo "fn main() {}" > "$4/src/main.rs";;\n'
    '  build) [ -f src/main.rs ] && echo "    Finished \\`release\\` profile [optimized] target(s) in 0.31s" >&2;;\n'
    '  test) grep -q "#\\[test\\]" src/main.rs && echo "test result: ok. 1 passed; 0 failed";;\n'
    '  *) command -v "cargo-$1" >/dev/null || { echo "error: no such command: \\`$1\\`" >&2; exit 101; }\n'
    '     exec "cargo-$1" "$@";;\n'
    "esac",
    "raibid-agent": 'cat "$(dirname "$0")/health.out"; exit "$(cat "$(dirname "$0")/health.rc")"',
}
IMAGE = "127.0.0.1:5000/raibid-ci-agent:1.4.0"


def image_config(**labels):
    return {
        "Id": "sha256:" + "a" * 64,
        "Architecture": "arm64",
        "Os": "linux",
        "Size": 1200 * 1024 * 1024,
        "Config": {
            "User": "agent",
            "Env": ["PATH=/usr/local/cargo/bin:/usr/bin:/bin", *(f"{k}={v}" for k, v in EXPECTED_ENV.items())],
            "Entrypoint": ["/usr/bin/tini", "--"],
            "WorkingDir": "/workspace",
            "Labels": {**{n: "x" for n in REQUIRED_LABELS}, "raibid.agent.arch": "arm64", **labels},
        },
    }


def set_health(state, output, rc):
    (state / "bin" / "health.out").write_text(output)
    (state / "bin" / "health.rc").write_text(str(rc))


def make_state(tmp_path, monkeypatch):
    """$STATE with stand-in tools, one image and one running container, and the fake docker: (state, docker)."""
    state = tmp_path / "state"
    for sub in ("bin", "tmp", "workspace", "cargo-home"):
        (state / sub).mkdir(parents=True)
    (state / "flags.json").write_text(json.dumps({c: real_flags(c) for c in DOCUMENTED_FLAGS}))
    (state / "images.json").write_text(json.dumps({IMAGE: image_config()}))
    (state / "containers.json").write_text(json.dumps({"agent-1": dict(EXPECTED_ENV)}))
    for name, body in STUBS.items():
        (state / "bin" / name).write_text("#!/bin/sh\n" + body + "\n")
        (state / "bin" / name).chmod(0o755)
    for tool in ("sh", "id", "base64", "tr", "mkdir", "rm", "cat", "grep", "dirname"):
        (state / "bin" / tool).symlink_to(shutil.which(tool))
    set_health(state, json.dumps(HEALTH_OK) + "\n", 0)
    docker = tmp_path / "docker"
    docker.write_text(FAKE_DOCKER.format(python=sys.executable))
    docker.chmod(0o755)
    monkeypatch.setenv("STATE", str(state))
    return state, docker


@pytest.fixture
def setup(tmp_path, monkeypatch):
    return make_state(tmp_path, monkeypatch)


def calls(state):
    return [json.loads(line) for line in (state / "calls").read_text().splitlines()]


def verify_args(state, docker, **extra):
    return {
        "image": IMAGE,
        "docker_cli": str(docker),
        "architecture": "arm64",
        "expected_uid": os.getuid(),
        "writable_dirs": [str(state / "workspace"), str(state / "cargo-home")],
        "tools": [
            {"name": "cargo-nextest", "version": "0.9.100"},
            {"name": "cargo-audit", "version": "0.21.2"},
            {"name": "cargo-deny", "version": "0.18.3"},
        ],
        **extra,
    }


def run(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        agent_image_verify.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def test_all_checks_pass_with_one_inspect_and_two_runs(capsys, setup):
    state, docker = setup
    code, result = run(capsys, verify_args(state, docker))
    assert code == 0, result["msg"]
    names = [c["name"] for c in result["checks"]]
    tools = [f"tool:{n}" for n in [*ALWAYS_TOOLS, "cargo-nextest", "cargo-audit", "cargo-deny"]]
    assert [n for n in names if n.startswith("tool:")] == tools
    assert names[:2] == ["architecture", "size"] and names[-4:] == ["health", *CARGO_CHECKS]
    assert (result["failed"], result["passed"], result["failed_checks"]) == (0, len(names), [])
    assert result["changed"] is False and result["architecture"] == "arm64" and result["size_mb"] == 1200.0
    assert result["image_id"] == "sha256:" + "a" * 64 and result["health"]["status"] == "ok"
    assert result["health"]["duration_ms"] == 412 and result["msg"].startswith(
        f"{IMAGE}: all {len(names)} checks passed"
    )
    made = calls(state)
    assert [c[:2] for c in made] == [["image", "inspect"], ["run", "--rm"], ["run", "--rm"]]
    for argv in made[1:]:
        assert argv[argv.index("--network") + 1] == "none" and argv[argv.index(IMAGE) + 1 :][:2] == ["/bin/sh", "-c"]


def test_check_mode_still_verifies(capsys, setup):
    state, docker = setup
    code, result = run(capsys, verify_args(state, docker, _ansible_check_mode=True, cargo_checks=False))
    assert code == 0 and result["changed"] is False
    assert [c[:2] for c in calls(state)] == [["image", "inspect"], ["run", "--rm"]]
    assert not any(c["name"].startswith("cargo-") for c in result["checks"])


def test_one_missing_tool_fails_by_name_and_the_others_are_still_reported(capsys, setup):
    state, docker = setup
    (state / "bin" / "cargo-audit").unlink()
    code, result = run(capsys, verify_args(state, docker))
    assert code == 1 and result["failed_checks"] == ["tool:cargo-audit"]
    assert (
        "1 of" in result["msg"]
        and "tool:cargo-audit: cargo-audit: `cargo audit --version` failed (rc=101)" in result["msg"]
    )
    statuses = {c["name"]: c["status"] for c in result["checks"]}
    assert statuses["tool:cargo-deny"] == statuses["tool:cargo-nextest"] == statuses["cargo-nextest-run"] == "ok"


def test_every_failure_is_listed(capsys, setup):
    state, docker = setup
    (state / "images.json").write_text(json.dumps({IMAGE: image_config(**{"raibid.agent.arch": "amd64"})}))
    (state / "bin" / "rustfmt").unlink()
    set_health(state, "not json at all\n", 0)
    code, result = run(
        capsys, verify_args(state, docker, size_budget_mb=1000, tools=[{"name": "cargo-deny", "version": "0.19.0"}])
    )
    assert code == 1
    assert result["failed_checks"] == ["size", "label:raibid.agent.arch", "tool:rustfmt", "tool:cargo-deny", "health"]
    for name in result["failed_checks"]:
        assert f"{name}: " in result["msg"]
    assert "cargo-deny: expected 0.19.0, found 0.18.3" in result["msg"]
    assert result["health"]["parse_error"] and result["health"]["status"] == "fail"


def test_missing_image_fails_before_any_run(capsys, setup):
    state, docker = setup
    code, result = run(capsys, verify_args(state, docker, image="nope:1"))
    assert code == 1 and result["msg"].startswith("image: nope:1 is not in the node's image store")
    assert [c[:2] for c in calls(state)] == [["image", "inspect"]]


def test_bad_options_are_refused(capsys, setup):
    state, docker = setup
    code, result = run(capsys, verify_args(state, docker, writable_dirs=["tmp"], timeout=0))
    assert code == 1 and "writable_dirs: 'tmp'" in result["msg"] and "timeout: 0" in result["msg"]
    assert not (state / "calls").exists()


def test_docker_host_reaches_docker(capsys, setup, tmp_path):
    state, docker = setup
    wrapper = tmp_path / "docker-host-check"
    wrapper.write_text(f'#!/bin/sh\necho "$DOCKER_HOST" >> "$STATE/hosts"\nexec {docker} "$@"\n')
    wrapper.chmod(0o755)
    code, _result = run(capsys, verify_args(state, wrapper, docker_host="unix:///run/other.sock", cargo_checks=False))
    assert code == 0 and set((state / "hosts").read_text().split()) == {"unix:///run/other.sock"}


def test_fake_docker_refuses_flags_the_real_one_lacks(setup):
    state, docker = setup
    env = {**os.environ, "STATE": str(state)}
    for argv in (
        ["run", "--rmi", IMAGE, "true"],
        ["exec", "--network", "none", "agent-1", "true"],
        ["image", "inspect", "--size", IMAGE],
    ):
        proc = subprocess.run([str(docker), *argv], capture_output=True, text=True, env=env, check=False)
        assert proc.returncode == 125 and "unknown flag" in proc.stderr, argv
