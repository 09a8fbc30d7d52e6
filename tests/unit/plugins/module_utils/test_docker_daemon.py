"""Unit tests for plugins/module_utils/docker_daemon.py (pure functions, no Ansible, no Docker)."""

from __future__ import annotations

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils.docker_daemon import (
    DaemonConfigError,
    config_file_flag,
    conflict_message,
    deep_merge,
    flag_conflicts,
    load_config,
    no_validate_flag,
    parse_exec_start,
    parse_flags,
    redact,
    render,
    validation_argv,
)

DEBIAN_SHOW = (
    "ExecStart={ path=/usr/sbin/dockerd ; argv[]=/usr/sbin/dockerd -H fd:// "
    "--containerd=/run/containerd/containerd.sock $DOCKER_OPTS ; ignore_errors=no ; "
    "start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }\n"
)
DGX_OVERRIDE_SHOW = (
    "ExecStart={ path=/usr/bin/dockerd ; argv[]=/usr/bin/dockerd -H fd:// -s overlay2 "
    "--default-shm-size=1G --data-root /data/docker ; ignore_errors=no ; start_time=[n/a] ; "
    "stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }\n"
)


class TestLoadAndRender:
    def test_missing_or_blank_file_is_empty(self):
        assert load_config(None) == {}
        assert load_config("  \n") == {}

    def test_parses_object(self):
        assert load_config('{"live-restore": true}') == {"live-restore": True}

    def test_rejects_bad_json(self):
        with pytest.raises(DaemonConfigError, match="not valid JSON"):
            load_config('{"live-restore": true,,}')

    def test_rejects_non_object(self):
        with pytest.raises(DaemonConfigError, match="JSON object, found a JSON list"):
            load_config("[1, 2]")

    def test_render_keeps_key_order_and_ends_with_newline(self):
        text = render({"b": 1, "a": {"y": 2, "x": 3}})
        assert text.endswith("}\n")
        assert text.index('"b"') < text.index('"a"') and text.index('"y"') < text.index('"x"')


class TestDeepMerge:
    def test_keeps_foreign_keys_and_merges_nested_objects(self):
        dgx = {
            "default-runtime": "nvidia",
            "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}},
            "features": {"cdi": True},
        }
        merged = deep_merge(dgx, {"features": {"containerd-snapshotter": True}, "live-restore": True})
        assert merged["default-runtime"] == "nvidia"
        assert merged["runtimes"] == dgx["runtimes"]
        assert merged["features"] == {"cdi": True, "containerd-snapshotter": True}
        assert merged["live-restore"] is True

    def test_lists_and_scalars_are_replaced(self):
        merged = deep_merge(
            {"registry-mirrors": ["https://a"], "log-driver": "local"}, {"registry-mirrors": ["http://b"]}
        )
        assert merged["registry-mirrors"] == ["http://b"]
        assert merged["log-driver"] == "local"

    def test_none_removes_a_key(self):
        assert deep_merge({"insecure-registries": ["x:5000"], "a": 1}, {"insecure-registries": None}) == {"a": 1}

    def test_none_for_missing_key_is_harmless(self):
        assert deep_merge({"a": 1}, {"b": None}) == {"a": 1}

    def test_does_not_mutate_inputs(self):
        base = {"log-opts": {"max-size": "10m"}}
        overlay = {"log-opts": {"max-file": "3"}}
        deep_merge(base, overlay)
        assert base == {"log-opts": {"max-size": "10m"}}
        assert overlay == {"log-opts": {"max-file": "3"}}

    def test_object_replaces_scalar(self):
        assert deep_merge({"builder": "odd"}, {"builder": {"gc": {"enabled": True}}}) == {
            "builder": {"gc": {"enabled": True}}
        }


class TestExecStart:
    def test_parses_debian_unit(self):
        assert parse_exec_start(DEBIAN_SHOW) == [
            "/usr/sbin/dockerd",
            "-H",
            "fd://",
            "--containerd=/run/containerd/containerd.sock",
            "$DOCKER_OPTS",
        ]

    def test_empty_when_unit_missing(self):
        assert parse_exec_start("ExecStart=\n") == []

    def test_takes_the_dockerd_command_when_several(self):
        show = (
            "ExecStart={ path=/bin/true ; argv[]=/bin/true ; ignore_errors=no ; x }\n"
            "ExecStart={ path=/usr/bin/dockerd ; argv[]=/usr/bin/dockerd -H fd:// ; ignore_errors=no ; x }\n"
        )
        assert parse_exec_start(show) == ["/usr/bin/dockerd", "-H", "fd://"]

    def test_parse_flags_all_spellings(self):
        argv = [
            "dockerd",
            "-H",
            "fd://",
            "-Hunix:///x.sock",
            "--host=tcp://0:2375",
            "--debug",
            "-s",
            "overlay2",
            "--bip",
            "10.1.0.1/24",
        ]
        names = [name for name, _value in parse_flags(argv)]
        assert names == ["host", "host", "host", "debug", "storage-driver", "bip"]
        assert ("storage-driver", "-s overlay2") in parse_flags(argv)
        assert ("bip", "--bip 10.1.0.1/24") in parse_flags(argv)

    def test_boolean_long_flag_does_not_swallow_next_token(self):
        assert parse_flags(["dockerd", "--live-restore", "--default-shm-size=1G"]) == [
            ("live-restore", "--live-restore"),
            ("default-shm-size", "--default-shm-size=1G"),
        ]


