"""Unit tests for the docker_daemon_config module glue: merge, backup, check mode, refusal paths.

dockerd is the stand-in of fakes/dockerd.py: it refuses flags dockerd 26 to 29 does not have, records
its arguments and rejects a candidate containing "BAD", so the module's real write/validate/refuse flow
runs without a Docker engine, on command lines the real dockerd takes.
"""

from __future__ import annotations

import functools
import json
import os
import stat
import subprocess

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils import docker_daemon
from ansible_collections.raibid.dgx_spark.plugins.modules import docker_daemon_config
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.fakes import dockerd as fake_dockerd
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.fakes import stand_in
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.modules.module_runner import shown

DGX_DAEMON = {"default-runtime": "nvidia", "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}}
UNIT = ["/usr/bin/dockerd", "-H", "fd://", "--default-shm-size=1G"]


@pytest.fixture
def run(run_module):
    return functools.partial(run_module, docker_daemon_config)


@pytest.fixture
def dockerd(tmp_path):
    """The stand-in dockerd and its call log."""
    log = tmp_path / "dockerd.log"
    script = stand_in.install(
        tmp_path / "dockerd", "dockerd", log=str(log), reject="BAD", flags=fake_dockerd.real_flags()
    )
    return script, log


@pytest.fixture
def old_dockerd(tmp_path):
    return stand_in.install(tmp_path / "dockerd-20", "dockerd", entry="old_main")


def base_args(path, dockerd_path, **extra):
    args = {"path": str(path), "dockerd_path": str(dockerd_path), "exec_start": UNIT}
    args.update(extra)
    return args


def test_merges_keeps_foreign_keys_backs_up_and_validates(run, tmp_path, dockerd):
    script, log = dockerd
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(DGX_DAEMON))
    path.chmod(0o640)
    settings = {"live-restore": True, "features": {"containerd-snapshotter": True}}
    code, result = run({**base_args(path, script), "settings": settings, "_ansible_diff": True})
    assert code == 0, result
    assert result["changed"] is True
    assert result["changed_keys"] == ["features.containerd-snapshotter", "live-restore"]
    assert result["reload_keys"] == ["live-restore"]
    assert result["restart_keys"] == ["features.containerd-snapshotter"]
    assert result["settings_applied"] is True and result["mismatches"] == []
    written = json.loads(path.read_text())
    assert written == {**DGX_DAEMON, **settings}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    backup = result["backup_file"]
    assert json.loads(open(backup).read()) == DGX_DAEMON
    # dockerd saw the candidate together with the unit's own flags.
    ((validate, config_file, candidate, *unit_flags),) = stand_in.calls(log)
    assert (validate, config_file) == ("--validate", "--config-file") and candidate != str(path)
    assert unit_flags == ["-H", "fd://", "--default-shm-size=1G"]
    assert '"live-restore": true' in result["diff"]["after"]
    assert '"live-restore"' not in result["diff"]["before"]


def test_unchanged_content_is_not_rewritten(run, tmp_path, dockerd):
    script, log = dockerd
    path = tmp_path / "daemon.json"
    path.write_text('{"live-restore":true,"default-runtime":"nvidia"}')  # compact: formatting alone is no change
    before = path.stat().st_mtime_ns
    code, result = run({**base_args(path, script), "settings": {"live-restore": True}})
    assert code == 0
    assert result["changed"] is False
    assert path.stat().st_mtime_ns == before
    assert stand_in.calls(log) == []
    assert result["validation"]["skipped"] == "no change"


def test_check_mode_validates_but_writes_nothing(run, tmp_path, dockerd):
    script, log = dockerd
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(DGX_DAEMON))
    original = path.read_bytes()
    code, result = run({**base_args(path, script), "settings": {"log-driver": "local"}, "_ansible_check_mode": True})
    assert code == 0
    assert result["changed"] is True
    assert result["config"]["log-driver"] == "local"
    assert path.read_bytes() == original
    assert len(stand_in.calls(log)) == 1
    assert list(tmp_path.glob("daemon.json.*")) == []


