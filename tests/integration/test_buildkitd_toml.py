"""buildkitd.toml as the buildkit role renders it: parsed as TOML and checked key by key.

The template is rendered by real Ansible (the template module on localhost, with the role's and the
collection's defaults), so filters and defaults are exactly those the role uses on a node.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_playbook

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.include_vars: {roles}/dgx_spark/defaults/main.yml
    - ansible.builtin.include_vars: {roles}/dgx_spark/vars/main.yml
    - ansible.builtin.include_vars: {roles}/buildkit/defaults/main.yml
    - ansible.builtin.include_vars: {roles}/buildkit/vars/main.yml
    - ansible.builtin.include_vars: {overrides}
    - ansible.builtin.template:
        src: {roles}/buildkit/templates/buildkitd.toml.j2
        dest: {dest}
        mode: "0644"
"""


def render(tmp_path: Path, overrides: dict) -> dict:
    dest = tmp_path / "buildkitd.toml"
    (tmp_path / "overrides.yml").write_text(json.dumps(overrides))
    play = tmp_path / "play.yml"
    play.write_text(PLAYBOOK.format(roles=ROOT / "roles", overrides=tmp_path / "overrides.yml", dest=dest))
    run = run_playbook(play, None, False)
    assert run.rc == 0, run.output
    text = dest.read_text()
    return tomllib.loads(text)


def test_defaults_mirror_docker_hub_and_ghcr_through_the_node(tmp_path):
    conf = render(tmp_path, {})
    assert conf["root"] == "/var/lib/buildkit"
    assert conf["registry"]["docker.io"]["mirrors"] == ["127.0.0.1:5001"]
    assert conf["registry"]["ghcr.io"]["mirrors"] == ["127.0.0.1:5002"]
    for host in ("127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002"):
        assert conf["registry"][host]["http"] is True
    worker = conf["worker"]["oci"]
    assert worker["max-parallelism"] == 4
    assert worker["gc"] is True
    assert (worker["reservedSpace"], worker["maxUsedSpace"], worker["minFreeSpace"]) == (
        "10240MB",
        "204800MB",
        "102400MB",
    )
    first, everything = worker["gcpolicy"]
    assert "type==exec.cachemount" in first["filters"] and first["keepDuration"] == "48h"
    assert everything["all"] is True and everything["maxUsedSpace"] == "204800MB"
    assert conf["worker"]["containerd"]["enabled"] is False


def test_settings_flow_into_the_file(tmp_path):
    conf = render(
        tmp_path,
        {
            "buildkit_max_parallelism": 12,
            "buildkit_gc_keep_duration": "72h",
            "buildkit_gc_reserved_space_mb": 0,
            "buildkit_gc_enabled": False,
            "buildkit_mirror_upstreams": ["ghcr.io"],
            "dgx_spark_registry_local_port": 5100,
        },
    )
    worker = conf["worker"]["oci"]
    assert worker["max-parallelism"] == 12 and worker["gc"] is False
    assert "reservedSpace" not in worker and "reservedSpace" not in worker["gcpolicy"][1]
    assert worker["gcpolicy"][0]["keepDuration"] == "72h"
    assert "docker.io" not in conf["registry"]
    assert conf["registry"]["ghcr.io"]["mirrors"] == ["127.0.0.1:5002"]
    assert set(conf["registry"]) == {"ghcr.io", "127.0.0.1:5002", "127.0.0.1:5100"}


def test_tls_registries_get_the_ca_the_endpoint_map_names(tmp_path):
    conf = render(
        tmp_path,
        {
            "dgx_spark_registry_bind_address": "10.0.4.2",
            "dgx_spark_registry_tls_mode": "provided",
            "dgx_spark_registry_ca_path": "/etc/pki/lab-ca.pem",
            "dgx_spark_registry_mirrors": {"docker.io": {"port": 5001, "remote": "https://registry-1.docker.io"}},
        },
    )
    assert conf["registry"]["docker.io"]["mirrors"] == ["10.0.4.2:5001"]
    for host in ("10.0.4.2:5000", "10.0.4.2:5001"):
        assert "http" not in conf["registry"][host]
        assert conf["registry"][host]["ca"] == ["/etc/pki/lab-ca.pem"]
    # buildkit_registry_ca_path still wins when an inventory sets it.
    conf = render(
        tmp_path,
        {
            "dgx_spark_registry_bind_address": "10.0.4.2",
            "dgx_spark_registry_tls_mode": "selfsigned",
            "buildkit_registry_ca_path": "/etc/raibid-registry/tls/ca.crt",
        },
    )
    assert conf["registry"]["10.0.4.2:5002"] == {"ca": ["/etc/raibid-registry/tls/ca.crt"]}


def test_air_gapped_has_no_mirrors(tmp_path):
    conf = render(tmp_path, {"dgx_spark_registry_mirrors": {}})
    assert conf["registry"] == {"127.0.0.1:5000": {"http": True}}
