"""One registry endpoint for every client: binds x consumers.

For each bind address (loopback, the IPv4 wildcard, a LAN IPv4 address, an IPv6 address) real Ansible
renders what every consumer of the node's registries gets, from the roles' own defaults, vars and
templates: daemon.json's registry-mirrors (container_runtime), buildkitd.toml (buildkit), k3s
registries.yaml (registry_cache), the KEDA image registry (keda), the agent image reference (agent_image
and the ScaledJob's, agent_jobs), the health probes (health) and the DinD daemon's mirror (agent_jobs).
Each must name the same endpoint, and each must be a valid URL or reference: https whenever the
registries serve TLS (any non-loopback bind), never a wildcard host, IPv6 in brackets.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import ROOT, run_playbook

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROLES = ROOT / "roles"
# Each role's defaults, then its vars, as Ansible layers them (the overrides come last).
LAYERS = [
    f"{ROLES}/{role}/{kind}/main.yml"
    for role in (
        "dgx_spark",
        "container_runtime",
        "registry_cache",
        "buildkit",
        "agent_image",
        "health",
        "keda",
        "agent_jobs",
    )
    for kind in ("defaults", "vars")
    if (ROLES / role / kind / "main.yml").exists()
]

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
{includes}
    - ansible.builtin.include_vars: {overrides}
    - ansible.builtin.template:
        src: {roles}/buildkit/templates/buildkitd.toml.j2
        dest: {out}/buildkitd.toml
        mode: "0644"
    - ansible.builtin.template:
        src: {roles}/registry_cache/templates/registries.yaml.j2
        dest: {out}/registries.yaml
        mode: "0644"
    - ansible.builtin.copy:
        dest: {out}/consumers.json
        mode: "0644"
        content: >-
          {{{{ {{
               'endpoints': dgx_spark_registry_endpoints,
               'daemon_json_mirrors': container_runtime_registry_mirrors,
               'keda_image_registry': keda_image_registry,
               'agent_image_repository': agent_image_repository,
               'agent_image_cache_ref': agent_image_cache_ref,
               'scaledjob_image_repository': agent_jobs_image_repository,
               'dind_image': agent_jobs_dind_image,
               'dind_mirror': agent_jobs_registry_endpoints.mirror_urls['docker.io'] | default(''),
               'health_urls': [health_registry_endpoints.local_url]
                              + health_registry_endpoints.mirror_urls.values() | list,
               'health_ca_path': health_registry_ca_path,
               'buildkit_ca_path': buildkit_registry_ca_path,
               'registry_health_urls': registry_cache_health_targets | map(attribute='url') | list,
             }} | to_json }}}}
"""

USERS = [{"name": "ci", "password": "table-test-not-a-secret"}]
OFF_LOOPBACK = {"dgx_spark_registry_tls_mode": "selfsigned", "dgx_spark_registry_auth_users": USERS}
SELFSIGNED_CA = "/usr/local/share/ca-certificates/raibid-registry-ca.crt"

# bind -> (extra settings, the host clients on the node dial, scheme, the host a DinD Pod dials or None)
BINDS = {
    "127.0.0.1": ({}, "127.0.0.1", "http", None),
    # A wildcard listens on the network too: TLS; the node dials loopback, Pods the address given them.
    "0.0.0.0": ({**OFF_LOOPBACK, "agent_jobs_registry_address": "10.0.4.2"}, "127.0.0.1", "https", "10.0.4.2"),
    "10.0.4.2": (OFF_LOOPBACK, "10.0.4.2", "https", "10.0.4.2"),
    "fd00::2": (OFF_LOOPBACK, "[fd00::2]", "https", "[fd00::2]"),
}


def run_layered(tmp_path: Path, playbook: str, overrides: dict) -> None:
    """Run ``playbook`` on localhost with the roles' layers and then ``overrides`` loaded; files land in tmp_path."""
    (tmp_path / "overrides.yml").write_text(json.dumps(overrides))
    includes = "\n".join(f"    - ansible.builtin.include_vars: {layer}" for layer in LAYERS)
    play = tmp_path / "play.yml"
    play.write_text(playbook.format(includes=includes, overrides=tmp_path / "overrides.yml", roles=ROLES, out=tmp_path))
    run = run_playbook(play, {"ansible_check_mode": False}, False)
    assert run.rc == 0, run.output


def render(tmp_path: Path, overrides: dict) -> dict:
    run_layered(tmp_path, PLAYBOOK, overrides)
    consumers = json.loads((tmp_path / "consumers.json").read_text())
    consumers["buildkitd"] = tomllib.loads((tmp_path / "buildkitd.toml").read_text())
    consumers["k3s"] = yaml.safe_load((tmp_path / "registries.yaml").read_text())
    return consumers


def valid_url(url: str, scheme: str, host: str, port: int) -> None:
    parts = urlsplit(url)  # raises on a malformed IPv6 host
    assert (parts.scheme, parts.netloc, parts.path) == (scheme, f"{host}:{port}", ""), url
    assert parts.port == port, url
    assert parts.hostname not in ("0.0.0.0", "::"), url