def test_rejected_candidate_leaves_the_file_untouched(run, tmp_path, dockerd):
    script, _log = dockerd
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(DGX_DAEMON))
    original = path.read_bytes()
    code, result = run({**base_args(path, script), "settings": {"max-concurrent-downloads": "BAD"}})
    assert code == 1
    assert result["failed"] is True
    assert "dockerd --validate rejected" in result["msg"] and "BAD value" in result["msg"]
    assert result["changed"] is False
    assert "left untouched" in result["msg"]
    assert path.read_bytes() == original
    assert list(tmp_path.glob("daemon.json.*")) == []


def test_key_that_the_unit_sets_as_flag_is_refused_before_validation(run, tmp_path, dockerd):
    script, log = dockerd
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(DGX_DAEMON))
    original = path.read_bytes()
    code, result = run({**base_args(path, script), "settings": {"default-shm-size": "2G", "live-restore": True}})
    assert code == 1
    assert "'default-shm-size'" in result["msg"] and "'--default-shm-size=1G'" in result["msg"]
    assert result["conflicts"] == [{"key": "default-shm-size", "flag": "--default-shm-size=1G"}]
    assert path.read_bytes() == original
    assert stand_in.calls(log) == []


def test_null_removes_a_key_even_when_it_is_a_unit_flag(run, tmp_path, dockerd):
    script, _log = dockerd
    path = tmp_path / "daemon.json"
    path.write_text('{"hosts": ["unix:///run/docker.sock"], "debug": false}')
    code, result = run({**base_args(path, script), "settings": {"hosts": None}})
    assert code == 0, result
    assert json.loads(path.read_text()) == {"debug": False}


def test_invalid_existing_file_is_reported_not_overwritten(run, tmp_path, dockerd):
    script, _log = dockerd
    path = tmp_path / "daemon.json"
    path.write_text('{"live-restore": tru')
    code, result = run({**base_args(path, script), "settings": {"live-restore": True}})
    assert code == 1
    assert "path:" in result["msg"] and "not valid JSON" in result["msg"]
    assert path.read_text() == '{"live-restore": tru'


def test_creates_a_new_file_with_mode(run, tmp_path, dockerd):
    script, _log = dockerd
    path = tmp_path / "etc-docker" / "daemon.json"
    code, result = run({**base_args(path, script), "settings": {"live-restore": True}, "mode": "0644"})
    assert code == 0, result
    assert json.loads(path.read_text()) == {"live-restore": True}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert "backup_file" not in result


def test_old_dockerd_without_validate_warns_and_writes(run, tmp_path, old_dockerd):
    path = tmp_path / "daemon.json"
    code, result = run({**base_args(path, old_dockerd), "settings": {"live-restore": True}})
    assert code == 0, result
    assert "has no --validate" in result["validation"]["skipped"]
    assert "not validated by dockerd" in json.dumps(result.get("warnings", []))
    assert path.exists()


def test_missing_dockerd_fails_outside_check_mode_and_is_skipped_in_check_mode(run, tmp_path):
    path = tmp_path / "daemon.json"
    args = {
        "path": str(path),
        "dockerd_path": str(tmp_path / "nope"),
        "exec_start": [],
        "settings": {"live-restore": True},
    }
    code, result = run(args)
    assert code == 1
    assert "validate: dockerd not found" in result["msg"]
    assert not path.exists()
    code, result = run({**args, "_ansible_check_mode": True})
    assert code == 0
    assert result["changed"] is True
    assert "not installed yet" in result["validation"]["skipped"]


def test_unit_reading_another_config_file_is_refused(run, tmp_path, dockerd):
    script, _log = dockerd
    path = tmp_path / "daemon.json"
    args = {**base_args(path, script), "exec_start": ["dockerd", "--config-file=/srv/other.json"]}
    code, result = run({**args, "settings": {"live-restore": True}})
    assert code == 1
    assert "--config-file /srv/other.json" in result["msg"]


