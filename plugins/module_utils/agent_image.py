# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)
"""Pure logic of the agent_image_verify and agent_healthcheck modules.

The verify module reads the image's metadata from one ``docker image inspect`` and runs everything
else inside the image, in as few ``docker run --rm`` as it can: a POSIX ``sh`` script generated here
runs each probe in its own ``sh -c`` and prints one line per probe,

    RAIBID_CHECK <name> <rc> <base64 of the probe's stdout and stderr>

so one missing tool fails its own check and hides nothing else. Parsing those lines, the health JSON
of ``raibid-agent health --json`` (with its text output as a fallback) and evaluating everything
against the expectations happens here, without Ansible, so it is unit-tested directly.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

OK, WARN, FAIL = "ok", "warn", "fail"
SEVERITY = {OK: 0, WARN: 1, FAIL: 2}

CHECK_PREFIX = "RAIBID_CHECK"
DONE_MARKER = "RAIBID_DONE"

OCI_LABELS = [
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.created",
    "org.opencontainers.image.source",
    "org.opencontainers.image.licenses",
]
ARCH_LABEL = "raibid.agent.arch"
REQUIRED_LABELS = [*OCI_LABELS, "raibid.agent.type", ARCH_LABEL]
EXPECTED_ENV = {
    "RUST_BACKTRACE": "1",
    "CARGO_HOME": "/home/agent/.cargo",
    "CARGO_TARGET_DIR": "/workspace/target",
    "CARGO_INCREMENTAL": "1",
}
WRITABLE_DIRS = ["/workspace", "/home/agent/.cargo"]
EXPECTED_UID = 1000
SIZE_BUDGET_MB = 1536
# The file in the image that lists the pinned cargo tools, one "name version" a line.
TOOLS_MANIFEST = "/usr/local/share/raibid-agent/tools"

# How each tool states its version. Checked in every image, whatever the tools option says.
ALWAYS_TOOLS: Dict[str, str] = {
    "git": "git --version",
    "git-lfs": "git lfs version",
    "ssh": "ssh -V",
    "docker": "docker --version",
    "docker-buildx": "docker buildx version",
    "rustc": "rustc --version",
    "cargo": "cargo --version",
    "rustfmt": "rustfmt --version",
    "clippy": "cargo clippy --version",
}
# The pinned cargo tools checked when the tools option is left at its default; their versions come
# from the image's own manifest (TOOLS_MANIFEST) unless the option names them.
PINNED_TOOLS = ["cargo-nextest", "cargo-audit", "cargo-deny"]
DEFAULT_TOOLS: List[Dict[str, Any]] = [{"name": name} for name in PINNED_TOOLS]

CARGO_CHECKS = ["cargo-build-release", "cargo-test", "cargo-nextest-run"]
HEALTH_COMMAND = ["raibid-agent", "health", "--json"]

# Docker's architecture names for what platform.machine() / uname -m says.
_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "x64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv8l": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}
# Names the probes and their output lines can carry: no whitespace (the line is space-separated).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+@:/-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# First version-looking token: 1.85.0, 0.9.100, 9.2p1 (OpenSSH_9.2p1), 1.8.0-stable, v0.24.0.
_VERSION = re.compile(r"(?<![\d.])v?(\d+(?:\.\d+)+[0-9A-Za-z]*(?:[-+~][0-9A-Za-z][0-9A-Za-z.+~-]*)?)")
_TEXT_CHECK = re.compile(r"^\s*(?P<mark>[✓✗!✔✘]|\[(?:ok|warn|fail)\])\s+(?P<name>[^:]+?)\s*:\s?(?P<message>.*)$")
_TEXT_MARKS = {"✓": OK, "✔": OK, "!": WARN, "✗": FAIL, "✘": FAIL}


@dataclass
class Check:
    """One verified property; ``status`` is ok, warn or fail."""

    name: str
    status: str
    value: str = ""
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def as_dict(self) -> Dict[str, str]:
        return asdict(self)


def docker_arch(machine: str) -> str:
    """Docker's name (amd64, arm64, ...) for a ``uname -m`` machine; unknown ones as given."""
    return _ARCH.get((machine or "").strip().lower(), (machine or "").strip().lower())


