"""Stand-ins for the tools in the CI agent image, as the agent_image probes call them.

``stand_in.install_agent_tools(bin_dir)`` writes git, ssh, docker, rustc, rustfmt, cargo, cargo-clippy,
cargo-nextest, cargo-audit, cargo-deny and raibid-agent into ``bin_dir``, plus links to the real
coreutils the probe script needs. Each stand-in refuses a flag or subcommand the real tool does not
have (a non-zero exit, ``REFUSAL_RC``, and a message on stderr), prints what the real one prints for
the invocations the probes use, and refuses the rest as not simulated. cargo runs ``cargo-<name>``
from PATH for a subcommand it does not have, as cargo does.
"""

from __future__ import annotations

import os
import sys

from .cli import Exit, UsageError, parse, record, run

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Sequence, Tuple

# Per tool, the command paths simulated and their flags (True: takes a value), from each tool's manual
# for the versions below (the versions the stand-ins report):
#   git 2.39 git(1) OPTIONS (--version, -C, -c, --no-pager); git-lfs 3.3 git-lfs-version(1)
#   OpenSSH 9.2 ssh(1) (-V: print the version and exit)
#   docker 28.2 `docker --help` (-v, --version), `docker buildx version` (buildx 0.24, no flags)
#   rustc 1.85 `rustc --help` (-V, --version, -v, --verbose); rustfmt 1.8 `rustfmt --help` (-V, --version)
#   cargo 1.85 cargo(1), cargo-new(1) (--vcs <git|hg|pijul|fossil|none>, --bin, --lib, --edition, --name),
#   cargo-build(1) and cargo-test(1) (-r/--release, --offline, --locked, --frozen, -q, -v, -j)
#   clippy 0.1.85, cargo-audit 0.21, cargo-deny 0.18, cargo-nextest 0.9.100: each one's --help (-V, --version);
#   `cargo nextest run --help` (--release, --offline, --locked, --frozen, --no-fail-fast, -j/--test-threads)
#   raibid-agent: image/agent/src/main.rs of this repository (health [--json] [--queue])
_CARGO_COMMON = {"-q": False, "--quiet": False, "-v": False, "--verbose": False, "--offline": False}
_CARGO_BUILD = {
    **_CARGO_COMMON,
    "-r": False,
    "--release": False,
    "--locked": False,
    "--frozen": False,
    "-j": True,
    "--jobs": True,
}
_VERSION = {"-V": False, "--version": False}
FLAGS: Dict[str, Dict[Tuple[str, ...], Dict[str, bool]]] = {
    "git": {(): {"--version": False, "-C": True, "-c": True, "--no-pager": False}, ("lfs", "version"): {}},
    "ssh": {(): {"-V": False}},
    "docker": {(): {"-v": False, "--version": False}, ("buildx", "version"): {}},
    "rustc": {(): {**_VERSION, "-v": False, "--verbose": False}},
    "rustfmt": {(): dict(_VERSION)},
    "cargo": {
        (): {**_VERSION, **_CARGO_COMMON},
        ("new",): {
            **_CARGO_COMMON,
            "--vcs": True,
            "--bin": False,
            "--lib": False,
            "--edition": True,
            "--name": True,
        },
        ("build",): _CARGO_BUILD,
        ("test",): _CARGO_BUILD,
    },
    "cargo-clippy": {("clippy",): dict(_VERSION)},
    "cargo-nextest": {
        ("nextest",): dict(_VERSION),
        ("nextest", "run"): {
            **dict.fromkeys("--release --offline --locked --frozen --no-fail-fast".split(), False),
            **dict.fromkeys("-j --test-threads".split(), True),
        },
    },
    "cargo-audit": {("audit",): dict(_VERSION)},
    "cargo-deny": {("deny",): dict(_VERSION)},
    "raibid-agent": {("health",): {"--json": False, "--queue": False}},
}
# How each tool refuses an argument it does not know: its exit status.
REFUSAL_RC = {"git": 129, "ssh": 255, "docker": 125, "raibid-agent": 2, "cargo": 1, "rustc": 1, "rustfmt": 1}
VCS = ("git", "hg", "pijul", "fossil", "none")

VERSIONS = {
    "git": "git version 2.39.5",
    "git lfs": "git-lfs/3.3.0 (GitHub; linux arm64)",
    "ssh": "OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024",
    "docker": "Docker version 28.2.2, build e6534b4",
    "docker buildx": "github.com/docker/buildx v0.24.0 d0e5e86",
    "rustc": "rustc 1.85.0 (4d91de4e4 2025-02-17)",
    "rustfmt": "rustfmt 1.8.0-stable (4d91de4e48 2025-02-17)",
    "cargo": "cargo 1.85.0 (d73d2caf9 2024-12-31)",
    "cargo-clippy": "clippy 0.1.85 (4d91de4e48 2025-02-17)",
    "cargo-nextest": "cargo-nextest 0.9.100 (3c9f1ac 2025-06-20)",
    "cargo-audit": "cargo-audit-audit 0.21.2",
    "cargo-deny": "cargo-deny 0.18.3",
}
HEALTH_OK = {
    "status": "ok",
    "duration_ms": 412,
    "checks": [{"name": "cargo-nextest", "status": "ok", "value": "cargo-nextest 0.9.100", "message": "pinned"}],
}
# The real coreutils the probe script needs, and nothing else of the host's PATH.
COREUTILS = ("sh", "id", "base64", "tr", "mkdir", "rm", "cat", "grep", "test", "dirname")


