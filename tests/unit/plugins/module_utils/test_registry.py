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
        "bind": "127.0.0.1",
        "loopback": True,
        "host": "127.0.0.1",
        "tls": False,
        "scheme": "http",
        "insecure_http": True,
        "ca_path": "",
        "auth": False,
        "username": "",
        "local": "127.0.0.1:5000",
        "local_url": "http://127.0.0.1:5000",
        "mirrors": {"docker.io": "127.0.0.1:5001", "ghcr.io": "127.0.0.1:5002"},
        "mirror_urls": {"docker.io": "http://127.0.0.1:5001", "ghcr.io": "http://127.0.0.1:5002"},
        "mirror_auth": {"docker.io": False, "ghcr.io": False},
    }


@pytest.mark.parametrize(
    ("bind", "local_url", "docker_hub"),
    [
        ("127.0.0.1", "http://127.0.0.1:5000", "http://127.0.0.1:5001"),
        # A wildcard bind listens on the network, so it serves TLS; clients on the node dial loopback.
        ("0.0.0.0", "https://127.0.0.1:5000", "https://127.0.0.1:5001"),
        ("::", "https://127.0.0.1:5000", "https://127.0.0.1:5001"),
        ("10.0.4.2", "https://10.0.4.2:5000", "https://10.0.4.2:5001"),
        ("fd00::2", "https://[fd00::2]:5000", "https://[fd00::2]:5001"),
        ("[fd00::2]", "https://[fd00::2]:5000", "https://[fd00::2]:5001"),
        ("::1", "http://[::1]:5000", "http://[::1]:5001"),
    ],
)
def test_default_scheme_follows_the_bind_address(bind, local_url, docker_hub):
    ep = reg.registry_endpoints(MIRRORS, bind, 5000)
    assert (ep["local_url"], ep["mirror_urls"]["docker.io"]) == (local_url, docker_hub)


def test_ca_path_and_user_only_where_they_apply():
    ep = reg.registry_endpoints(MIRRORS, "10.0.4.2", 5000, tls=True, ca_path="/ca.crt", username="ci", auth=True)
    assert (ep["ca_path"], ep["username"], ep["auth"]) == ("/ca.crt", "ci", True)
    # A proxy requires the users only where its upstream has credentials (docker.io here, not ghcr.io).
    assert ep["mirror_auth"] == {"docker.io": True, "ghcr.io": False}
    plain = reg.registry_endpoints(MIRRORS, "127.0.0.1", 5000, tls=False, ca_path="/ca.crt", username="ci")
    assert (plain["ca_path"], plain["username"], plain["auth"]) == ("", "", False)
    assert plain["mirror_auth"] == {"docker.io": False, "ghcr.io": False}


def test_endpoints_off_loopback_are_https_and_tls_can_be_forced():
    assert reg.registry_endpoints(MIRRORS, "10.0.4.2", 5000)["mirror_urls"]["ghcr.io"] == "https://10.0.4.2:5002"
    assert reg.registry_endpoints({}, "127.0.0.1", 5000, tls=True)["local_url"] == "https://127.0.0.1:5000"
    assert reg.registry_endpoints({}, "0.0.0.0", 5000, tls=True)["local"] == "127.0.0.1:5000"


def test_air_gapped_has_only_the_writable_registry():
    ep = reg.registry_endpoints({}, "127.0.0.1", 5100)
    assert ep["mirrors"] == {} and ep["local"] == "127.0.0.1:5100"
    assert reg.registry_instances(None, 5100) == [
        {"name": "local", "kind": "writable", "port": 5100, "upstream": None, "auth": False}
    ]


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
        "auth": False,
    }
    assert instances[2]["remote"] == "https://ghcr.io"  # trailing slash dropped


def test_instances_with_users_anonymous_proxies_of_public_upstreams():
    auth = {i["name"]: i["auth"] for i in reg.registry_instances(MIRRORS, 5000, auth=True)}
    assert auth == {"local": True, "docker.io": True, "ghcr.io": False}


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
        "registry_settings_problems",
        "registry_address_problem",
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


USERS = [{"name": "ci", "password": "s3cret-not-shown"}]
PUBLIC = {"docker.io": {"port": 5001, "remote": "https://registry-1.docker.io"}}


@pytest.mark.parametrize(
    "bind", ["127.0.0.1", "0.0.0.0", "::", "10.0.4.2", "fd00::2", "[fd00::2]", "::1", "spark01.lab", "localhost"]
)
def test_settings_accept_every_bind_form_with_tls_and_users(bind):
    assert reg.settings_problems(bind, "selfsigned", USERS, PUBLIC) == []


@pytest.mark.parametrize(
    "bind", ["http://10.0.4.2", "10.0.4.2:5000", "[10.0.4.2]", "", "spark_01", "10.0.4.256", None, 5000]
)
def test_settings_name_a_bad_bind_address(bind):
    problems = reg.settings_problems(bind, "none", [], PUBLIC)
    assert len(problems) == 1 and problems[0].startswith("dgx_spark_registry_bind_address must be an IPv4 address")
    assert repr(bind) in problems[0]


@pytest.mark.parametrize(("bind", "tls", "users"), [("0.0.0.0", "none", USERS), ("10.0.4.2", "selfsigned", [])])
def test_settings_off_loopback_need_tls_and_users(bind, tls, users):
    (problem,) = reg.settings_problems(bind, tls, users, PUBLIC)
    assert f"non-loopback address ({bind}) needs dgx_spark_registry_auth_users" in problem
    assert f"found {len(users)} user(s) and tls mode {tls}" in problem


def test_settings_loopback_needs_neither():
    assert reg.settings_problems("127.0.0.1", "none", [], PUBLIC) == []


def test_settings_refuse_a_private_docker_hub_proxy_with_users_and_never_show_passwords():
    private = {"docker.io": {"port": 5001, "remote": "https://registry-1.docker.io", "username": "u", "password": "pw"}}
    (problem,) = reg.settings_problems("10.0.4.2", "provided", USERS, private)
    assert "dgx_spark_registry_mirrors[docker.io] has upstream credentials" in problem and "moby#30880" in problem
    assert "pw" not in problem and "s3cret" not in problem
    # Without users every proxy is anonymous (loopback only): nothing to refuse.
    assert reg.settings_problems("127.0.0.1", "none", [], private) == []


def test_settings_name_a_bad_tls_mode_with_the_prefix():
    (problem,) = reg.settings_problems("127.0.0.1", "letsencrypt", [], {}, prefix="registry_cache")
    assert problem == "registry_cache_tls_mode must be one of none, selfsigned, provided; got 'letsencrypt'"
