"""Unit tests for plugins/module_utils/registry.py (the node's registry endpoint map)."""

from __future__ import annotations

import pytest

from ansible_collections.raibid.dgx_spark.plugins.filter.registry import FilterModule
from ansible_collections.raibid.dgx_spark.plugins.module_utils import registry as reg

MIRRORS = {
    "ghcr.io": {"port": 5002, "remote": "https://ghcr.io/"},
    "docker.io": {"port": "5001", "remote": "https://registry-1.docker.io", "username": "u", "password": "p"},
}


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.4.2", False),
        ("spark01.lab", False),
        ("", False),
    ],
)
def test_is_loopback(address, loopback):
    assert reg.is_loopback(address) is loopback


@pytest.mark.parametrize(
    ("bind", "host"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("0.0.0.0", "127.0.0.1"),
        ("::", "127.0.0.1"),
        ("10.0.4.2", "10.0.4.2"),
        ("fd00::2", "[fd00::2]"),
        ("[fd00::2]", "[fd00::2]"),
        ("spark01.lab", "spark01.lab"),
    ],
)
def test_client_host(bind, host):
    assert reg.client_host(bind) == host


def test_endpoints_on_loopback_are_plain_http():
    ep = reg.registry_endpoints(MIRRORS, "127.0.0.1", 5000)
    assert ep == {
        "scheme": "http",
        "insecure_http": True,
        "local": "127.0.0.1:5000",
        "local_url": "http://127.0.0.1:5000",
        "mirrors": {"docker.io": "127.0.0.1:5001", "ghcr.io": "127.0.0.1:5002"},
        "mirror_urls": {"docker.io": "http://127.0.0.1:5001", "ghcr.io": "http://127.0.0.1:5002"},
    }


def test_endpoints_off_loopback_are_https_and_tls_can_be_forced():
    assert reg.registry_endpoints(MIRRORS, "10.0.4.2", 5000)["mirror_urls"]["ghcr.io"] == "https://10.0.4.2:5002"
    assert reg.registry_endpoints({}, "127.0.0.1", 5000, tls=True)["local_url"] == "https://127.0.0.1:5000"
    assert reg.registry_endpoints({}, "0.0.0.0", 5000, tls=True)["local"] == "127.0.0.1:5000"


def test_air_gapped_has_only_the_writable_registry():
    ep = reg.registry_endpoints({}, "127.0.0.1", 5100)
    assert ep["mirrors"] == {} and ep["local"] == "127.0.0.1:5100"
    assert reg.registry_instances(None, 5100) == [{"name": "local", "kind": "writable", "port": 5100, "upstream": None}]


def test_instances_writable_first_then_one_proxy_per_upstream():
    instances = reg.registry_instances(MIRRORS, "5000")
    assert [i["name"] for i in instances] == ["local", "docker.io", "ghcr.io"]
    assert instances[0]["port"] == 5000
    docker = instances[1]
    assert docker == {
        "name": "docker.io",
        "kind": "proxy",
        "port": 5001,
        "upstream": "docker.io",
        "remote": "https://registry-1.docker.io",
        "username": "u",
        "password": "p",
        "ttl": "",
    }
    assert instances[2]["remote"] == "https://ghcr.io"  # trailing slash dropped


def test_instance_names_are_systemd_safe():
    assert reg.instance_name("registry.example.com:5000") == "registry.example.com-5000"
    assert reg.instance_name("quay.io") == "quay.io"


def test_filters_are_registered():
    filters = FilterModule().filters()
    assert set(filters) == {
        "registry_endpoints",
        "registry_instances",
        "registry_client_host",
        "registry_is_loopback",
        "registry_mirror_problems",
        "registry_auth_user_problems",
    }


def test_mirror_problems_accepts_good_entries():
    assert reg.mirror_problems(MIRRORS) == []
    assert reg.mirror_problems({}) == []
    assert (
        reg.mirror_problems(
            {"registry.example.com:5000": {"port": 5003, "remote": "http://10.0.0.5:5000", "ttl": "1h30m"}}
        )
        == []
    )


@pytest.mark.parametrize(
    ("mirrors", "needle"),
    [
        ("docker.io", "must be a mapping"),
        ({"docker.io": "https://registry-1.docker.io"}, "registry_cache_mirrors[docker.io] must be a mapping"),
        ({"docker.io": {"port": 5001, "remote": "registry-1.docker.io"}}, "got 'registry-1.docker.io'"),
        ({"docker.io": {"port": 5001, "remote": "https://registry-1.docker.io/v2/"}}, "upstream's root"),
        ({"docker.io": {"port": 5001}}, "registry_cache_mirrors[docker.io].remote is missing"),
        ({"docker.io": {"port": "x", "remote": "https://a"}}, ".port must be an integer; got 'x'"),
        ({"docker.io": {"port": 1, "remote": "https://a", "username": "u"}}, "username set, password unset"),
        ({"docker.io": {"port": 1, "remote": "https://a", "ttl": "a week"}}, ".ttl must be a duration"),
        ({"docker.io": {"port": 1, "remote": "https://a", "tll": "1h"}}, "unknown keys tll"),
        ({"Docker Hub": {"port": 1, "remote": "https://a"}}, "the key must be a registry host name"),
    ],
)
def test_mirror_problems_name_the_entry_and_field(mirrors, needle):
    problems = reg.mirror_problems(mirrors)
    assert any(needle in p for p in problems), problems


def test_mirror_problems_never_show_passwords():
    problems = reg.mirror_problems({"docker.io": {"port": "x", "remote": "nope", "username": "", "password": "s3cret"}})
    assert problems and not any("s3cret" in p for p in problems)


def test_auth_user_problems():
    assert reg.auth_user_problems([{"name": "ci", "password": "p"}]) == []
    problems = reg.auth_user_problems([{"name": "a:b", "password": "s3cret"}, {"name": "c"}, "x"])
    assert len(problems) == 3
    assert "no colon" in problems[0] and "needs a non-empty password" in problems[1]
    assert not any("s3cret" in p for p in problems)
    assert reg.auth_user_problems("ci") == ["registry_cache_auth_users must be a list of {name, password}"]