def test_proxy_credentials_never_appear_in_the_result(run, tmp_path, dockerd):
    script, _log = dockerd
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(DGX_DAEMON))
    settings = {"proxies": {"http-proxy": "http://ci:s3cret@proxy.lab:3128"}}
    code, result = run({**base_args(path, script), "settings": settings, "_ansible_diff": True})
    assert code == 0, result
    # The module's own output is masked; its arguments (invocation) are the caller's to hide with no_log,
    # which the role does when a requested setting carries credentials.
    assert "s3cret" not in shown(result)
    assert result["config"]["proxies"]["http-proxy"] == "http://***@proxy.lab:3128"
    # The file itself holds the real value.
    assert json.loads(path.read_text())["proxies"]["http-proxy"] == "http://ci:s3cret@proxy.lab:3128"


def test_a_file_that_carries_credentials_becomes_private(run, tmp_path, dockerd):
    script, _log = dockerd
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(DGX_DAEMON))
    path.chmod(0o644)
    settings = {"proxies": {"http-proxy": "http://ci:s3cret@proxy.lab:3128"}}
    code, result = run({**base_args(path, script), "settings": settings})
    assert code == 0, result
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # A new file with credentials is private from the start too.
    fresh = tmp_path / "new" / "daemon.json"
    code, result = run({**base_args(fresh, script), "settings": settings})
    assert code == 0, result
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o600


DGX_WITH_LOGS = {**DGX_DAEMON, "log-opts": {"max-file": "5"}}
LOG_DEFAULTS = {"log-opts": {"max-size": "50m", "max-file": "3"}}
SECRET = "hunter2"


def state_of(path):
    return path.parent / (path.name + ".raibid-owned.json")


def test_defaults_fill_absent_keys_and_the_state_file_is_private(run, tmp_path, dockerd):
    script, _log = dockerd
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(DGX_WITH_LOGS))
    args = {**base_args(path, script), "settings": {"live-restore": True}, "defaults": LOG_DEFAULTS}
    code, result = run(args)
    assert code == 0, result
    assert json.loads(path.read_text())["log-opts"] == {"max-file": "5", "max-size": "50m"}
    assert result["filled_keys"] == ["log-opts.max-size"]
    assert result["changed_keys"] == ["live-restore", "log-opts.max-size"]
    assert result["reload_keys"] == ["live-restore"] and result["restart_keys"] == ["log-opts.max-size"]
    assert result["reload_required"] is True and result["restart_required"] is True
    assert result["owned_keys"] == ["live-restore", "log-opts.max-size"]
    assert result["settings_applied"] is True and result["mismatches"] == []
    state = state_of(path)
    assert result["state_path"] == str(state) and result["state_changed"] is True
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600
    assert json.loads(state.read_text())["owned"] == [
        {"key": ["live-restore"], "value": True},
        {"key": ["log-opts", "max-size"], "value": "50m"},
    ]
    # A second run changes nothing and requires nothing.
    code, result = run(args)
    assert code == 0
    assert result["changed"] is False and result["changed_keys"] == []
    assert result["reload_required"] is False and result["restart_required"] is False