def worst(statuses: Iterable[str]) -> str:
    found = [s for s in statuses if s in SEVERITY]
    return max(found, key=SEVERITY.__getitem__) if found else OK


def at_or_above(status: str, threshold: str) -> bool:
    """Whether ``status`` reaches ``threshold`` (ok < warn < fail); ``never`` is never reached."""
    if threshold not in SEVERITY:
        return False
    return SEVERITY.get(status, SEVERITY[FAIL]) >= SEVERITY[threshold]


def is_env_name(name: str) -> bool:
    return bool(_ENV_NAME.match(name))


def first_line(text: str, limit: int = 200) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()[:limit]
    return ""


def find_version(text: str) -> str:
    match = _VERSION.search(text or "")
    return match.group(1) if match else ""


def reports_version(text: str, expected: str) -> bool:
    """Whether the tool output names ``expected`` as a whole version token (v-prefix allowed)."""
    expected = expected.strip().lstrip("v")
    if not expected:
        return True
    # Not inside a longer version: 0.9.100 is not in 0.9.1000 nor 10.9.100 nor 0.9.100.1; 1.8.0-stable counts.
    return re.search(r"(?<![\d.])v?" + re.escape(expected) + r"(?!\w)(?!\.\d)", text or "") is not None


# ---------------------------------------------------------------------------------------------------
# Options


def tool_command(name: str, command: Optional[str] = None) -> str:
    """The shell command that prints ``name``'s version: ``cargo-x`` as ``cargo x --version``."""
    if command:
        return command
    if name in ALWAYS_TOOLS:
        return ALWAYS_TOOLS[name]
    if name.startswith("cargo-"):
        return "cargo " + name[len("cargo-") :] + " --version"
    return shlex.quote(name) + " --version"


def tool_specs(tools: Sequence[Mapping[str, Any]]) -> List[Dict[str, str]]:
    """The always-checked tools, then the others of ``tools``, each {name, version, command}.

    A tool of ``tools`` that is also always checked keeps its place and gets the version (and command)
    given there.
    """
    given = {str(t["name"]): t for t in tools}
    specs = []
    for name in [*ALWAYS_TOOLS, *[n for n in given if n not in ALWAYS_TOOLS]]:
        spec = given.get(name) or {}
        version = spec.get("version")
        specs.append(
            {
                "name": name,
                "version": "" if version is None else str(version),
                "command": tool_command(name, spec.get("command")),
            }
        )
    return specs


def validate_options(params: Mapping[str, Any]) -> List[str]:
    """Errors naming the option, the rule and the value."""
    errors = []
    if not str(params.get("image") or "").strip():
        errors.append("image: give an image reference or ID")
    seen = set()
    for index, tool in enumerate(params.get("tools") or []):
        name = str(tool.get("name") or "")
        if not _NAME.match(name):
            errors.append(f"tools[{index}].name: {name!r} must be a tool name without spaces")
        elif name in seen:
            errors.append(f"tools[{index}].name: {name} is given twice")
        seen.add(name)
    for path in params.get("writable_dirs") or []:
        if not str(path).startswith("/") or not _NAME.match(str(path)[1:] or "x"):
            errors.append(f"writable_dirs: {path!r} must be an absolute path without spaces")
    for name in params.get("expected_env") or {}:
        if not is_env_name(str(name)):
            errors.append(f"expected_env: {name!r} is not an environment variable name")
    for name in [*(params.get("required_labels") or []), *(params.get("expected_labels") or {})]:
        if not _NAME.match(str(name)):
            errors.append(f"labels: {name!r} is not a label key this module can check (no spaces)")
    if (params.get("size_budget_mb") or 0) <= 0:
        errors.append(f"size_budget_mb: {params.get('size_budget_mb')} must be a positive number of MiB")
    if (params.get("timeout") or 0) <= 0:
        errors.append(f"timeout: {params.get('timeout')} must be a positive number of seconds")
    return errors