def set_health(bin_dir: str, output: str, rc: int) -> None:
    """What ``raibid-agent health --json`` prints next, and its exit status."""
    with open(os.path.join(bin_dir, "health.out"), "w", encoding="utf-8") as fh:
        fh.write(output)
    with open(os.path.join(bin_dir, "health.rc"), "w", encoding="utf-8") as fh:
        fh.write(str(rc))


def check_argv(tool: str, argv: Sequence[str]) -> Tuple[Tuple[str, ...], Dict[str, List[str]], List[str]]:
    """``(command path, flag -> values, positional)`` of ``tool``'s argv; UsageError where the real tool
    refuses it or the stand-in does not simulate it."""
    paths = sorted(FLAGS[tool], key=len, reverse=True)
    path = next((p for p in paths if tuple(argv[: len(p)]) == p), None)
    if path is None:
        raise UsageError(f"{tool} {' '.join(argv[:2])}: not simulated")
    opts, positional = parse(argv[len(path) :], FLAGS[tool][path])
    if path == ("new",):
        if len(positional) != 1:
            raise UsageError(f"cargo new takes one path; got {positional}")
        if opts.get("--vcs", ["git"])[-1] not in VCS:
            raise UsageError(
                f"invalid value {opts['--vcs'][-1]!r} for '--vcs <VCS>' [possible values: {', '.join(VCS)}]"
            )
    elif positional:
        raise UsageError(f"unexpected argument {positional[0]!r} found")
    if not opts and path in ((), ("clippy",), ("nextest",), ("audit",), ("deny",)):
        raise UsageError(f"{tool} without --version is not simulated")
    return path, opts, positional


def main(argv: Sequence[str], state: Mapping[str, Any]) -> int:
    """Run as ``state["tool"]``."""
    record(state, [state["tool"], *argv])
    return run(lambda: _tool(state, list(argv)))


def _tool(state: Mapping[str, Any], argv: List[str]) -> int:
    tool = state["tool"]
    if tool == "cargo" and argv and not argv[0].startswith("-") and (argv[0],) not in FLAGS["cargo"]:
        _cargo_external(argv)
    try:
        path, _opts, positional = check_argv(tool, argv)
    except UsageError as exc:
        raise Exit(REFUSAL_RC.get(tool, 2), f"{tool} (stand-in): error: {exc}") from None
    if tool == "raibid-agent":
        with open(os.path.join(state["dir"], "health.out"), encoding="utf-8") as fh:
            sys.stdout.write(fh.read())
        with open(os.path.join(state["dir"], "health.rc"), encoding="utf-8") as fh:
            return int(fh.read())
    if path in (("new",), ("build",), ("test",), ("nextest", "run")):
        _cargo_work(path, positional)
        return 0
    key = " ".join([tool, *path[:1]]) if path[:1] in (("lfs",), ("buildx",)) else tool
    stream = sys.stderr if tool == "ssh" else sys.stdout
    stream.write(VERSIONS[key] + "\n")
    return 0


def _cargo_external(argv: Sequence[str]) -> None:
    """cargo's own dispatch: ``cargo <name> ...`` runs ``cargo-<name> <name> ...`` from PATH."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        program = os.path.join(folder, f"cargo-{argv[0]}")
        if os.access(program, os.X_OK):
            os.execv(program, [program, *argv])
    raise Exit(101, f"error: no such command: `{argv[0]}`")


def _cargo_work(path: Tuple[str, ...], positional: List[str]) -> None:
    """What cargo new, build, test and nextest run do to (and say about) the scratch crate."""
    if path == ("new",):
        os.makedirs(os.path.join(positional[0], "src"))
        with open(os.path.join(positional[0], "src", "main.rs"), "w", encoding="utf-8") as fh:
            fh.write("fn main() {}\n")
        sys.stderr.write(f"    Creating binary (application) `{positional[0]}` package\n")
        return
    if not os.path.exists("src/main.rs"):
        raise Exit(101, "error: could not find `Cargo.toml` in the current directory")
    if path == ("build",):
        sys.stderr.write("    Finished `release` profile [optimized] target(s) in 0.31s\n")
        return
    with open("src/main.rs", encoding="utf-8") as fh:
        has_test = "#[test]" in fh.read()
    if path == ("test",):
        if not has_test:
            raise Exit(101, "error: test failed, to rerun pass `--bin scratch`")
        sys.stdout.write("test result: ok. 1 passed; 0 failed\n")
        return
    if os.environ.get("CARGO_NET_OFFLINE") != "true":
        raise Exit(101, "error: would need the network")
    if not has_test:
        raise Exit(4, "error: no tests to run")
    sys.stderr.write("     Summary [   0.004s] 1 test run: 1 passed, 0 skipped\n")