def test_keys_no_longer_requested_are_removed_and_check_mode_predicts_it(run, tmp_path, dockerd):
    script, _log = dockerd
    path = tmp_path / "daemon.json"
    state = tmp_path / "owned.json"
    path.write_text(json.dumps(DGX_WITH_LOGS))
    first = {**base_args(path, script), "state_path": str(state)}
    code, result = run({**first, "settings": {"registry-mirrors": ["http://127.0.0.1:5001"]}, "defaults": LOG_DEFAULTS})
    assert code == 0, result
    written = path.read_text()

    # Check mode: the removals show in the result and the diff; neither file changes.
    code, result = run({**first, "_ansible_check_mode": True, "_ansible_diff": True})
    assert code == 0, result
    assert result["changed"] is True
    assert result["removed_keys"] == ["log-opts.max-size", "registry-mirrors"]
    assert result["changed_keys"] == ["log-opts.max-size", "registry-mirrors"]
    # Removed: dockerd's reload applies registry-mirrors only when it is set, so both need a restart.
    assert result["reload_keys"] == [] and result["restart_keys"] == ["log-opts.max-size", "registry-mirrors"]
    assert "registry-mirrors" in result["diff"]["before"] and "registry-mirrors" not in result["diff"]["after"]
    assert result["config"] == DGX_WITH_LOGS
    assert path.read_text() == written
    assert json.loads(state.read_text())["owned"] != []

    code, result = run(first)
    assert code == 0, result
    # DGX OS's max-file stays, with its parent; only what the module wrote went away.
    assert json.loads(path.read_text()) == DGX_WITH_LOGS
    assert json.loads(state.read_text())["owned"] == []
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600


def test_owned_key_changed_by_someone_else_is_kept_with_a_warning(run, tmp_path, dockerd):
    script, _log = dockerd
    path = tmp_path / "daemon.json"
    args = base_args(path, script)
    mirror = f"http://ci:{SECRET}@127.0.0.1:5001"
    code, result = run({**args, "settings": {"registry-mirrors": [mirror], "debug": True}})
    assert code == 0, result
    edited = {"registry-mirrors": [f"http://ops:{SECRET}@10.0.0.9:5001"], "debug": True}
    path.write_text(json.dumps(edited))
    code, result = run({**args, "settings": {}})
    assert code == 0, result
    assert json.loads(path.read_text()) == {"registry-mirrors": edited["registry-mirrors"]}
    assert result["kept_keys"] == ["registry-mirrors"] and result["removed_keys"] == ["debug"]
    assert "kept registry-mirrors" in json.dumps(result["warnings"])
    assert SECRET not in shown(result)
    # It is no longer owned: the next run neither removes it nor warns again.
    code, result = run({**args, "settings": {}})
    assert result["changed"] is False and result["kept_keys"] == [] and result["removed_keys"] == []


def test_credentials_in_nested_dicts_and_lists_never_reach_the_result(run, tmp_path, dockerd):
    script, _log = dockerd
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"proxies": {"http-proxy": f"http://old:{SECRET}@proxy:3128"}}))
    settings = {
        "proxies": {"http-proxy": f"http://ci:{SECRET}@proxy.lab:3128", "https-proxy": f"http://ci:{SECRET}@p:3129"},
        "registry-mirrors": [f"http://mirror:{SECRET}@127.0.0.1:5001"],
    }
    defaults = {"runtimes": {"x": {"path": "/bin/x", "args": [f"--proxy=socks5://u:{SECRET}@s:1080"]}}}
    for check_mode in (True, False):
        args = {**base_args(path, script), "settings": settings, "defaults": defaults}
        code, result = run({**args, "_ansible_diff": True, "_ansible_check_mode": check_mode})
        assert code == 0, result
        assert SECRET not in shown(result), check_mode
        assert result["settings_applied"] is True and result["mismatches"] == []
        assert result["config"]["registry-mirrors"] == ["http://***@127.0.0.1:5001"]
    assert json.loads(path.read_text())["proxies"] == settings["proxies"]
    # A mismatch is named by its path alone.
    path.write_text(json.dumps({**settings, "registry-mirrors": [f"http://other:{SECRET}@m"]}))
    code, result = run({**base_args(path, script), "settings": settings, "_ansible_check_mode": True})
    assert result["mismatches"] == [] and result["changed_keys"] == ["registry-mirrors"]
    assert SECRET not in shown(result)


def test_rejection_with_credentials_masks_the_message(run, tmp_path, dockerd):
    script, _log = dockerd
    path = tmp_path / "daemon.json"
    settings = {"proxies": {"http-proxy": f"http://BAD:{SECRET}@proxy:3128"}}
    code, result = run({**base_args(path, script), "settings": settings})
    assert code == 1
    assert SECRET not in shown(result)
    assert not path.exists() and not state_of(path).exists()