# ---------------------------------------------------------------------------------------------------
# Image metadata (docker image inspect)


@dataclass
class ImageInfo:
    image_id: str = ""
    architecture: str = ""
    variant: str = ""
    os: str = ""
    size_bytes: int = 0
    labels: Dict[str, str] = field(default_factory=dict)
    env: Dict[str, str] = field(default_factory=dict)
    user: str = ""
    entrypoint: List[str] = field(default_factory=list)
    workdir: str = ""
    repo_digests: List[str] = field(default_factory=list)

    @property
    def size_mb(self) -> float:
        return round(self.size_bytes / (1024 * 1024), 1)


def parse_inspect(text: str) -> ImageInfo:
    """``docker image inspect IMAGE`` output (a JSON list of one object); ValueError when unreadable."""
    data = json.loads(text)
    if isinstance(data, list):
        if not data:
            raise ValueError("docker image inspect returned an empty list")
        data = data[0]
    if not isinstance(data, dict):
        raise ValueError("docker image inspect returned no object")
    config = data.get("Config") or {}
    env = {}
    for item in config.get("Env") or []:
        key, _sep, value = str(item).partition("=")
        env[key] = value
    return ImageInfo(
        image_id=str(data.get("Id") or ""),
        architecture=str(data.get("Architecture") or ""),
        variant=str(data.get("Variant") or ""),
        os=str(data.get("Os") or ""),
        size_bytes=int(data.get("Size") or 0),
        labels={str(k): str(v) for k, v in (config.get("Labels") or {}).items()},
        env=env,
        user=str(config.get("User") or ""),
        entrypoint=[str(a) for a in config.get("Entrypoint") or []],
        workdir=str(config.get("WorkingDir") or ""),
        repo_digests=[str(d) for d in data.get("RepoDigests") or []],
    )


def check_metadata(
    info: ImageInfo,
    architecture: str,
    size_budget_mb: int,
    required_labels: Sequence[str],
    expected_labels: Mapping[str, Any],
) -> List[Check]:
    """architecture, size and label:<name> checks, from the image's metadata alone."""
    checks = []
    want = docker_arch(architecture)
    found = docker_arch(info.architecture)
    shown = found + (f"/{info.variant}" if info.variant else "")
    if found == want:
        checks.append(Check("architecture", OK, shown))
    else:
        checks.append(
            Check("architecture", FAIL, shown, f"image is {shown or 'of no stated architecture'}, node needs {want}")
        )

    if info.size_mb <= size_budget_mb:
        checks.append(Check("size", OK, f"{info.size_mb} MiB", f"within the budget of {size_budget_mb} MiB"))
    else:
        checks.append(
            Check(
                "size",
                FAIL,
                f"{info.size_mb} MiB",
                f"{info.size_mb} MiB exceeds the budget of {size_budget_mb} MiB "
                f"by {round(info.size_mb - size_budget_mb, 1)} MiB",
            )
        )

    names = list(dict.fromkeys([*required_labels, *expected_labels]))
    for name in names:
        value = info.labels.get(name)
        check = Check(f"label:{name}", OK, value or "")
        if value is None:
            check.status, check.message = FAIL, f"label {name} is missing"
        elif not value.strip():
            check.status, check.message = FAIL, f"label {name} is empty"
        elif name in expected_labels and value != str(expected_labels[name]):
            check.status, check.message = FAIL, f"label {name} is {value!r}, expected {str(expected_labels[name])!r}"
        elif name == ARCH_LABEL and docker_arch(value) != found:
            check.status, check.message = FAIL, f"label {name} says {value}, the image is {found}"
        checks.append(check)
    return checks