class TestConflicts:
    def test_dgx_override_conflicts(self):
        argv = parse_exec_start(DGX_OVERRIDE_SHOW)
        found = flag_conflicts(["hosts", "default-shm-size", "storage-driver", "data-root", "live-restore"], argv)
        assert found == [
            ("hosts", "-H fd://"),
            ("default-shm-size", "--default-shm-size=1G"),
            ("storage-driver", "-s overlay2"),
            ("data-root", "--data-root /data/docker"),
        ]

    def test_plural_keys_map_to_singular_flags(self):
        argv = [
            "dockerd",
            "--registry-mirror=https://m",
            "--insecure-registry",
            "10.0.0.1:5000",
            "--log-opt",
            "max-size=1m",
        ]
        keys = [key for key, _flag in flag_conflicts(["registry-mirrors", "insecure-registries", "log-opts"], argv)]
        assert keys == ["registry-mirrors", "insecure-registries", "log-opts"]

    def test_no_conflict_for_plain_debian_unit(self):
        argv = parse_exec_start(DEBIAN_SHOW)
        keys = [
            "registry-mirrors",
            "log-driver",
            "log-opts",
            "live-restore",
            "builder",
            "features",
            "default-address-pools",
        ]
        assert flag_conflicts(keys, argv) == []

    def test_message_names_key_flag_and_unit(self):
        argv = parse_exec_start(DGX_OVERRIDE_SHOW)
        msg = conflict_message("docker", flag_conflicts(["default-shm-size"], argv), argv)
        assert "'default-shm-size'" in msg and "'--default-shm-size=1G'" in msg and "docker.service" in msg
        assert "nothing was changed" in msg


class TestValidation:
    def test_validation_argv_carries_unit_flags_and_drops_unexpanded_variables(self):
        argv = parse_exec_start(DEBIAN_SHOW)
        cmd, dropped = validation_argv("/usr/sbin/dockerd", "/tmp/cand.json", argv)
        assert cmd == [
            "/usr/sbin/dockerd",
            "--validate",
            "--config-file",
            "/tmp/cand.json",
            "-H",
            "fd://",
            "--containerd=/run/containerd/containerd.sock",
        ]
        assert dropped == ["$DOCKER_OPTS"]

    def test_unit_config_file_is_replaced_by_the_candidate(self):
        argv = ["dockerd", "--config-file", "/etc/docker/daemon.json", "--config-file=/x.json", "-H", "fd://"]
        cmd, _dropped = validation_argv("dockerd", "/tmp/c.json", argv)
        assert cmd == ["dockerd", "--validate", "--config-file", "/tmp/c.json", "-H", "fd://"]

    def test_config_file_flag(self):
        assert config_file_flag(["dockerd", "--config-file=/srv/d.json"]) == "/srv/d.json"
        assert config_file_flag(["dockerd", "--config-file", "/srv/d.json"]) == "/srv/d.json"
        assert config_file_flag(["dockerd", "-H", "fd://"]) is None

    def test_old_dockerd_without_validate(self):
        assert no_validate_flag("Status: unknown flag: --validate\nSee 'dockerd --help'., Code: 125")
        assert not no_validate_flag("unable to configure the Docker daemon with file /tmp/a.json")


def test_redact_masks_url_credentials_everywhere():
    config = {
        "proxies": {"http-proxy": "http://ci:s3cret@proxy.lab:3128", "no-proxy": "localhost"},
        "registry-mirrors": ["http://127.0.0.1:5001"],
        "live-restore": True,
    }
    masked = redact(config)
    assert masked["proxies"]["http-proxy"] == "http://***@proxy.lab:3128"
    assert masked["registry-mirrors"] == ["http://127.0.0.1:5001"]
    assert masked["live-restore"] is True
    assert "s3cret" not in redact(render(config))