def test_check_mode_reports_settings_applied_on_the_predicted_file(run, tmp_path, dockerd):
    script, _log = dockerd
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"debug": False}))
    args = {**base_args(path, script), "settings": {"debug": True}, "defaults": LOG_DEFAULTS}
    code, result = run({**args, "_ansible_check_mode": True})
    assert code == 0, result
    assert result["settings_applied"] is True
    assert result["state_changed"] is True and not state_of(path).exists()
    assert json.loads(path.read_text()) == {"debug": False}


def test_default_blocked_by_a_foreign_scalar_is_a_mismatch(run, tmp_path, dockerd):
    script, _log = dockerd
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"log-opts": "odd"}))
    code, result = run({**base_args(path, script), "defaults": LOG_DEFAULTS})
    assert code == 0, result
    assert result["changed"] is False
    assert result["settings_applied"] is False
    assert result["mismatches"] == ["log-opts.max-file", "log-opts.max-size"]


def test_default_that_the_unit_sets_as_a_flag_is_not_written(run, tmp_path, dockerd):
    script, _log = dockerd
    path = tmp_path / "daemon.json"
    args = {**base_args(path, script), "exec_start": ["dockerd", "--live-restore"]}
    code, result = run({**args, "defaults": {"live-restore": True, "debug": True}})
    assert code == 0, result
    assert json.loads(path.read_text()) == {"debug": True}
    assert result["settings_applied"] is True


def test_bad_state_file_is_refused_naming_the_option(run, tmp_path, dockerd):
    script, _log = dockerd
    path = tmp_path / "daemon.json"
    state_of(path).write_text("{not json")
    code, result = run({**base_args(path, script), "settings": {"debug": True}})
    assert code == 1
    assert result["msg"].startswith("state_path:") and str(state_of(path)) in result["msg"]
    assert not path.exists()