# ---------------------------------------------------------------------------------------------------
# In-container probes: script generation and parsing


@dataclass
class Probe:
    """One command the container runs; ``kind`` says how its (rc, output) is judged."""

    name: str
    kind: str
    command: str
    expected: str = ""


def quick_probes(
    expected_uid: int,
    expected_env: Mapping[str, Any],
    tools: Sequence[Mapping[str, str]],
    writable_dirs: Sequence[str],
    health: bool = True,
) -> List[Probe]:
    """uid, env:<NAME>, the tools manifest, tool:<name>, writable:<path> and health, in that order."""
    probes = [Probe("uid", "uid", "id -u", str(expected_uid))]
    for name, value in expected_env.items():
        # Parameter expansion, not printenv: no tool to miss, and set-but-empty differs from unset.
        command = f'if [ -n "${{{name}+set}}" ]; then printf "%s\\n" "${name}"; else exit 1; fi'
        probes.append(Probe(f"env:{name}", "env", command, str(value)))
    probes.append(Probe("manifest:tools", "manifest", f"cat {shlex.quote(TOOLS_MANIFEST)}"))
    for tool in tools:
        probes.append(Probe(f"tool:{tool['name']}", "tool", tool["command"], tool.get("version") or ""))
    for path in writable_dirs:
        quoted = shlex.quote(path)
        # Creating a file is the test that counts: -w says nothing about a read-only mount.
        command = (
            f"test -d {quoted} || {{ echo {shlex.quote(path + ' is not a directory')}; exit 2; }}; "
            f'f={quoted}/.raibid-verify-$$ && : > "$f" && rm -f "$f" && echo writable'
        )
        probes.append(Probe(f"writable:{path}", "writable", command))
    if health:
        probes.append(Probe("health", "health", " ".join(HEALTH_COMMAND)))
    return probes


# A trivial test so that cargo test and cargo nextest run have something to pass.
_SCRATCH_TEST = "\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() {\n        assert_eq!(2 + 2, 4);\n    }\n}\n"


def cargo_probes() -> List[Probe]:
    """A scratch crate without dependencies (no network needed), built, tested, and run by nextest."""
    crate = '"$RAIBID_SCRATCH/scratch"'
    setup = (
        'mkdir -p "$RAIBID_SCRATCH" && cd "$RAIBID_SCRATCH" && cargo new --vcs none scratch && '
        f"printf '%s' {shlex.quote(_SCRATCH_TEST)} >> scratch/src/main.rs"
    )
    return [
        Probe("cargo-new", "setup", setup),
        Probe("cargo-build-release", "cargo", f"cd {crate} && cargo build --release", "Finished"),
        Probe("cargo-test", "cargo", f"cd {crate} && cargo test", "test result: ok"),
        Probe("cargo-nextest-run", "cargo", f"cd {crate} && cargo nextest run", ""),
    ]


def render_script(probes: Sequence[Probe], cargo: bool = False) -> str:
    """A POSIX sh script (dash, busybox) printing one ``RAIBID_CHECK`` line per probe, then ``RAIBID_DONE``.

    Each probe runs in its own ``sh -c`` with stdin closed, so a failing or missing command affects
    nothing after it; its output is base64 without line breaks, so the line survives any output.
    """
    lines = [
        "# generated by raibid.dgx_spark agent_image_verify",
        "raibid_check() {",
        '  raibid_out=$(sh -c "$2" 2>&1 </dev/null)',
        "  raibid_rc=$?",
        "  printf '%s %s %s %s\\n' " + CHECK_PREFIX + ' "$1" "$raibid_rc" '
        "\"$(printf '%s' \"$raibid_out\" | base64 | tr -d '\\n\\r ')\"",
        "}",
    ]
    if cargo:
        # No dependencies: nothing to fetch, so the checks pass under --network none.
        lines += [
            "CARGO_NET_OFFLINE=true",
            "export CARGO_NET_OFFLINE",
            'RAIBID_SCRATCH="${TMPDIR:-/tmp}/raibid-verify-$$"',
            "export RAIBID_SCRATCH",
        ]
    for probe in probes:
        lines.append(f"raibid_check {shlex.quote(probe.name)} {shlex.quote(probe.command)}")
    lines += [f"echo {DONE_MARKER}", "exit 0", ""]
    return "\n".join(lines)


