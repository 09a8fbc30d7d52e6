"""Stand-in ``nvidia-ctk``: checks its arguments against the real CLI and does what it does to the files.

Simulated: ``runtime configure --runtime=docker`` (adds ``runtimes.nvidia`` to daemon.json, and
``default-runtime`` with ``--set-as-default``, as pkg/config/engine/docker/docker.go AddRuntime does)
and ``config --set nvidia-container-runtime.mode=...`` (sets ``mode`` of the
``[nvidia-container-runtime]`` table). Anything else is refused like a wrong flag (rc 1, a message on
stderr) that says it is not simulated.

State: ``log`` (each argv, one a line), ``writes_nothing`` (accept every valid command and change no
file, like a toolkit writing somewhere else than asked).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from .cli import UsageError, is_set, parse, record

# The flags every supported toolkit accepts. The collection pins no version (container_runtime_nvidia_toolkit_version
# is empty by default: the toolkit already on the node, or what NVIDIA's apt repository offers); supported
# here: v1.17.0 to v1.20.0, the newest release. Read from NVIDIA/nvidia-container-toolkit, the urfave/cli
# flag definitions (Name and Aliases) at every release tag v1.17.0 ... v1.20.0:
#   cmd/nvidia-ctk/main.go                           global flags
#   cmd/nvidia-ctk/runtime/configure/configure.go   `runtime configure`
#   cmd/nvidia-ctk/config/config.go                  `config`
# A flag only some of those versions know is left out (global --config and `runtime configure`
# --drop-in-config from v1.18.0, --executable-path from v1.17.6, --enable-cdi from v1.17.5), so a command
# line that breaks on one supported version fails here. True: the flag takes a value.
GLOBAL_FLAGS: Dict[str, bool] = {"--debug": False, "-d": False, "--quiet": False}
COMMAND_FLAGS: Dict[Tuple[str, ...], Dict[str, bool]] = {
    ("runtime", "configure"): {
        **dict.fromkeys(
            "--runtime --config --config-mode --config-source --oci-hook-path --nvidia-runtime-name "
            "--nvidia-runtime-path --runtime-path --nvidia-runtime-hook-path".split(),
            True,
        ),
        **dict.fromkeys("--dry-run --nvidia-set-as-default --set-as-default --cdi.enabled --cdi.enable".split(), False),
    },
    ("config",): {
        **dict.fromkeys("--config-file --config -c --set --set-list-separator --output -o".split(), True),
        **dict.fromkeys("--in-place -i".split(), False),
    },
}
# validateFlags of configure.go: the engines --runtime names and the sources --config-source names.
RUNTIMES = ("containerd", "crio", "docker")
CONFIG_SOURCES = ("command", "file")
# config --set keys are fields of internal/config (toml tags); this stand-in simulates the one we set.
SIMULATED_KEYS = ("nvidia-container-runtime.mode",)
# The real defaults are system files; a test must always name its own.
DEFAULT_PATHS = {"--config": "/etc/docker/daemon.json", "--config-file": "/etc/nvidia-container-runtime/config.toml"}

_SECTION = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]")
_MODE = re.compile(r"^\s*mode\s*=")


def check_argv(argv: Sequence[str]) -> Tuple[Tuple[str, ...], Dict[str, List[str]]]:
    """``(command, flag -> values)`` of an nvidia-ctk argv (without the program); UsageError where the
    real CLI would refuse it or this stand-in does not simulate it."""
    args = list(argv)
    while args and args[0].startswith("-"):
        flag = args.pop(0)
        if flag not in GLOBAL_FLAGS:
            raise UsageError(f"flag provided but not defined: {flag} (global flags: {', '.join(GLOBAL_FLAGS)})")
    command = next((c for c in COMMAND_FLAGS if tuple(args[: len(c)]) == c), None)
    if command is None:
        raise UsageError(f"command {' '.join(args[:2])!r} is not simulated (only: runtime configure, config)")
    try:
        opts, positional = parse(args[len(command) :], COMMAND_FLAGS[command])
    except UsageError as exc:
        raise UsageError(f"{' '.join(command)}: {exc} (accepts: {' '.join(COMMAND_FLAGS[command])})") from None
    if positional:
        raise UsageError(f"{' '.join(command)} takes no arguments; got {positional}")
    if command == ("runtime", "configure"):
        _check_configure(opts)
    else:
        _check_config(opts)
    return command, opts


def _last(opts: Mapping[str, List[str]], *names: str) -> str | None:
    values = [v for n in names for v in opts.get(n, [])]
    return values[-1] if values else None


def _check_configure(opts: Mapping[str, List[str]]) -> None:
    runtime = _last(opts, "--runtime") or "docker"
    if runtime not in RUNTIMES:
        raise UsageError(f"unrecognized runtime '{runtime}'")
    source = _last(opts, "--config-source") or "file"
    if source not in CONFIG_SOURCES:
        raise UsageError(f"unrecognized Config Source: {source}")
    if runtime != "docker":
        raise UsageError(f"runtime configure --runtime={runtime} is not simulated (only docker)")
    if not _last(opts, "--config"):
        raise UsageError(f"runtime configure without --config would write {DEFAULT_PATHS['--config']}")


def _check_config(opts: Mapping[str, List[str]]) -> None:
    if is_set(opts, "--in-place", "-i") and _last(opts, "--output", "-o"):
        raise UsageError("cannot specify both --in-place and --output")
    if not _last(opts, "--config-file", "--config", "-c"):
        raise UsageError(f"config without --config-file would read {DEFAULT_PATHS['--config-file']}")
    for setting in opts.get("--set", []):
        key, eq, _value = setting.partition("=")
        if key not in SIMULATED_KEYS:
            raise UsageError(f"invalid --set option {setting}: key {key!r} is not simulated (only: {SIMULATED_KEYS})")
        if not eq:
            raise UsageError(f"invalid --set option {setting}: invalid format: expected key=value; got {setting}")


def _configure_docker(opts: Mapping[str, List[str]]) -> None:
    path = _last(opts, "--config")
    try:
        with open(path, encoding="utf-8") as fh:
            data: Dict[str, Any] = json.load(fh)
    except FileNotFoundError:
        data = {}
    name = _last(opts, "--nvidia-runtime-name") or "nvidia"
    runtime_path = _last(opts, "--nvidia-runtime-path", "--runtime-path") or "nvidia-container-runtime"
    data.setdefault("runtimes", {})[name] = {"args": [], "path": runtime_path}
    if is_set(opts, "--nvidia-set-as-default", "--set-as-default"):
        data["default-runtime"] = name
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=4)


def set_mode(text: str, mode: str) -> str:
    """``text`` with ``mode`` of the ``[nvidia-container-runtime]`` table set (added when absent)."""
    lines = text.splitlines()
    section = None
    header = None
    for index, line in enumerate(lines):
        match = _SECTION.match(line)
        if match:
            section = match.group(1)
            if section == "nvidia-container-runtime":
                header = index
            continue
        if section == "nvidia-container-runtime" and _MODE.match(line):
            lines[index] = f'mode = "{mode}"'
            return "\n".join(lines) + "\n"
    if header is None:
        lines += ["", "[nvidia-container-runtime]"]
        header = len(lines) - 1
    lines.insert(header + 1, f'mode = "{mode}"')
    return "\n".join(lines) + "\n"


def _config(opts: Mapping[str, List[str]], state: Mapping[str, Any]) -> None:
    path = _last(opts, "--config-file", "--config", "-c")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        text = ""
    if not state.get("writes_nothing"):
        for setting in opts.get("--set", []):
            text = set_mode(text, setting.partition("=")[2])
    output = path if is_set(opts, "--in-place", "-i") else _last(opts, "--output", "-o")
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)


def main(argv: Sequence[str], state: Mapping[str, Any]) -> int:
    """Run as nvidia-ctk would: rc 0, or rc 1 and a message on stderr for a refused argv."""
    record(state, argv)
    try:
        command, opts = check_argv(argv)
    except UsageError as exc:
        sys.stderr.write(f"nvidia-ctk (stand-in): {exc}\n")
        return 1
    if command == ("runtime", "configure"):
        if not state.get("writes_nothing"):
            _configure_docker(opts)
    else:
        _config(opts, state)
    return 0
