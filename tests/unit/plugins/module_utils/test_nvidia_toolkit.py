"""Unit tests for plugins/module_utils/nvidia_toolkit.py (config.toml mode, configure decisions)."""

from __future__ import annotations

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils.nvidia_toolkit import (
    MODES,
    configure_runtime_argv,
    effective_mode,
    parse_runtime_mode,
    runtime_configured,
    runtime_needs_configure,
    set_mode_argv,
)
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.fakes import cli, nvidia_ctk

# Shaped like the toolkit's generated /etc/nvidia-container-runtime/config.toml.
CONFIG_TOML = """\
#accept-nvidia-visible-devices-as-volume-mounts = false
disable-require = false
supported-driver-capabilities = "compat32,compute,display,graphics,ngx,utility,video"

[nvidia-container-cli]
environment = []
ldconfig = "@/sbin/ldconfig.real"
load-kmods = true

[nvidia-container-runtime]
#debug = "/var/log/nvidia-container-runtime.log"
log-level = "info"
mode = "{mode}"
runtimes = ["runc", "crun"]

[nvidia-container-runtime.modes.cdi]
annotation-prefixes = ["cdi.k8s.io/"]
default-kind = "nvidia.com/gpu"
spec-dirs = ["/etc/cdi", "/var/run/cdi"]

[nvidia-container-runtime.modes.csv]
mount-spec-path = "/etc/nvidia-container-runtime/host-files-for-container.d"
"""


@pytest.mark.parametrize("mode", ["auto", "legacy", "cdi"])
def test_reads_the_runtime_tables_mode(mode):
    assert parse_runtime_mode(CONFIG_TOML.format(mode=mode)) == mode


def test_ignores_commented_mode_and_other_tables():
    text = '[nvidia-container-runtime]\n# mode = "cdi"\n[nvidia-container-runtime.modes.cdi]\nmode = "x"\n'
    assert parse_runtime_mode(text) is None
    assert effective_mode(text) == "auto"


def test_single_quotes_and_trailing_comment():
    assert parse_runtime_mode("[nvidia-container-runtime]\nmode = 'legacy'  # GB10 workaround\n") == "legacy"


def test_missing_file_means_toolkit_default():
    assert parse_runtime_mode(None) is None
    assert effective_mode(None) == "auto"
    assert effective_mode("") == "auto"


def test_runtime_configured_needs_a_path():
    assert runtime_configured({"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}})
    assert not runtime_configured({"runtimes": {"nvidia": {}}})
    assert not runtime_configured({"runtimes": {"crun": {"path": "/usr/bin/crun"}}})
    assert not runtime_configured({"runtimes": "nvidia"})
    assert not runtime_configured({})


def test_no_configure_when_runtime_present_and_default_not_asked():
    dgx = {"default-runtime": "nvidia", "runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}
    assert runtime_needs_configure(dgx, set_as_default=False) == []
    # Not asking for the default never asks to undo a default DGX OS set.
    assert runtime_needs_configure(dgx, set_as_default=True) == []


def test_configure_when_runtime_missing_or_default_asked():
    assert runtime_needs_configure({}, set_as_default=False) == ["daemon.json has no runtimes.nvidia.path"]
    reasons = runtime_needs_configure({"runtimes": {"nvidia": {"path": "x"}}, "default-runtime": "runc"}, True)
    assert reasons == ["default-runtime is 'runc', not 'nvidia'"]


def test_command_lines():
    assert configure_runtime_argv("/usr/bin/nvidia-ctk", "/etc/docker/daemon.json", False) == [
        "/usr/bin/nvidia-ctk",
        "runtime",
        "configure",
        "--runtime=docker",
        "--config=/etc/docker/daemon.json",
    ]
    assert configure_runtime_argv("nvidia-ctk", "/d.json", True)[-1] == "--set-as-default"
    assert set_mode_argv("nvidia-ctk", "/c.toml", "legacy") == [
        "nvidia-ctk",
        "config",
        "--in-place",
        "--config-file=/c.toml",
        "--set",
        "nvidia-container-runtime.mode=legacy",
    ]


def test_set_mode_refuses_unknown_mode():
    with pytest.raises(ValueError, match="mode must be one of"):
        set_mode_argv("nvidia-ctk", "/c.toml", "turbo")


@pytest.mark.parametrize("set_as_default", [False, True])
def test_configure_command_line_is_one_every_supported_nvidia_ctk_accepts(set_as_default):
    argv = configure_runtime_argv("/usr/bin/nvidia-ctk", "/etc/docker/daemon.json", set_as_default)
    command, opts = nvidia_ctk.check_argv(argv[1:])
    assert command == ("runtime", "configure")
    assert opts["--runtime"] == ["docker"] and opts["--config"] == ["/etc/docker/daemon.json"]
    assert ("--set-as-default" in opts) is set_as_default


@pytest.mark.parametrize("mode", MODES)
def test_set_mode_command_line_is_one_every_supported_nvidia_ctk_accepts(mode):
    command, opts = nvidia_ctk.check_argv(set_mode_argv("nvidia-ctk", "/c.toml", mode)[1:])
    assert command == ("config",)
    assert opts["--in-place"] == [""] and opts["--config-file"] == ["/c.toml"]
    assert opts["--set"] == [f"nvidia-container-runtime.mode={mode}"]


def test_the_flag_check_refuses_a_flag_nvidia_ctk_does_not_have():
    argv = set_mode_argv("nvidia-ctk", "/c.toml", "cdi")[1:]
    with pytest.raises(cli.UsageError, match="unknown flag: --config-path"):
        nvidia_ctk.check_argv([a.replace("--config-file", "--config-path") for a in argv])