@dataclass
class ProbeResult:
    rc: int
    output: str


def parse_check_lines(stdout: str) -> Tuple[Dict[str, ProbeResult], bool]:
    """name -> (rc, output) of every well-formed ``RAIBID_CHECK`` line, and whether ``RAIBID_DONE`` came."""
    results: Dict[str, ProbeResult] = {}
    done = False
    for raw in (stdout or "").splitlines():
        line = raw.strip()
        if line == DONE_MARKER:
            done = True
            continue
        parts = line.split(" ")
        if len(parts) not in (3, 4) or parts[0] != CHECK_PREFIX:
            continue
        try:
            rc = int(parts[2])
            encoded = parts[3] if len(parts) == 4 else ""
            output = base64.b64decode(encoded, validate=True).decode("utf-8", "replace") if encoded else ""
        except ValueError:
            continue
        results[parts[1]] = ProbeResult(rc, output)
    return results, done


def parse_tools_manifest(text: str) -> Dict[str, str]:
    """``name version`` lines of the image's tools manifest (comments and blank lines skipped)."""
    manifest = {}
    for line in (text or "").splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) >= 2:
            manifest[parts[0]] = parts[1]
    return manifest


def _failed_command(probe: Probe, result: ProbeResult) -> str:
    what = "not found" if result.rc == 127 else f"failed (rc={result.rc})"
    detail = first_line(result.output)
    return f"`{probe.command}` {what}" + (f": {detail}" if detail else "")


def evaluate_probe(
    probe: Probe,
    result: Optional[ProbeResult],
    missing: str = "no result from the container",
    manifest: Optional[Mapping[str, str]] = None,
) -> Check:
    """The check for one probe; ``missing`` explains an absent result."""
    if result is None:
        return Check(probe.name, FAIL, "", missing)
    if probe.kind == "tool":
        return _evaluate_tool(probe, result, manifest or {})
    evaluate = _EVALUATORS.get(probe.kind)
    if evaluate is None:
        raise ValueError(f"no evaluation for probe kind {probe.kind}")
    return evaluate(probe, result)


def _evaluate_uid(probe: Probe, result: ProbeResult) -> Check:
    output = result.output.strip()
    if result.rc != 0:
        return Check(probe.name, FAIL, "", _failed_command(probe, result))
    if output != probe.expected:
        return Check(probe.name, FAIL, output, f"runs as uid {output}, expected {probe.expected}")
    return Check(probe.name, OK, output)


def _evaluate_env(probe: Probe, result: ProbeResult) -> Check:
    var = probe.name.split(":", 1)[1]
    if result.rc == 1:
        return Check(probe.name, FAIL, "", f"{var} is not set, expected {probe.expected!r}")
    if result.rc != 0:
        return Check(probe.name, FAIL, "", _failed_command(probe, result))
    value = result.output.rstrip("\n")
    if value != probe.expected:
        return Check(probe.name, FAIL, value, f"{var} is {value!r}, expected {probe.expected!r}")
    return Check(probe.name, OK, value)


def _evaluate_writable(probe: Probe, result: ProbeResult) -> Check:
    path = probe.name.split(":", 1)[1]
    if result.rc != 0:
        reason = first_line(result.output)
        return Check(probe.name, FAIL, "", f"{path} is not writable by the image's user: {reason}")
    return Check(probe.name, OK, "writable")


