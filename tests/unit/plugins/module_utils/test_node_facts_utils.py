"""Unit tests for plugins/module_utils/node_facts.py, over fake file trees; nvidia-smi command lines are
checked by the stand-in of fakes/nvidia_smi.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils import node_facts as nf
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.fakes import nvidia_smi

# molecule/_shared/vars/dgx-release.yml's text, kept inline: ansible-test units runs on the shipped tree,
# which has neither molecule/ nor tests/support.py. tests/tooling/test_dgx_release.py checks they agree.
DGX_RELEASE = """DGX_NAME="DGX Spark"
DGX_PRETTY_NAME="NVIDIA DGX Spark"
DGX_SWBUILD_DATE="2026-06-30-10-00-00"
DGX_SWBUILD_VERSION="7.3.1"
DGX_COMMIT_ID="0000000"
DGX_PLATFORM="DGX Server for KVM"
DGX_OTA_VERSION="7.3.1"
"""

UBUNTU_OS_RELEASE = """PRETTY_NAME="Ubuntu 24.04.3 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
ID=ubuntu
ID_LIKE=debian
"""

DPKG_STATUS = """Package: docker-ce
Status: install ok installed
Version: 5:29.0.1-1~ubuntu.24.04~noble

Package: nvidia-container-toolkit
Status: install ok installed
Version: 1.19.0-1

Package: docker.io
Status: deinstall ok config-files
Version: 26.1.5

Package: unrelated
Status: install ok installed
Version: 1
"""

# GB10: memory fields are "[N/A]"; the module never asks for them, but a row with extra cells
# (as older drivers print) must still parse.
NVIDIA_SMI = "0, NVIDIA GB10, GPU-5d3f0c1e-1111-2222-3333-444455556666, 580.95.05\n"


def make_tree(tmp_path: Path, files: dict[str, str]) -> str:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path)


def no_run(argv):  # pragma: no cover - must not be called
    raise AssertionError(f"unexpected command {argv}")


def test_parse_key_value_file_handles_quotes_comments_and_junk():
    parsed = nf.parse_key_value_file("# c\nA=\"x y\"\nB=plain\nbad line\n1X=no\nC='q'\n")
    assert parsed == {"A": "x y", "B": "plain", "C": "q"}


def test_parse_key_value_file_survives_unbalanced_quotes():
    assert nf.parse_key_value_file('A="open\n') == {"A": "open"}


def test_parse_meminfo():
    assert nf.parse_meminfo_mb("MemTotal:       131072000 kB\nMemFree: 1 kB\n") == 128000
    assert nf.parse_meminfo_mb("garbage") is None


def test_parse_dpkg_status_only_installed_tracked_packages():
    assert nf.parse_dpkg_status(DPKG_STATUS) == {
        "docker-ce": "5:29.0.1-1~ubuntu.24.04~noble",
        "nvidia-container-toolkit": "1.19.0-1",
    }


def test_parse_dpkg_status_every_installed_package_when_no_names():
    assert nf.parse_dpkg_status(DPKG_STATUS, None) == {
        "docker-ce": "5:29.0.1-1~ubuntu.24.04~noble",
        "nvidia-container-toolkit": "1.19.0-1",
        "unrelated": "1",
    }


def test_parse_nvidia_smi_gb10():
    gpus = nf.parse_nvidia_smi(NVIDIA_SMI + "\n")
    assert gpus == [
        {
            "index": "0",
            "name": "NVIDIA GB10",
            "uuid": "GPU-5d3f0c1e-1111-2222-3333-444455556666",
            "driver_version": "580.95.05",
        }
    ]


def test_parse_nvidia_smi_skips_short_rows():
    assert nf.parse_nvidia_smi("No devices were found\n") == []


@pytest.mark.parametrize(
    ("version", "expected"),
    [("24.04", (24, 4)), ("13", (13,)), ("7.3.1", (7, 3, 1)), ("", ()), ("trixie/sid", ())],
)
def test_version_tuple(version, expected):
    assert nf.version_tuple(version) == expected


def test_collect_dgx_spark_on_dgx_os_with_gpu(tmp_path):
    root = make_tree(
        tmp_path,
        {
            "etc/dgx-release": DGX_RELEASE,
            "etc/os-release": UBUNTU_OS_RELEASE,
            "sys/class/dmi/id/product_name": "NVIDIA DGX Spark\n",
            "proc/meminfo": "MemTotal:       124000000 kB\n",
            "var/lib/dpkg/status": DPKG_STATUS,
            "var/lib/docker/.keep": "",
        },
    )
    calls = []

    def run(argv):
        calls.append(nvidia_smi.check_argv(argv[1:]))
        return 0, NVIDIA_SMI, ""

    facts = nf.collect(root, "aarch64", "/var/lib/docker", run, "/usr/bin/nvidia-smi")
    assert facts["architecture"] == "aarch64"
    assert facts["is_dgx_spark"] is True
    assert facts["is_dgx_os"] is True
    assert facts["os"] == {
        "family": "dgx_os",
        "version": "7.3.1",
        "base_id": "ubuntu",
        "base_version": "24.04",
        "pretty_name": "Ubuntu 24.04.3 LTS",
    }
    assert facts["memory_mb"] == 121093
    assert facts["gpu"]["present"] is True
    assert facts["gpu"]["count"] == 1
    assert facts["gpu"]["devices"][0]["name"] == "NVIDIA GB10"
    assert facts["disk"]["measured_at"] == "/var/lib/docker"
    assert facts["packages"]["docker-ce"].startswith("5:29")
    # A query nvidia-smi takes, with no memory field (GB10 reports them unsupported).
    assert calls == [["index", "name", "uuid", "driver_version"]]


def test_collect_plain_debian_without_gpu_measures_existing_parent(tmp_path):
    root = make_tree(
        tmp_path,
        {
            "usr/lib/os-release": 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n',
            "proc/meminfo": "MemTotal: 2048000 kB\n",
            "var/lib/.keep": "",
        },
    )
    facts = nf.collect(root, "x86_64", "/var/lib/docker", no_run, None)
    assert facts["os"]["family"] == "debian"
    assert facts["os"]["version"] == "13"
    assert facts["is_dgx_os"] is False
    assert facts["is_dgx_spark"] is False
    assert facts["dgx_release"] == {}
    assert facts["disk"]["measured_at"] == "/var/lib"
    assert facts["disk"]["free_gb"] >= 0
    assert facts["gpu"] == {"present": False, "count": 0, "devices": [], "probe": "nvidia-smi not found"}
    assert facts["packages"] == {}


def test_collect_measures_every_path_where_image_data_lives(tmp_path):
    """The data root and containerd's root (the containerd image store keeps images there)."""
    root = make_tree(tmp_path, {"var/lib/docker/.keep": "", "srv/.keep": ""})
    facts = nf.collect(root, "x86_64", "/var/lib/docker", no_run, None, extra_disk_paths=["/srv/containerd"])
    assert [d["path"] for d in facts["disks"]] == ["/var/lib/docker", "/srv/containerd"]
    assert [d["measured_at"] for d in facts["disks"]] == ["/var/lib/docker", "/srv"]
    assert facts["disks"][0] == facts["disk"]
    assert all(d["total_gb"] >= d["free_gb"] >= 0 for d in facts["disks"])


