"""Unit tests for the nvidia_container_runtime module glue, with a stand-in nvidia-ctk script.

The stand-in does what the real tool does to the files (adds runtimes.nvidia to daemon.json,
sets mode in config.toml) and records each call, so the module's read-decide-run-read-back flow
runs without a GPU.
"""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.raibid.dgx_spark.plugins.modules import nvidia_container_runtime

FAKE_CTK = r"""#!/usr/bin/env python3
import json, re, sys
args = sys.argv[1:]
with open(LOG, "a") as fh:
    fh.write(" ".join(args) + "\n")
if args[:2] == ["runtime", "configure"]:
    path = [a.split("=", 1)[1] for a in args if a.startswith("--config=")][0]
    try:
        data = json.load(open(path))
    except FileNotFoundError:
        data = {}
    data.setdefault("runtimes", {})["nvidia"] = {"args": [], "path": "nvidia-container-runtime"}
    if "--set-as-default" in args:
        data["default-runtime"] = "nvidia"
    json.dump(data, open(path, "w"), indent=4)
elif args[0] == "config" and not BROKEN:
    path = [a.split("=", 1)[1] for a in args if a.startswith("--config-file=")][0]
    mode = args[args.index("--set") + 1].split("=", 1)[1]
    text = open(path).read()
    text = re.sub(r'(?m)^mode = ".*"$', 'mode = "%s"' % mode, text)
    open(path, "w").write(text)
"""


def make_ctk(tmp_path, broken=False):
    log = tmp_path / "ctk.log"
    script = tmp_path / "nvidia-ctk"
    script.write_text(FAKE_CTK.replace("LOG", repr(str(log))).replace("BROKEN", str(broken)))
    script.chmod(0o755)
    return script, log


@pytest.fixture
def files(tmp_path):
    daemon = tmp_path / "daemon.json"
    toml = tmp_path / "config.toml"
    toml.write_text('[nvidia-container-runtime]\nlog-level = "info"\nmode = "auto"\n')
    return daemon, toml


def run(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        nvidia_container_runtime.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def test_registers_runtime_when_missing_and_keeps_other_keys(capsys, tmp_path, files):
    daemon, _toml = files
    daemon.write_text('{"live-restore": true}')
    ctk, log = make_ctk(tmp_path)
    code, result = run(capsys, {"runtime": True, "daemon_json": str(daemon), "nvidia_ctk_path": str(ctk)})
    assert code == 0, result
    assert result["changed"] is True and result["daemon_json_changed"] is True
    assert result["runtime_configured"] is True
    assert result["default_runtime"] == ""
    data = json.loads(daemon.read_text())
    assert data["live-restore"] is True and data["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    assert "--set-as-default" not in log.read_text()


def test_runtime_present_runs_nothing(capsys, tmp_path, files):
    daemon, _toml = files
    daemon.write_text(
        json.dumps({"default-runtime": "nvidia", "runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}})
    )
    ctk, log = make_ctk(tmp_path)
    code, result = run(capsys, {"runtime": True, "daemon_json": str(daemon), "nvidia_ctk_path": str(ctk)})
    assert code == 0
    assert result["changed"] is False
    assert result["default_runtime"] == "nvidia"
    assert not log.exists()


def test_set_as_default_when_asked(capsys, tmp_path, files):
    daemon, _toml = files
    daemon.write_text(json.dumps({"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}))
    ctk, log = make_ctk(tmp_path)
    code, result = run(
        capsys, {"runtime": True, "set_as_default": True, "daemon_json": str(daemon), "nvidia_ctk_path": str(ctk)}
    )
    assert code == 0, result
    assert result["default_runtime"] == "nvidia"
    assert "--set-as-default" in log.read_text()


def test_check_mode_runs_no_writing_command(capsys, tmp_path, files):
    daemon, toml = files
    ctk, log = make_ctk(tmp_path)
    args = {"runtime": True, "mode": "legacy", "daemon_json": str(daemon), "config_toml": str(toml)}
    code, result = run(capsys, {**args, "nvidia_ctk_path": str(ctk), "_ansible_check_mode": True})
    assert code == 0
    assert result["changed"] is True
    assert len(result["actions"]) == 2
    assert not log.exists()
    assert not daemon.exists()
    assert 'mode = "auto"' in toml.read_text()


def test_sets_mode_and_reads_it_back(capsys, tmp_path, files):
    _daemon, toml = files
    ctk, log = make_ctk(tmp_path)
    code, result = run(capsys, {"mode": "legacy", "config_toml": str(toml), "nvidia_ctk_path": str(ctk)})
    assert code == 0, result
    assert result["previous_mode"] == "auto" and result["mode"] == "legacy"
    assert result["daemon_json_changed"] is False
    assert "nvidia-container-runtime.mode=legacy" in log.read_text()
    code, result = run(capsys, {"mode": "legacy", "config_toml": str(toml), "nvidia_ctk_path": str(ctk)})
    assert result["changed"] is False


def test_fails_when_mode_does_not_read_back(capsys, tmp_path, files):
    _daemon, toml = files
    ctk, _log = make_ctk(tmp_path, broken=True)
    code, result = run(capsys, {"mode": "cdi", "config_toml": str(toml), "nvidia_ctk_path": str(ctk)})
    assert code == 1
    assert "reads back auto" in result["msg"]


def test_missing_nvidia_ctk_names_the_option(capsys, tmp_path):
    code, result = run(capsys, {"mode": "legacy", "nvidia_ctk_path": str(tmp_path / "none")})
    assert code == 1
    assert result["msg"].startswith("nvidia_ctk_path:")