def _evaluate_cargo(probe: Probe, result: ProbeResult) -> Check:
    output = result.output.strip()
    if result.rc != 0:
        return Check(probe.name, FAIL, "", _failed_command(probe, result) + _tail(output))
    if probe.expected and probe.expected not in result.output:
        return Check(probe.name, FAIL, "", f"`{probe.command}` did not print {probe.expected!r}" + _tail(output))
    return Check(probe.name, OK, _last_line(output))


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def _tail(text: str, count: int = 5) -> str:
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()][-count:]
    return (" | " + " / ".join(lines))[:600] if lines else ""


def _evaluate_tool(probe: Probe, result: ProbeResult, manifest: Mapping[str, str]) -> Check:
    tool = probe.name.split(":", 1)[1]
    if result.rc != 0:
        return Check(probe.name, FAIL, "", f"{tool}: " + _failed_command(probe, result))
    output = result.output.strip()
    line = first_line(output)
    found = find_version(output)
    pinned = manifest.get(tool, "")
    expected = probe.expected or pinned
    source = "" if probe.expected else f" (pinned in {TOOLS_MANIFEST})"
    if expected and not reports_version(output, expected):
        return Check(
            probe.name, FAIL, line, f"{tool}: expected {expected}{source}, found {found or line or 'no version'}"
        )
    if probe.expected and pinned and pinned.lstrip("v") != probe.expected.lstrip("v"):
        return Check(probe.name, WARN, line, f"{tool} reports {probe.expected}, but {TOOLS_MANIFEST} lists {pinned}")
    return Check(probe.name, OK, line)


_EVALUATORS = {"uid": _evaluate_uid, "env": _evaluate_env, "writable": _evaluate_writable, "cargo": _evaluate_cargo}


def probe_checks(
    probes: Sequence[Probe],
    results: Mapping[str, ProbeResult],
    missing: str,
    manifest: Optional[Mapping[str, str]] = None,
) -> List[Check]:
    """Checks of every reportable probe (the manifest and cargo-new only inform the others)."""
    checks = []
    setup = next((p for p in probes if p.kind == "setup"), None)
    setup_result = results.get(setup.name) if setup else None
    for probe in probes:
        if probe.kind in ("manifest", "setup"):
            continue
        if probe.kind == "health":
            result = results.get(probe.name)
            if result is None:
                checks.append(Check(probe.name, FAIL, "", missing))
            else:
                checks.append(health_check(parse_health(result.output, result.rc)))
            continue
        if probe.kind == "cargo" and setup is not None:
            if setup_result is None:
                checks.append(Check(probe.name, FAIL, "", missing))
                continue
            if setup_result.rc != 0:
                reason = _failed_command(setup, setup_result)
                checks.append(Check(probe.name, FAIL, "", f"no scratch crate: {reason}"))
                continue
        checks.append(evaluate_probe(probe, results.get(probe.name), missing, manifest))
    return checks


def missing_reason(rc: int, stderr: str, done: bool, timed_out: bool, timeout: int) -> str:
    """Why probes of a container run have no result line."""
    if timed_out:
        return f"the container run timed out after {timeout} s"
    if done:
        return "the script printed no result for it"
    detail = first_line(_docker_error(stderr))
    return f"docker run ended early (rc={rc})" + (f": {detail}" if detail else "")