def test_collect_reports_failing_nvidia_smi(tmp_path):
    root = make_tree(tmp_path, {"etc/os-release": "ID=ubuntu\nVERSION_ID=24.04\n"})

    def run(argv):
        nvidia_smi.check_argv(argv[1:])
        return 9, "", "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."

    facts = nf.collect(root, "arm64", "/", run, "/usr/bin/nvidia-smi")
    assert facts["architecture"] == "aarch64"
    assert facts["gpu"]["present"] is False
    assert facts["gpu"]["probe"].startswith("nvidia-smi exited 9: NVIDIA-SMI has failed")


def test_spark_detected_from_dgx_release_without_dmi(tmp_path):
    assert nf.is_dgx_spark("", {"DGX_NAME": "DGX Spark"}) is True
    assert nf.is_dgx_spark("", {"DGX_NAME": "DGX H100"}) is False
    assert nf.is_dgx_spark("NVIDIA DGX Spark", None) is True
    assert nf.is_dgx_spark("Standard PC (Q35)", None) is False


def test_pending_records_lists_each_roles_records_and_nothing_when_absent(tmp_path):
    root = str(tmp_path)
    base = tmp_path / "run/raibid/pending"
    (base / "container_runtime").mkdir(parents=True)
    (base / "container_runtime" / "docker.service.restart").write_text("restart: drop-in\n")
    (base / "container_runtime" / "docker.service.reload").write_text("")
    (base / "registry_cache").mkdir()  # emptied by its last handler: no records
    (base / "stray-file").write_text("")  # not a role directory
    assert nf.pending_records(root, "/run/raibid/pending") == {
        "container_runtime": ["docker.service.reload", "docker.service.restart"]
    }
    assert nf.pending_records(root, "/run/raibid/absent") == {}


def test_collect_reports_pending_records_only_when_asked(tmp_path):
    root = make_tree(tmp_path, {"usr/lib/os-release": "ID=debian\n", "var/lib/.keep": ""})
    (tmp_path / "run/raibid/pending/buildkit").mkdir(parents=True)
    (tmp_path / "run/raibid/pending/buildkit/buildkit.service.restart").write_text("")
    assert "pending" not in nf.collect(root, "x86_64", "/var/lib/docker", no_run, None)
    facts = nf.collect(root, "x86_64", "/var/lib/docker", no_run, None, pending_dir="/run/raibid/pending")
    assert facts["pending_dir"] == "/run/raibid/pending"
    assert facts["pending"] == {"buildkit": ["buildkit.service.restart"]}