@pytest.mark.parametrize("bind", list(BINDS))
def test_every_consumer_gets_the_same_valid_endpoint(tmp_path, bind):
    extra, host, scheme, pod_host = BINDS[bind]
    got = render(tmp_path, {"dgx_spark_registry_bind_address": bind, **extra})
    local, docker_hub, ghcr = f"{host}:5000", f"{host}:5001", f"{host}:5002"
    tls = scheme == "https"

    ep = got["endpoints"]
    assert (ep["host"], ep["scheme"], ep["local"], ep["mirrors"]) == (
        host,
        scheme,
        local,
        {"docker.io": docker_hub, "ghcr.io": ghcr},
    )
    for url, port in [
        (ep["local_url"], 5000),
        (ep["mirror_urls"]["docker.io"], 5001),
        (ep["mirror_urls"]["ghcr.io"], 5002),
    ]:
        valid_url(url, scheme, host, port)

    # daemon.json: Docker Hub's proxy only, with the scheme the proxy serves.
    assert got["daemon_json_mirrors"] == [f"{scheme}://{docker_hub}"]
    # buildkitd.toml: the upstreams mirror to the same host:port; TLS hosts get the CA, plain ones http.
    registry = got["buildkitd"]["registry"]
    assert registry["docker.io"]["mirrors"] == [docker_hub] and registry["ghcr.io"]["mirrors"] == [ghcr]
    for endpoint in (local, docker_hub, ghcr):
        assert registry[endpoint] == ({"ca": [SELFSIGNED_CA]} if tls else {"http": True}), endpoint
    # k3s registries.yaml: the same URLs, and the CA and user where TLS and auth are on.
    mirrors = got["k3s"]["mirrors"]
    assert mirrors["docker.io"]["endpoint"] == [f"{scheme}://{docker_hub}"]
    assert mirrors["ghcr.io"]["endpoint"] == [f"{scheme}://{ghcr}"]
    assert mirrors[local]["endpoint"] == [f"{scheme}://{local}"]
    if tls:
        for endpoint in (local, docker_hub, ghcr):
            assert got["k3s"]["configs"][endpoint]["auth"]["username"] == "ci"
            assert got["k3s"]["configs"][endpoint]["tls"]["ca_file"] == SELFSIGNED_CA
    else:
        assert "configs" not in got["k3s"]
    # The KEDA images through the ghcr.io proxy; the agent image and its cache in the writable registry.
    assert got["keda_image_registry"] == ghcr
    assert got["agent_image_repository"] == got["scaledjob_image_repository"] == f"{local}/raibid-ci-agent"
    assert got["agent_image_cache_ref"] == f"{local}/cache/raibid-ci-agent:buildcache"
    assert got["dind_image"] == f"{docker_hub}/library/docker:28.5.2-dind"
    # The health checks probe what the clients use, with the CA they use.
    assert got["health_urls"] == [f"{scheme}://{local}", f"{scheme}://{docker_hub}", f"{scheme}://{ghcr}"]
    assert got["registry_health_urls"] == got["health_urls"]
    assert got["health_ca_path"] == got["buildkit_ca_path"] == (SELFSIGNED_CA if tls else "")
    # A DinD Pod dials the node at an address it can reach: never loopback nor a wildcard, always TLS.
    if pod_host is None:
        assert got["dind_mirror"] == ""
    else:
        valid_url(got["dind_mirror"], "https", pod_host, 5001)


CONFIGS_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
{includes}
    - ansible.builtin.include_vars: {overrides}
    - ansible.builtin.template:
        src: {roles}/registry_cache/templates/config.yml.j2
        dest: "{out}/{{{{ item.name }}}}.yml"
        mode: "0600"
      loop: "{{{{ registry_cache_instances }}}}"
      loop_control:
        label: "{{{{ item.name }}}}"
"""


@pytest.mark.parametrize("bind", ["127.0.0.1", "10.0.4.2"])
def test_with_users_the_writable_registry_and_private_proxies_require_them(tmp_path, bind):
    """The auth decision, on loopback as off it: users given -> the writable registry requires them (nothing
    that merely reaches the node's loopback can replace the agent image); a proxy of a public upstream stays
    anonymous (dockerd cannot send credentials to a registry mirror, moby#30880); a proxy whose upstream has
    credentials serves private content and requires them."""
    overrides = {
        "dgx_spark_registry_bind_address": bind,
        "dgx_spark_registry_tls_mode": "selfsigned",
        "dgx_spark_registry_auth_users": USERS,
        "dgx_spark_registry_mirrors": {
            "docker.io": {"port": 5001, "remote": "https://registry-1.docker.io"},
            "ghcr.io": {"port": 5002, "remote": "https://ghcr.io", "username": "bot", "password": "upstream-pw"},
        },
    }
    run_layered(tmp_path, CONFIGS_PLAYBOOK, overrides)
    configs = {
        name: yaml.safe_load((tmp_path / f"{name}.yml").read_text()) for name in ("local", "docker.io", "ghcr.io")
    }
    assert configs["local"]["auth"]["htpasswd"]["path"] == "/etc/raibid-registry/htpasswd"
    assert "auth" not in configs["docker.io"]
    assert configs["ghcr.io"]["auth"]["htpasswd"]["realm"] == "raibid-registry"
    for config in configs.values():
        assert config["http"]["tls"]["certificate"] == "/etc/raibid-registry/tls/server.crt"
