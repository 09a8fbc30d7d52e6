"""Unit tests for plugins/module_utils/docker_daemon.py (pure functions, no Ansible, no Docker)."""

from __future__ import annotations

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils.docker_daemon import (
    RELOAD_KEYS,
    DaemonConfigError,
    OwnedStateError,
    changed_leaves,
    classify,
    config_file_flag,
    conflict_message,
    deep_merge,
    flag_conflicts,
    kept_warning,
    leaves,
    load_config,
    load_owned,
    mismatches,
    no_validate_flag,
    parse_exec_start,
    parse_flags,
    pending_records,
    plan_config,
    redact,
    remove_path,
    removed_leaves,
    render,
    render_owned,
    unit_name,
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


def test_redact_masks_credentials_in_nested_dicts_lists_and_keys():
    config = {
        "registry-mirrors": ["http://mirror:hunter2@10.0.0.1:5001", "https://plain.example"],
        "runtimes": {"x": {"args": ["--proxy", "socks5://u:hunter2@p:1080"]}},
        "odd": {"http://k:hunter2@host": 1},
    }
    masked = redact(config)
    assert "hunter2" not in repr(masked)
    assert masked["registry-mirrors"] == ["http://***@10.0.0.1:5001", "https://plain.example"]
    assert masked["runtimes"]["x"]["args"][1] == "socks5://***@p:1080"


DGX_FILE = {
    "default-runtime": "nvidia",
    "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}},
    "log-opts": {"max-file": "5"},
}
LOG_DEFAULTS = {"log-opts": {"max-size": "50m", "max-file": "3"}}


class TestLeaves:
    def test_objects_recurse_lists_scalars_and_empty_objects_are_leaves(self):
        found = leaves({"a": {"b": [1, {"c": 2}], "d": {}}, "e": None, "f": 1})
        assert found == {("a", "b"): [1, {"c": 2}], ("a", "d"): {}, ("e",): None, ("f",): 1}

    def test_remove_path_prunes_only_the_parents_it_emptied(self):
        config = {"log-opts": {"max-size": "50m"}, "builder": {"gc": {"enabled": True}, "x": 1}}
        remove_path(config, ("log-opts", "max-size"))
        remove_path(config, ("builder", "gc", "enabled"))
        assert config == {"builder": {"x": 1}}

    def test_changed_leaves_are_dotted_and_sorted(self):
        before = {"log-opts": {"max-file": "5"}, "debug": False, "gone": 1}
        after = {"log-opts": {"max-file": "5", "max-size": "50m"}, "debug": True}
        assert changed_leaves(before, after) == ["debug", "gone", "log-opts.max-size"]
        assert changed_leaves(before, before) == []


class TestDefaults:
    def test_fill_only_absent_leaves(self):
        plan = plan_config(DGX_FILE, {}, LOG_DEFAULTS, {})
        assert plan.config["log-opts"] == {"max-file": "5", "max-size": "50m"}
        assert plan.filled == [("log-opts", "max-size")]
        # Only what the module wrote is owned; DGX OS's max-file stays foreign.
        assert plan.owned == {("log-opts", "max-size"): "50m"}
        assert plan.config["runtimes"] == DGX_FILE["runtimes"]

    def test_fills_into_a_missing_parent(self):
        plan = plan_config({}, {}, {"builder": {"gc": {"enabled": True, "defaultKeepStorage": "20GB"}}}, {})
        assert plan.config == {"builder": {"gc": {"enabled": True, "defaultKeepStorage": "20GB"}}}

    def test_a_foreign_scalar_parent_blocks_the_default(self):
        plan = plan_config({"log-opts": "odd"}, {}, LOG_DEFAULTS, {})
        assert plan.config == {"log-opts": "odd"}
        assert plan.owned == {}

    def test_settings_are_forced_and_win_over_defaults(self):
        plan = plan_config(DGX_FILE, {"log-opts": {"max-file": "2"}, "default-runtime": "runc"}, LOG_DEFAULTS, {})
        assert plan.config["log-opts"] == {"max-file": "2", "max-size": "50m"}
        assert plan.config["default-runtime"] == "runc"
        assert plan.owned == {
            ("log-opts", "max-file"): "2",
            ("default-runtime",): "runc",
            ("log-opts", "max-size"): "50m",
        }

    def test_null_setting_beats_a_default_below_it(self):
        plan = plan_config({"log-opts": {"max-size": "1m"}}, {"log-opts": None}, LOG_DEFAULTS, {})
        assert "log-opts" not in plan.config

    def test_owned_default_follows_a_changed_default(self):
        previous = {"log-opts": {"max-file": "5", "max-size": "50m"}}
        plan = plan_config(previous, {}, {"log-opts": {"max-size": "100m"}}, {("log-opts", "max-size"): "50m"})
        assert plan.config["log-opts"] == {"max-file": "5", "max-size": "100m"}
        assert plan.owned == {("log-opts", "max-size"): "100m"}
        assert plan.filled == [("log-opts", "max-size")]

    def test_owned_default_changed_by_someone_else_is_left_and_forgotten(self):
        previous = {"log-opts": {"max-size": "10m"}}
        plan = plan_config(previous, {}, {"log-opts": {"max-size": "100m"}}, {("log-opts", "max-size"): "50m"})
        assert plan.config == previous
        assert plan.owned == {}

    def test_default_for_a_key_the_unit_sets_as_flag_is_not_filled(self):
        plan = plan_config({}, {}, {"live-restore": True, "debug": True}, {}, flag_keys=["live-restore"])
        assert plan.config == {"debug": True}

    def test_null_defaults_are_ignored(self):
        assert plan_config({"a": 1}, {}, {"a": None, "b": None}, {}).config == {"a": 1}


class TestOwnership:
    def test_foreign_key_with_the_requested_value_is_not_owned(self):
        plan = plan_config(DGX_FILE, {"default-runtime": "nvidia"}, {}, {})
        assert plan.owned == {}
        # ...so dropping it from settings later never removes DGX OS's key.
        assert plan_config(DGX_FILE, {}, {}, plan.owned).config == DGX_FILE

    def test_owned_key_no_longer_requested_is_removed_with_empty_parents(self):
        previous = {**DGX_FILE, "log-opts": {"max-size": "50m"}, "registry-mirrors": ["http://127.0.0.1:5001"]}
        owned = {("log-opts", "max-size"): "50m", ("registry-mirrors",): ["http://127.0.0.1:5001"]}
        plan = plan_config(previous, {}, {}, owned)
        assert plan.config == {key: value for key, value in DGX_FILE.items() if key != "log-opts"}
        assert plan.removed == [("log-opts", "max-size"), ("registry-mirrors",)]
        assert plan.owned == {} and plan.kept == []

    def test_owned_key_changed_by_someone_else_is_kept(self):
        previous = {"registry-mirrors": ["http://other:5000"], "log-opts": {"max-size": "50m"}}
        owned = {("registry-mirrors",): ["http://127.0.0.1:5001"], ("log-opts", "max-size"): "50m"}
        plan = plan_config(previous, {}, {}, owned)
        assert plan.config == {"registry-mirrors": ["http://other:5000"]}
        assert plan.kept == [("registry-mirrors",)]
        assert plan.removed == [("log-opts", "max-size")]
        assert plan.owned == {}

    def test_owned_key_already_gone_is_forgotten_quietly(self):
        plan = plan_config({"log-opts": "odd"}, {}, {}, {("log-opts", "max-size"): "50m", ("debug",): True})
        assert plan.config == {"log-opts": "odd"}
        assert plan.removed == [] and plan.kept == [] and plan.owned == {}

    def test_owned_setting_moved_to_defaults_stays_owned_and_is_updated(self):
        previous = {"registry-mirrors": ["http://a"]}
        owned = {("registry-mirrors",): ["http://a"]}
        plan = plan_config(previous, {}, {"registry-mirrors": ["http://b"]}, owned)
        assert plan.config == {"registry-mirrors": ["http://b"]}
        assert plan.owned == {("registry-mirrors",): ["http://b"]}

    def test_forcing_back_a_changed_owned_key_keeps_it_owned(self):
        plan = plan_config({"debug": False}, {"debug": True}, {}, {("debug",): True})
        assert plan.config == {"debug": True} and plan.owned == {("debug",): True}

    def test_null_setting_removes_and_forgets(self):
        plan = plan_config({"debug": True}, {"debug": None}, {}, {("debug",): True})
        assert plan.config == {} and plan.owned == {} and plan.removed == []

    def test_state_round_trip_keeps_keys_with_dots(self):
        owned = {("default-network-opts", "bridge", "com.docker.network.driver.mtu"): "1400", ("debug",): True}
        text = render_owned(owned, "/etc/docker/daemon.json")
        assert load_owned(text) == owned
        assert load_owned(None) == {} and load_owned("") == {}

    @pytest.mark.parametrize("text", ["{", "[]", '{"owned": {}}', '{"owned": [{"key": "debug"}]}', '{"owned": [1]}'])
    def test_bad_state_is_refused(self, text):
        with pytest.raises(OwnedStateError):
            load_owned(text)

    def test_kept_warning_names_keys_not_values(self):
        msg = kept_warning("/etc/docker/daemon.json", [("proxies", "http-proxy")])
        assert "proxies.http-proxy" in msg and "no longer tracked" in msg


class TestClassification:
    def test_reload_and_restart_keys(self):
        changed = ["builder.gc.enabled", "debug", "features.containerd-snapshotter", "live-restore"]
        changed += ["log-opts.max-size", "registry-mirrors", "runtimes.nvidia.path", "some-unknown-key"]
        reload_keys, restart_keys = classify(changed)
        assert reload_keys == ["debug", "live-restore", "registry-mirrors", "runtimes.nvidia.path"]
        assert restart_keys == [
            "builder.gc.enabled",
            "features.containerd-snapshotter",
            "log-opts.max-size",
            "some-unknown-key",
        ]

    def test_table_holds_what_dockerd_26_reloads(self):
        verified = {"registry-mirrors", "insecure-registries", "debug", "labels", "max-concurrent-downloads"}
        verified |= {"runtimes", "default-runtime", "live-restore"}
        assert verified <= RELOAD_KEYS
        assert not {"builder", "log-opts", "features"} & RELOAD_KEYS

    def test_nothing_changed_nothing_required(self):
        assert classify([]) == ([], [])

    def test_a_removed_reload_key_needs_a_restart_unless_a_reload_resets_it(self):
        before = {"debug": True, "labels": ["a"], "max-concurrent-downloads": 5, "registry-mirrors": ["http://m/"]}
        after = {"registry-mirrors": ["http://n/"]}
        removed = removed_leaves(before, after)
        assert removed == ["debug", "labels", "max-concurrent-downloads"]
        changed = changed_leaves(before, after)
        # dockerd's reload applies debug and labels only when set: their removal waits for a restart;
        # an absent max-concurrent-downloads goes back to its default on reload; a changed mirror reloads.
        assert classify(changed, removed) == (["max-concurrent-downloads", "registry-mirrors"], ["debug", "labels"])
        assert classify(["debug"], []) == (["debug"], [])  # added or changed: a reload applies it


class TestMismatches:
    def test_all_applied(self):
        config = {"debug": True, "log-opts": {"max-size": "10m", "max-file": "5"}}
        assert mismatches(config, {"debug": True, "gone": None}, LOG_DEFAULTS) == []

    def test_names_paths_not_values(self):
        secret = "http://ci:hunter2@proxy:3128"
        config = {"proxies": {"http-proxy": "http://ci:other@proxy:3128"}, "gone": 1}
        wrong = mismatches(config, {"proxies": {"http-proxy": secret}, "gone": None}, LOG_DEFAULTS)
        assert wrong == ["gone", "log-opts.max-file", "log-opts.max-size", "proxies.http-proxy"]
        assert "hunter2" not in repr(wrong)

    def test_compares_real_values_not_masked_ones(self):
        config = {"registry-mirrors": ["http://u:old@m:5001"]}
        assert mismatches(config, {"registry-mirrors": ["http://u:new@m:5001"]}, {}) == ["registry-mirrors"]

    def test_default_set_as_unit_flag_or_forced_by_settings_counts_as_present(self):
        assert mismatches({}, {}, {"live-restore": True}, flag_keys=["live-restore"]) == []
        assert mismatches({}, {"log-opts": None}, LOG_DEFAULTS) == []


class TestPendingRecords:
    def test_one_record_per_action_named_after_the_unit(self):
        records = pending_records(
            "docker", ["registry-mirrors"], ["log-opts.max-size", "features.containerd-snapshotter"]
        )
        assert list(records) == ["docker.service.reload", "docker.service.restart"]
        assert records["docker.service.reload"] == (
            "reload docker.service: daemon.json keys dockerd re-reads on SIGHUP changed: registry-mirrors\n"
        )
        assert records["docker.service.restart"].startswith("restart docker.service: ")
        assert records["docker.service.restart"].endswith("features.containerd-snapshotter, log-opts.max-size\n")

    def test_only_the_actions_the_keys_need(self):
        assert list(pending_records("docker", [], ["builder.gc.enabled"])) == ["docker.service.restart"]
        assert list(pending_records("docker", ["debug"], [])) == ["docker.service.reload"]
        assert pending_records("docker", [], []) == {}

    def test_unit_names(self):
        assert unit_name("docker") == "docker.service"
        assert unit_name("docker.service") == "docker.service"
        assert list(pending_records("docker.service", ["debug"], [])) == ["docker.service.reload"]

    def test_records_name_keys_never_values(self):
        # A key path is all a record holds; a credential could only come in through a key name.
        records = pending_records("docker", [], ["proxies.http://u:hunter2@p"])
        assert "hunter2" not in repr(records)