def test_state_path_equal_to_path_is_refused(run, tmp_path, dockerd):
    script, _log = dockerd
    path = tmp_path / "daemon.json"
    code, result = run({**base_args(path, script), "settings": {}, "state_path": str(path)})
    assert code == 1 and result["msg"].startswith("state_path:")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # Removed in Docker 23.
        (["--validate", "--config-file", "/tmp/d.json", "--graph", "/srv/docker"], "unknown flag: --graph"),
        # Docker 29 only: dockerd 26 of the test bed refuses it.
        (["--validate", "--config-file", "/tmp/d.json", "--firewall-backend", "nftables"], "unknown flag"),
        (["--validate", "--config-file"], "flag needs an argument: --config-file"),
        (["--validate", "--config-file", "/tmp/d.json", "extra"], "accepts no arguments"),
        (["--validate", "--live-restore=yes"], "invalid boolean value"),
    ],
)
def test_stand_in_refuses_what_dockerd_refuses(dockerd, argv, message):
    script, _log = dockerd
    proc = subprocess.run([str(script), *argv], capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("Status: ") and message in proc.stderr, proc.stderr


def test_a_unit_flag_dockerd_lacks_fails_validation_naming_it(run, tmp_path, dockerd):
    """The check reaches the module: dockerd's refusal of the command line is the module's failure."""
    script, _log = dockerd
    path = tmp_path / "daemon.json"
    args = {**base_args(path, script), "exec_start": ["/usr/bin/dockerd", "--graph", "/srv/docker"]}
    code, result = run({**args, "settings": {"live-restore": True}})
    assert code == 1 and "unknown flag: --graph" in result["msg"]
    assert not path.exists()


@pytest.mark.parametrize(
    "unit",
    [
        ["/usr/bin/dockerd", "-H", "fd://", "--containerd=/run/containerd/containerd.sock"],
        ["/usr/bin/dockerd", "-H", "fd://", "--config-file", "/etc/docker/daemon.json", "--live-restore"],
        ["/usr/bin/dockerd", "--data-root=$DATA", "-D", "--log-level", "warn"],
    ],
)
def test_validation_command_lines_are_ones_dockerd_accepts(unit):
    argv, _dropped = docker_daemon.validation_argv("/usr/bin/dockerd", "/tmp/candidate.json", unit)
    opts = fake_dockerd.check_argv(argv[1:], fake_dockerd.real_flags())
    assert opts["--validate"] == [""] and opts["--config-file"] == ["/tmp/candidate.json"]


def test_pending_restart_is_recorded_root_only_before_the_file_is_replaced(run, tmp_path, dockerd, monkeypatch):
    script, _log = dockerd
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(DGX_DAEMON))
    original = path.read_text()
    pending = tmp_path / "run" / "raibid" / "pending"
    seen = {}
    write_config = docker_daemon_config.write_config

    def spy(module, target, text, exists):
        # What a kill at this instant leaves: records on disk, daemon.json not yet replaced.
        seen["records"] = sorted(os.listdir(pending))
        seen["config"] = path.read_text()
        return write_config(module, target, text, exists)

    monkeypatch.setattr(docker_daemon_config, "write_config", spy)
    settings = {"registry-mirrors": ["http://127.0.0.1:5001"], "log-opts": {"max-size": "20m"}}
    code, result = run({**base_args(path, script), "settings": settings, "pending_dir": str(pending)})
    assert code == 0, result
    assert seen == {"records": ["docker.service.reload", "docker.service.restart"], "config": original}
    assert result["pending_records"] == [
        str(pending / "docker.service.reload"),
        str(pending / "docker.service.restart"),
    ]
    assert "reload and restart recorded as pending in " + str(pending) in result["msg"]
    assert (pending / "docker.service.restart").read_text() == (
        "restart docker.service: daemon.json keys dockerd reads only at start changed: log-opts.max-size\n"
    )
    # Root only: every directory the module made, and the records; no staged file left behind.
    for directory in (tmp_path / "run", tmp_path / "run" / "raibid", pending):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory
    for record in pending.iterdir():
        assert stat.S_IMODE(os.stat(record).st_mode) == 0o600, record
    assert sorted(os.listdir(pending)) == ["docker.service.reload", "docker.service.restart"]


def test_pending_records_only_for_a_change_and_never_in_check_mode(run, tmp_path, dockerd):
    script, _log = dockerd
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(DGX_DAEMON))
    pending = tmp_path / "pending"
    args = {**base_args(path, script), "settings": {"debug": True}, "pending_dir": str(pending)}
    # Check mode names the record a real run would write, and writes nothing.
    code, result = run({**args, "_ansible_check_mode": True})
    assert code == 0, result
    assert result["pending_records"] == [str(pending / "docker.service.reload")]
    assert not pending.exists()
    code, result = run(args)
    assert code == 0, result
    assert sorted(os.listdir(pending)) == ["docker.service.reload"]
    # The caller removes the record once dockerd was reloaded; a run with nothing to change writes none.
    (pending / "docker.service.reload").unlink()
    code, result = run(args)
    assert code == 0, result
    assert result["changed"] is False and result["pending_records"] == []
    assert os.listdir(pending) == []
    # Without pending_dir nothing is recorded or reported.
    code, result = run({**base_args(path, script), "settings": {"debug": False}})
    assert code == 0, result
    assert "pending_records" not in result and os.listdir(pending) == []


def test_a_record_that_cannot_be_written_leaves_daemon_json_untouched(run, tmp_path, dockerd):
    script, _log = dockerd
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(DGX_DAEMON))
    original = path.read_bytes()
    blocker = tmp_path / "pending"
    blocker.write_text("a file, not a directory")
    args = {**base_args(path, script), "settings": {"log-driver": "local"}, "pending_dir": str(blocker)}
    code, result = run(args)
    assert code == 1
    assert result["msg"].startswith("pending_dir: cannot record the pending docker.service.restart in ")
    assert "left untouched" in result["msg"] and result["changed"] is False
    assert path.read_bytes() == original