def _docker_error(stderr: str) -> str:
    lines = [ln for ln in (stderr or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or [""])[-1]


# ---------------------------------------------------------------------------------------------------
# Health output of raibid-agent


@dataclass
class HealthReport:
    """What ``raibid-agent health --json`` said; ``source`` is json, text or none."""

    status: str = FAIL
    duration_ms: Optional[int] = None
    checks: List[Dict[str, str]] = field(default_factory=list)
    source: str = "none"
    exit_code: Optional[int] = None
    parse_error: str = ""
    summary: str = ""

    @property
    def failing(self) -> List[str]:
        return [c["name"] for c in self.checks if c.get("status") == FAIL]

    @property
    def warnings(self) -> List[str]:
        return [c["name"] for c in self.checks if c.get("status") == WARN]

    @property
    def effective_status(self) -> str:
        """The worst of the reported status, every check's status and a parse problem (fail)."""
        if self.parse_error:
            return FAIL
        return worst([self.status, *[c.get("status", FAIL) for c in self.checks]])

    def as_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data.update(status=self.effective_status, reported_status=self.status)
        data.update(failing=self.failing, warning_checks=self.warnings)
        return data


def _json_document(text: str) -> Any:
    """The health JSON: the whole text, else the last line that is a JSON object (logs may precede it)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    for raw in reversed(text.splitlines()):
        line = raw.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    raise ValueError("no JSON object in the output")


def _validate_health(data: Any) -> Tuple[str, Optional[int], List[Dict[str, str]], List[str]]:
    problems = []
    if not isinstance(data, dict):
        return FAIL, None, [], ["the JSON is not an object"]
    status = data.get("status")
    if status not in SEVERITY:
        problems.append(f"status is {status!r}, not ok, warn or fail")
        status = FAIL
    duration = data.get("duration_ms")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int)):
        problems.append(f"duration_ms is {duration!r}, not an integer")
        duration = None
    checks = []
    raw_checks = data.get("checks")
    if not isinstance(raw_checks, list):
        problems.append("checks is not a list")
        raw_checks = []
    for index, item in enumerate(raw_checks):
        if not isinstance(item, dict) or not item.get("name"):
            problems.append(f"checks[{index}] has no name")
            continue
        item_status = item.get("status")
        if item_status not in SEVERITY:
            problems.append(f"checks[{index}] ({item['name']}) has status {item_status!r}")
            item_status = FAIL
        checks.append(
            {
                "name": str(item["name"]),
                "status": item_status,
                "value": "" if item.get("value") is None else str(item.get("value")),
                "message": "" if item.get("message") is None else str(item.get("message")),
            }
        )
    return status, duration, checks, problems


def parse_health_text(text: str) -> HealthReport:
    """The text form: ``✓ name: msg`` / ``! name: msg`` / ``✗ name: msg`` then ``Health check PASSED|FAILED``."""
    report = HealthReport(source="text")
    for line in (text or "").splitlines():
        stripped = line.strip()
        if stripped.startswith("Health check "):
            report.summary = stripped
            continue
        match = _TEXT_CHECK.match(line)
        if not match:
            continue
        mark = match.group("mark")
        status = _TEXT_MARKS.get(mark) or (mark.strip("[]") if mark.startswith("[") else FAIL)
        report.checks.append(
            {
                "name": match.group("name").strip(),
                "status": status,
                "value": "",
                "message": match.group("message").strip(),
            }
        )
    statuses = [c["status"] for c in report.checks]
    if report.summary.startswith("Health check FAILED"):
        statuses.append(FAIL)
    report.status = worst(statuses) if (report.checks or report.summary) else FAIL
    return report


def parse_health(output: str, rc: Optional[int] = None) -> HealthReport:
    """Parse ``raibid-agent health --json`` output; the exit code is checked against it, never trusted alone.

    When the output is not the expected JSON, the text form (``✓``/``!``/``✗`` lines) is read instead so the
    checks still show, and ``parse_error`` says what was wrong: the report then counts as failed.
    """
    text = output or ""
    try:
        data = _json_document(text)
    except ValueError as exc:
        report = parse_health_text(text)
        report.exit_code = rc
        if rc == 127:
            report.parse_error = "raibid-agent not found: " + first_line(text)
        else:
            parsed = (
                f"read {len(report.checks)} check lines of the text form instead"
                if report.checks
                else "no check lines either"
            )
            report.parse_error = f"health --json printed no JSON ({exc}; rc={rc}); {parsed}: {first_line(text, 120)!r}"
        if not report.checks:
            report.source = "none"
        return report
    status, duration, checks, problems = _validate_health(data)
    report = HealthReport(status=status, duration_ms=duration, checks=checks, source="json", exit_code=rc)
    if problems:
        report.parse_error = "health JSON does not follow the format: " + "; ".join(problems)
    elif rc is not None:
        failing = report.effective_status == FAIL
        if rc not in (0, 1):
            report.parse_error = f"raibid-agent health exited {rc} (0 or 1 expected): {first_line(text, 120)!r}"
        elif rc == 1 and not failing:
            report.parse_error = f"raibid-agent health exited 1 but reported status {report.effective_status}"
    return report


def health_message(report: HealthReport) -> str:
    parts = []
    if report.parse_error:
        parts.append(report.parse_error)
    for check in report.checks:
        if check["status"] == FAIL:
            parts.append(f"{check['name']}: {check['message'] or check['value'] or 'failed'}")
    warnings = [f"{c['name']}: {c['message'] or c['value'] or 'warning'}" for c in report.checks if c["status"] == WARN]
    if warnings:
        parts.append("warnings: " + "; ".join(warnings))
    return "; ".join(parts)


def health_check(report: HealthReport) -> Check:
    status = report.effective_status
    value = f"{status} ({len(report.checks)} checks" + (
        f", {report.duration_ms} ms)" if report.duration_ms is not None else ")"
    )
    return Check("health", status, value, health_message(report))


# ---------------------------------------------------------------------------------------------------
# Results


def summarize(checks: Sequence[Check]) -> Dict[str, Any]:
    failed = [c.name for c in checks if c.failed]
    return {
        "checks": [c.as_dict() for c in checks],
        "passed": sum(1 for c in checks if c.status == OK),
        "failed": len(failed),
        # Not "warnings": Ansible takes that key of a result for its own warnings.
        "warning_checks": [c.name for c in checks if c.status == WARN],
        "failed_checks": failed,
    }


def failure_message(image: str, checks: Sequence[Check]) -> str:
    failed = [c for c in checks if c.failed]
    listed = "; ".join(f"{c.name}: {c.message}" for c in failed)
    return f"{image}: {len(failed)} of {len(checks)} checks failed: {listed}"


def success_message(image: str, checks: Sequence[Check], duration_s: float) -> str:
    warned = [c.name for c in checks if c.status == WARN]
    text = f"{image}: all {len(checks)} checks passed in {duration_s} s"
    return text + (f" ({len(warned)} warnings: {', '.join(warned)})" if warned else "")


# ---------------------------------------------------------------------------------------------------
# Container invocation


def run_argv(
    docker: str,
    image: str,
    command: Sequence[str],
    *,
    network: Optional[str] = "none",
    name: str = "",
    env_names: Sequence[str] = (),
) -> List[str]:
    """``docker run --rm`` argv that keeps the image's ENTRYPOINT (tini stays PID 1) and never pulls.

    Environment values are not on the command line: ``-e NAME`` takes the value from docker's own
    environment, which the caller sets.
    """
    argv = [docker, "run", "--rm", "--pull", "never"]
    if network:
        argv += ["--network", network]
    if name:
        argv += ["--name", name]
    for env_name in env_names:
        argv += ["--env", env_name]
    return [*argv, image, *command]


def exec_argv(docker: str, container: str, command: Sequence[str], env_names: Sequence[str] = ()) -> List[str]:
    argv = [docker, "exec"]
    for env_name in env_names:
        argv += ["--env", env_name]
    return [*argv, container, *command]


def with_timeout(argv: Sequence[str], timeout_bin: Optional[str], seconds: int) -> List[str]:
    """argv under coreutils ``timeout`` (exit 124 when it fires), or as is where there is none."""
    if not timeout_bin:
        return list(argv)
    return [timeout_bin, "--kill-after=10", str(max(1, int(seconds))), *argv]


def timed_out(rc: int, timeout_bin: Optional[str]) -> bool:
    return bool(timeout_bin) and rc in (124, 137)
