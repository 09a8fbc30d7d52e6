"""Unit tests for module_utils/agent_image.py: metadata checks, the probe script and its output, health parsing."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils.agent_image import (
    ALWAYS_TOOLS,
    CARGO_CHECKS,
    DEFAULT_TOOLS,
    EXPECTED_ENV,
    REQUIRED_LABELS,
    HealthReport,
    ImageInfo,
    Probe,
    ProbeResult,
    at_or_above,
    cargo_probes,
    check_metadata,
    docker_arch,
    evaluate_probe,
    exec_argv,
    failure_message,
    find_version,
    health_check,
    missing_reason,
    parse_check_lines,
    parse_health,
    parse_health_text,
    parse_inspect,
    parse_tools_manifest,
    probe_checks,
    quick_probes,
    render_script,
    reports_version,
    run_argv,
    summarize,
    tool_specs,
    validate_options,
    with_timeout,
)
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.fakes import agent_tools, stand_in

PINNED = {"cargo-nextest": "0.9.100", "cargo-audit": "0.21.2", "cargo-deny": "0.18.3"}
LABELS = {name: "x" for name in REQUIRED_LABELS} | {"raibid.agent.arch": "arm64"}
VERSION_OUTPUT = {
    "git": "git version 2.39.5",
    "git-lfs": "git-lfs/3.3.0 (GitHub; linux arm64; go 1.19.8)",
    "ssh": "OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024",
    "docker": "Docker version 28.2.2, build e6534b4",
    "docker-buildx": "github.com/docker/buildx v0.24.0 d0e5e86",
    "rustc": "rustc 1.85.0 (4d91de4e4 2025-02-17)",
    "cargo": "cargo 1.85.0 (d73d2caf9 2024-12-31)",
    "rustfmt": "rustfmt 1.8.0-stable (4d91de4e48 2025-02-17)",
    "clippy": "clippy 0.1.85 (4d91de4e48 2025-02-17)",
    "cargo-nextest": "cargo-nextest 0.9.100 (3c9f1ac 2025-06-20)",
    "cargo-audit": "cargo-audit-audit 0.21.2",
    "cargo-deny": "cargo-deny 0.18.3",
}
HEALTH_OK = {
    "status": "ok",
    "duration_ms": 412,
    "checks": [
        {"name": "cargo-nextest", "status": "ok", "value": "cargo-nextest 0.9.100", "message": "pinned version"},
        {"name": "workspace", "status": "ok", "value": "/workspace", "message": "writable"},
    ],
}


def tools_param():
    return [{"name": n, "version": v} for n, v in PINNED.items()]


def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def all_pass_results(probes, uid=1000, health=None):
    """The ProbeResults a healthy image gives for ``probes``."""
    results = {}
    for probe in probes:
        if probe.kind == "uid":
            results[probe.name] = ProbeResult(0, f"{uid}\n")
        elif probe.kind == "env":
            results[probe.name] = ProbeResult(0, EXPECTED_ENV[probe.name.split(":", 1)[1]] + "\n")
        elif probe.kind == "manifest":
            results[probe.name] = ProbeResult(0, "".join(f"{n} {v}\n" for n, v in PINNED.items()))
        elif probe.kind == "tool":
            results[probe.name] = ProbeResult(0, VERSION_OUTPUT[probe.name.split(":", 1)[1]] + "\n")
        elif probe.kind == "writable":
            results[probe.name] = ProbeResult(0, "writable\n")
        elif probe.kind == "health":
            results[probe.name] = ProbeResult(0, json.dumps(health or HEALTH_OK) + "\n")
        elif probe.kind == "setup":
            results[probe.name] = ProbeResult(0, "    Creating binary (application) `scratch` package\n")
        elif probe.name == "cargo-build-release":
            results[probe.name] = ProbeResult(0, "   Compiling scratch v0.1.0\n    Finished `release` profile\n")
        elif probe.name == "cargo-test":
            results[probe.name] = ProbeResult(
                0, "running 1 test\ntest tests::adds ... ok\n\ntest result: ok. 1 passed\n"
            )
        else:
            results[probe.name] = ProbeResult(0, "     Summary [0.01s] 1 test run: 1 passed, 0 skipped\n")
    return results


def as_stdout(results):
    return "".join(f"RAIBID_CHECK {n} {r.rc} {encoded(r.output)}\n" for n, r in results.items()) + "RAIBID_DONE\n"


def image_info(**overrides):
    info = ImageInfo(image_id="sha256:" + "a" * 64, architecture="arm64", os="linux", size_bytes=900 * 1024 * 1024)
    info.labels = dict(LABELS)
    for key, value in overrides.items():
        setattr(info, key, value)
    return info


def run_everything(results_override=None, info=None):
    probes = quick_probes(1000, EXPECTED_ENV, tool_specs(tools_param()), ["/workspace", "/home/agent/.cargo"])
    results = all_pass_results(probes)
    results.update(results_override or {})
    parsed, done = parse_check_lines(as_stdout(results))
    manifest = parse_tools_manifest(parsed["manifest:tools"].output)
    checks = check_metadata(info or image_info(), "arm64", 1536, REQUIRED_LABELS, {})
    checks += probe_checks(probes, parsed, missing_reason(0, "", done, False, 600), manifest)
    cargo = cargo_probes()
    checks += probe_checks(cargo, all_pass_results(cargo), "unused")
    return checks


def by_name(checks):
    return {c.name: c for c in checks}


def test_every_check_passes_on_a_healthy_image():
    checks = run_everything()
    names = [c.name for c in checks]
    assert names[:2] == ["architecture", "size"]
    assert [n for n in names if n.startswith("label:")] == [f"label:{n}" for n in REQUIRED_LABELS]
    assert "uid" in names and [n for n in names if n.startswith("env:")] == [f"env:{n}" for n in EXPECTED_ENV]
    assert [n for n in names if n.startswith("tool:")] == [f"tool:{n}" for n in [*ALWAYS_TOOLS, *PINNED]]
    assert names[-4:] == ["health", *CARGO_CHECKS]
    assert [c for c in checks if c.status != "ok"] == []
    summary = summarize(checks)
    assert summary["failed"] == 0 and summary["passed"] == len(checks) == 34
    assert by_name(checks)["tool:cargo-nextest"].value.startswith("cargo-nextest 0.9.100")


def test_a_missing_tool_fails_alone():
    checks = run_everything({"tool:cargo-audit": ProbeResult(127, "sh: 1: cargo: not found\n")})
    failed = [c for c in checks if c.status == "fail"]
    assert [c.name for c in failed] == ["tool:cargo-audit"]
    assert "not found" in failed[0].message and "cargo audit --version" in failed[0].message
    assert by_name(checks)["tool:cargo-deny"].status == "ok"
    assert "tool:cargo-audit: cargo-audit: `cargo audit --version` not found" in failure_message("img", checks)


def test_a_wrong_version_names_tool_expected_and_found():
    checks = run_everything({"tool:cargo-nextest": ProbeResult(0, "cargo-nextest 0.9.99 (x 2025-01-01)\n")})
    check = by_name(checks)["tool:cargo-nextest"]
    assert check.status == "fail"
    assert check.message == "cargo-nextest: expected 0.9.100, found 0.9.99"


def test_pinned_version_comes_from_the_image_manifest_when_not_given():
    probe = Probe("tool:cargo-deny", "tool", "cargo deny --version", "")
    good = evaluate_probe(probe, ProbeResult(0, "cargo-deny 0.18.3\n"), manifest=PINNED)
    bad = evaluate_probe(probe, ProbeResult(0, "cargo-deny 0.18.2\n"), manifest=PINNED)
    unpinned = evaluate_probe(probe, ProbeResult(0, "cargo-deny 0.18.2\n"), manifest={})
    assert good.status == "ok" and unpinned.status == "ok"
    assert (
        bad.status == "fail"
        and bad.message == "cargo-deny: expected 0.18.3 (pinned in /usr/local/share/raibid-agent/tools), found 0.18.2"
    )


def test_option_and_manifest_disagreeing_warns():
    probe = Probe("tool:cargo-deny", "tool", "cargo deny --version", "0.18.3")
    check = evaluate_probe(probe, ProbeResult(0, "cargo-deny 0.18.3\n"), manifest={"cargo-deny": "0.18.1"})
    assert check.status == "warn" and "lists 0.18.1" in check.message


@pytest.mark.parametrize(
    ("output", "expected", "matches"),
    [
        ("cargo-nextest 0.9.100 (abc 2025-06-20)", "0.9.100", True),
        ("cargo-nextest 0.9.1000", "0.9.100", False),
        ("cargo-nextest 10.9.100", "0.9.100", False),
        ("x 0.9.100.1", "0.9.100", False),
        ("rustfmt 1.8.0-stable (x)", "1.8.0", True),
        ("github.com/docker/buildx v0.24.0 d0e5e86", "0.24.0", True),
        ("github.com/docker/buildx v0.24.0 d0e5e86", "v0.24.0", True),
        ("OpenSSH_9.2p1 Debian-2", "9.2p1", True),
    ],
)
def test_version_tokens(output, expected, matches):
    assert reports_version(output, expected) is matches


def test_find_version():
    assert [find_version(VERSION_OUTPUT[n]) for n in ("git-lfs", "ssh", "docker", "docker-buildx", "rustfmt")] == [
        "3.3.0",
        "9.2p1",
        "28.2.2",
        "0.24.0",
        "1.8.0-stable",
    ]


def test_missing_label_and_wrong_expected_label():
    labels = dict(LABELS)
    del labels["org.opencontainers.image.revision"]
    labels["org.opencontainers.image.licenses"] = " "
    checks = by_name(
        check_metadata(image_info(labels=labels), "arm64", 1536, REQUIRED_LABELS, {"raibid.agent.type": "rust"})
    )
    assert (
        checks["label:org.opencontainers.image.revision"].message
        == "label org.opencontainers.image.revision is missing"
    )
    assert checks["label:org.opencontainers.image.licenses"].message.endswith("is empty")
    assert checks["label:raibid.agent.type"].message == "label raibid.agent.type is 'x', expected 'rust'"
    assert checks["label:org.opencontainers.image.title"].status == "ok"


def test_arch_label_must_agree_with_the_image():
    labels = dict(LABELS, **{"raibid.agent.arch": "amd64"})
    checks = by_name(check_metadata(image_info(labels=labels), "arm64", 1536, REQUIRED_LABELS, {}))
    assert checks["label:raibid.agent.arch"].status == "fail"
    assert checks["label:raibid.agent.arch"].message == "label raibid.agent.arch says amd64, the image is arm64"
    labels["raibid.agent.arch"] = "aarch64"
    assert (
        by_name(check_metadata(image_info(labels=labels), "arm64", 1536, REQUIRED_LABELS, {}))[
            "label:raibid.agent.arch"
        ].status
        == "ok"
    )


def test_size_over_budget():
    checks = by_name(check_metadata(image_info(size_bytes=2000 * 1024 * 1024), "arm64", 1536, [], {}))
    assert checks["size"].status == "fail" and checks["size"].value == "2000.0 MiB"
    assert checks["size"].message == "2000.0 MiB exceeds the budget of 1536 MiB by 464.0 MiB"


def test_wrong_architecture():
    checks = by_name(check_metadata(image_info(), "x86_64", 1536, [], {}))
    assert checks["architecture"].status == "fail"
    assert checks["architecture"].message == "image is arm64, node needs amd64"


@pytest.mark.parametrize(
    ("machine", "arch"), [("x86_64", "amd64"), ("aarch64", "arm64"), ("arm64", "arm64"), ("riscv64", "riscv64")]
)
def test_docker_arch(machine, arch):
    assert docker_arch(machine) == arch


def test_parse_inspect():
    text = json.dumps(
        [
            {
                "Id": "sha256:abc",
                "Architecture": "arm64",
                "Variant": "v8",
                "Os": "linux",
                "Size": 1572864000,
                "Config": {
                    "User": "agent",
                    "Env": ["PATH=/usr/bin", "CARGO_HOME=/home/agent/.cargo", "EMPTY="],
                    "Entrypoint": ["/usr/bin/tini", "--"],
                    "WorkingDir": "/workspace",
                    "Labels": {"raibid.agent.type": "rust"},
                },
            }
        ]
    )
    info = parse_inspect(text)
    assert (info.image_id, info.architecture, info.variant, info.size_mb) == ("sha256:abc", "arm64", "v8", 1500.0)
    assert info.env["CARGO_HOME"] == "/home/agent/.cargo" and info.env["EMPTY"] == ""
    assert info.entrypoint == ["/usr/bin/tini", "--"] and info.labels == {"raibid.agent.type": "rust"}
    with pytest.raises(ValueError):
        parse_inspect("[]")
    with pytest.raises(ValueError):
        parse_inspect("not json")


def test_uid_env_and_writable_failures():
    probes = quick_probes(1000, EXPECTED_ENV, [], ["/workspace"], health=False)
    results = all_pass_results(probes)
    results["uid"] = ProbeResult(0, "0\n")
    results["env:CARGO_HOME"] = ProbeResult(1, "")
    results["env:CARGO_INCREMENTAL"] = ProbeResult(0, "0\n")
    results["writable:/workspace"] = ProbeResult(
        2, "sh: 1: cannot create /workspace/.raibid-verify-7: Permission denied\n"
    )
    checks = by_name(probe_checks(probes, results, "unused"))
    assert checks["uid"].message == "runs as uid 0, expected 1000"
    assert checks["env:CARGO_HOME"].message == "CARGO_HOME is not set, expected '/home/agent/.cargo'"
    assert checks["env:CARGO_INCREMENTAL"].message == "CARGO_INCREMENTAL is '0', expected '1'"
    assert "Permission denied" in checks["writable:/workspace"].message
    assert checks["env:RUST_BACKTRACE"].status == "ok"


def test_probes_without_a_result_fail_with_the_reason():
    probes = quick_probes(1000, EXPECTED_ENV, tool_specs([]), ["/workspace"])
    reason = missing_reason(125, "docker: Error response from daemon: no such image\n", False, False, 600)
    checks = probe_checks(probes, {}, reason)
    assert {c.status for c in checks} == {"fail"} and len(checks) == 1 + 4 + 9 + 1 + 1
    assert checks[0].message == "docker run ended early (rc=125): docker: Error response from daemon: no such image"
    assert missing_reason(124, "", False, True, 30) == "the container run timed out after 30 s"


def test_cargo_checks_fail_together_when_the_scratch_crate_cannot_be_made():
    probes = cargo_probes()
    results = all_pass_results(probes)
    results["cargo-new"] = ProbeResult(101, "error: could not create directory\n")
    checks = probe_checks(probes, results, "unused")
    assert [c.name for c in checks] == CARGO_CHECKS
    assert all(c.status == "fail" and c.message.startswith("no scratch crate: `") for c in checks)


def test_cargo_check_needs_its_marker():
    probes = cargo_probes()
    results = all_pass_results(probes)
    results["cargo-test"] = ProbeResult(0, "running 0 tests\n")
    results["cargo-nextest-run"] = ProbeResult(4, "error: no tests to run\n")
    checks = by_name(probe_checks(probes, results, "unused"))
    assert "did not print 'test result: ok'" in checks["cargo-test"].message
    assert (
        "failed (rc=4)" in checks["cargo-nextest-run"].message
        and "no tests to run" in checks["cargo-nextest-run"].message
    )
    assert checks["cargo-build-release"].status == "ok"


def test_health_json_with_a_failing_check():
    health = {
        "status": "fail",
        "duration_ms": 98,
        "checks": [
            {"name": "cargo-nextest", "status": "ok", "value": "cargo-nextest 0.9.100", "message": ""},
            {"name": "cargo-audit", "status": "fail", "value": "", "message": "not on PATH"},
            {"name": "disk", "status": "warn", "value": "3 GiB", "message": "low"},
        ],
    }
    report = parse_health(json.dumps(health), 1)
    assert (report.effective_status, report.failing, report.warnings) == ("fail", ["cargo-audit"], ["disk"])
    assert report.parse_error == "" and report.duration_ms == 98
    check = health_check(report)
    assert check.status == "fail" and check.message == "cargo-audit: not on PATH; warnings: disk: low"


def test_health_exit_code_is_never_trusted_alone():
    lying = dict(HEALTH_OK, checks=[{"name": "x", "status": "fail", "value": "", "message": "broken"}])
    assert parse_health(json.dumps(lying), 0).effective_status == "fail"
    report = parse_health(json.dumps(HEALTH_OK), 1)
    assert report.effective_status == "fail" and "exited 1 but reported status ok" in report.parse_error
    assert parse_health(json.dumps(HEALTH_OK), 0).effective_status == "ok"


def test_health_json_after_log_lines():
    report = parse_health("2026-01-01T00:00:00Z INFO starting\n" + json.dumps(HEALTH_OK) + "\n", 0)
    assert report.source == "json" and report.effective_status == "ok" and len(report.checks) == 2


def test_unparseable_health_output_fails():
    report = parse_health("Segmentation fault (core dumped)\n", 139)
    assert report.effective_status == "fail" and report.source == "none"
    assert "printed no JSON" in report.parse_error and "Segmentation fault" in report.parse_error
    assert health_check(report).status == "fail"


def test_health_json_missing_fields_is_a_parse_problem():
    report = parse_health(json.dumps({"status": "great", "duration_ms": "1", "checks": [{"status": "ok"}]}), 0)
    assert report.effective_status == "fail"
    assert "status is 'great'" in report.parse_error and "duration_ms" in report.parse_error
    assert "checks[0] has no name" in report.parse_error


def test_text_fallback_reads_the_check_lines_and_still_fails():
    text = (
        "✓ cargo-nextest: cargo-nextest 0.9.100\n"
        "! disk: 3 GiB free\n"
        "✗ cargo-audit: not on PATH\n"
        "Health check FAILED (1 failed, 1 warning)\n"
    )
    report = parse_health(text, 1)
    assert report.source == "text" and report.status == "fail" and report.summary.startswith("Health check FAILED")
    assert report.failing == ["cargo-audit"] and report.warnings == ["disk"]
    assert "read 3 check lines of the text form" in report.parse_error
    assert health_check(report).status == "fail"
    passed = parse_health_text("✓ a: fine\n! b: meh\nHealth check PASSED\n")
    assert passed.status == "warn" and [c["name"] for c in passed.checks] == ["a", "b"]


def test_health_not_found():
    report = parse_health("sh: 1: raibid-agent: not found\n", 127)
    assert report.parse_error.startswith("raibid-agent not found") and report.effective_status == "fail"


def test_fail_on_threshold():
    assert at_or_above("fail", "fail") and not at_or_above("warn", "fail")
    assert at_or_above("warn", "warn") and not at_or_above("ok", "warn")
    assert not at_or_above("fail", "never")
    assert HealthReport().effective_status == "fail"


def test_check_lines_ignore_noise_and_keep_empty_output():
    stdout = "tini: warning\nRAIBID_CHECK uid 0 MTAwMAo=\nRAIBID_CHECK env:X 1 \nRAIBID_CHECK bad x y\ngarbage\n"
    results, done = parse_check_lines(stdout)
    assert results["uid"] == ProbeResult(0, "1000\n") and results["env:X"] == ProbeResult(1, "")
    assert "bad" not in results and done is False
    assert parse_check_lines("RAIBID_DONE\n")[1] is True


def test_script_contains_every_tool_and_check():
    specs = tool_specs(
        [*tools_param(), {"name": "sccache", "version": "0.8.1"}, {"name": "rustc", "version": "1.85.0"}]
    )
    assert [s["name"] for s in specs] == [*ALWAYS_TOOLS, *PINNED, "sccache"]
    assert next(s for s in specs if s["name"] == "rustc")["version"] == "1.85.0"
    script = render_script(quick_probes(1000, EXPECTED_ENV, specs, ["/workspace", "/home/agent/.cargo"]))
    for spec in specs:
        assert f"raibid_check tool:{spec['name']} " in script, spec
        assert spec["command"] in script
    for name in ["uid", "env:CARGO_HOME", "writable:/workspace", "writable:/home/agent/.cargo", "health"]:
        assert f"raibid_check {name} " in script
    assert "cargo nextest --version" in script and "sccache --version" in script
    assert "raibid-agent health --json" in script and script.rstrip().endswith("exit 0")
    cargo = render_script(cargo_probes(), cargo=True)
    for word in ("cargo new --vcs none scratch", "cargo build --release", "cargo test", "cargo nextest run"):
        assert word in cargo
    assert "CARGO_NET_OFFLINE=true" in cargo and "#[test]" in cargo


def test_validate_options():
    params = {
        "image": "",
        "tools": [{"name": "a b"}, {"name": "x"}, {"name": "x"}],
        "writable_dirs": ["relative", "/with space"],
        "expected_env": {"1BAD": "x"},
        "required_labels": [],
        "expected_labels": {},
        "size_budget_mb": 0,
        "timeout": 600,
    }
    errors = validate_options(params)
    assert errors[0] == "image: give an image reference or ID"
    assert "tools[0].name: 'a b' must be a tool name without spaces" in errors
    assert "tools[2].name: x is given twice" in errors
    assert sum("writable_dirs" in e for e in errors) == 2
    assert "expected_env: '1BAD' is not an environment variable name" in errors
    assert any(e.startswith("size_budget_mb: 0") for e in errors)
    good = dict(params, image="i", tools=DEFAULT_TOOLS, writable_dirs=["/workspace"], expected_env={}, size_budget_mb=1)
    assert validate_options(good) == []


def test_argv_keeps_the_entrypoint_and_puts_no_env_values_on_the_command_line():
    argv = run_argv("docker", "img:1", ["raibid-agent", "health", "--json"], name="n", env_names=["TOKEN"])
    assert argv == [
        "docker", "run", "--rm", "--pull", "never", "--network", "none", "--name", "n", "--env", "TOKEN",
        "img:1", "raibid-agent", "health", "--json",
    ]  # fmt: skip
    assert "--entrypoint" not in argv
    assert exec_argv("docker", "c1", ["true"], ["A"]) == ["docker", "exec", "--env", "A", "c1", "true"]
    assert with_timeout(["docker"], "/usr/bin/timeout", 0.4) == ["/usr/bin/timeout", "--kill-after=10", "1", "docker"]
    assert with_timeout(["docker"], None, 5) == ["docker"]


# The generated script, run for real by each POSIX shell on this host against the stand-in tools of
# fakes/agent_tools.py (they refuse arguments the real tools refuse).
SHELLS = [s for s in ("dash", "busybox", "bash") if shutil.which(s)]


def run_script(shell, script, bin_dir, tmp_path):
    argv = [shutil.which(shell), *(["sh"] if shell == "busybox" else []), "-c", script]
    env = {**EXPECTED_ENV, "PATH": str(bin_dir), "TMPDIR": str(tmp_path)}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.skipif(not SHELLS, reason="no POSIX shell on this host")
@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("missing", [(), ("cargo-audit",)])
def test_generated_script_runs_in_posix_shells(tmp_path, shell, missing):
    bin_dir = tmp_path / "bin"
    stand_in.install_agent_tools(bin_dir, missing)
    writable = [str(tmp_path / "workspace"), str(tmp_path / "ro")]
    os.mkdir(writable[0])
    os.mkdir(writable[1], 0o500)
    probes = quick_probes(os.getuid(), EXPECTED_ENV, tool_specs(tools_param()), writable)
    proc = run_script(shell, render_script(probes), bin_dir, tmp_path)
    results, done = parse_check_lines(proc.stdout)
    assert done, proc.stderr
    checks = by_name(probe_checks(probes, results, "missing"))
    failing = sorted(n for n, c in checks.items() if c.status == "fail")
    # root may write anywhere; anyone else must be refused the 0500 directory
    expected = sorted([f"writable:{writable[1]}"] * (os.getuid() != 0) + [f"tool:{m}" for m in missing])
    assert failing == expected, {n: checks[n].message for n in failing}
    assert checks["health"].status == "ok" and checks["tool:ssh"].value.startswith("OpenSSH_9.2p1")
    if missing:
        assert "no such command: `audit`" in checks["tool:cargo-audit"].message

    cargo = cargo_probes()
    proc = run_script(shell, render_script(cargo, cargo=True), bin_dir, tmp_path)
    results, done = parse_check_lines(proc.stdout)
    checks = probe_checks(cargo, results, "missing")
    assert done and [(c.name, c.status) for c in checks] == [(n, "ok") for n in CARGO_CHECKS], checks


@pytest.mark.parametrize(
    ("tool", "argv"),
    [
        ("ssh", ["--version"]),
        ("git", ["lfs", "--versions"]),
        ("rustc", ["--vers"]),
        ("cargo", ["new", "--vcs", "svn", "scratch"]),
        ("cargo", ["build", "--release-mode"]),
        ("cargo-nextest", ["nextest", "run", "--offline", "extra"]),
        ("raibid-agent", ["health", "--format=json"]),
    ],
)
def test_stand_in_tools_refuse_what_the_real_ones_refuse(tmp_path, tool, argv):
    bin_dir = stand_in.install_agent_tools(tmp_path / "bin")
    proc = subprocess.run([str(bin_dir / tool), *argv], capture_output=True, text=True, check=False)
    assert proc.returncode == agent_tools.REFUSAL_RC.get(tool, 2) != 0 and "error:" in proc.stderr, proc.stderr


def test_every_probe_command_is_one_the_tools_accept():
    """ALWAYS_TOOLS and the pinned tools' version commands, as tool_command builds them, in the stand-ins' terms."""
    for spec in tool_specs(tools_param()):
        words = spec["command"].split()
        tool, argv = words[0], words[1:]
        if tool == "cargo" and argv[0] not in ("new", "build", "test") and not argv[0].startswith("-"):
            tool = "cargo-" + argv[0]
        agent_tools.check_argv(tool, argv)
