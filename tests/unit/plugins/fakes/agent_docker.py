"""Stand-in docker CLI for the agent_image_verify and agent_healthcheck modules.

It refuses flags the real commands do not have (rc 125 and ``unknown flag``, as docker does), stops
reading flags at the first positional argument of run and exec (docker does; the rest is the
command), answers ``image inspect`` from images.json and ``run``/``exec`` by running the command on
this host with the image's (or container's) Env, PATH=<state>/bin (the stand-in tools of
agent_tools.py) and TMPDIR=<state>/tmp. The state directory (tests/unit/plugins/modules/
agent_image_state.py builds it): calls (JSON lines), flags.json, images.json, containers.json,
env.json (the environment the last command got) and the switch ``hang``.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Mapping, Sequence

from . import docker_cli_flags
from .cli import Exit, UsageError, parse, run

# Flags of the real commands where the host has no docker CLI to ask: `docker run --help`, `docker exec --help`,
# `docker rm --help` and `docker image inspect --help` of Docker 28.2. True: the flag takes a value.
DOCUMENTED_FLAGS: Dict[str, Dict[str, bool]] = {
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


@functools.cache
def real_flags() -> Dict[str, Dict[str, bool]]:
    """Command -> flag -> takes a value, from the host's docker where it can say (asked once)."""
    return {command: docker_cli_flags.real_flags(command, DOCUMENTED_FLAGS) for command in DOCUMENTED_FLAGS}


def main(argv: Sequence[str], config: Mapping[str, Any]) -> int:
    """Run one docker command against the state directory ``config["dir"]``."""
    return run(lambda: _docker(config["dir"], list(argv)))


def _load(state: str, name: str) -> Any:
    with open(os.path.join(state, name), encoding="utf-8") as fh:
        return json.load(fh)


def _docker(state: str, args: List[str]) -> int:
    with open(os.path.join(state, "calls"), "a", encoding="utf-8") as fh:
        fh.write(json.dumps(args) + "\n")
    flags = _load(state, "flags.json")
    cmd = next((c for c in sorted(flags, key=len, reverse=True) if args[: len(c.split())] == c.split()), None)
    if cmd is None:
        raise Exit(2, "fake docker: unexpected command " + " ".join(args))
    try:
        opts, positional = parse(args[len(cmd.split()) :], flags[cmd], stop_at_positional=cmd in ("run", "exec"))
    except UsageError as exc:
        raise Exit(125, f"{exc}\nSee 'docker {cmd} --help'.") from None
    images = _load(state, "images.json")
    if cmd == "image inspect":
        missing = [p for p in positional if p not in images]
        if missing:
            raise Exit(1, "Error response from daemon: No such image: " + missing[0])
        print(json.dumps([images[p] for p in positional]))
        return 0
    if cmd == "rm":
        return 0
    return _run_or_exec(state, cmd, opts, positional, images)


def _run_or_exec(
    state: str, cmd: str, opts: Dict[str, List[str]], positional: List[str], images: Dict[str, Any]
) -> int:
    target, command = positional[0], positional[1:]
    if cmd == "run":
        assert opts.get("--rm") and opts.get("--pull") == ["never"], opts
        assert "--entrypoint" not in opts and "--user" not in opts and "-u" not in opts, opts
        if target not in images:
            raise Exit(125, "docker: Error response from daemon: No such image: " + target)
        env = dict(e.split("=", 1) for e in images[target]["Config"]["Env"])
    else:
        running = _load(state, "containers.json")
        if target not in running:
            raise Exit(1, "Error response from daemon: No such container: " + target)
        env = dict(running[target])
    for name in opts.get("--env", []) + opts.get("-e", []):
        key, eq, _value = name.partition("=")
        if eq:
            raise Exit(2, "fake docker: a value on the command line: " + key)
        if key in os.environ:
            env[key] = os.environ[key]
    with open(os.path.join(state, "env.json"), "w", encoding="utf-8") as fh:
        json.dump(env, fh)
    if os.path.exists(os.path.join(state, "hang")):
        time.sleep(60)
    env.update(PATH=os.path.join(state, "bin"), TMPDIR=os.path.join(state, "tmp"))
    proc = subprocess.run(command, env=env, cwd=os.path.join(state, "tmp"), capture_output=True, text=True, check=False)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return proc.returncode
