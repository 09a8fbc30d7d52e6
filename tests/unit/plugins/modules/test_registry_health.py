"""Unit tests for the registry_health module glue: arguments, check mode, validation before any probe, the
result's shape and the password kept out of it, against stand-in registries on 127.0.0.1
(fakes/distribution.py)."""

from __future__ import annotations

import functools
import json

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils.registry_health import basic_authorization
from ansible_collections.raibid.dgx_spark.plugins.modules import registry_health
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.fakes.distribution import Distribution
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.modules.module_runner import shown

PASSWORD = "s3cret-Pa55"


@pytest.fixture
def run(run_module):
    return functools.partial(run_module, registry_health)


@pytest.fixture
def registries():
    """A writable registry with htpasswd and an open pull-through proxy, both healthy."""
    local, proxy = Distribution(credentials=("ci", PASSWORD)), Distribution()
    yield local, proxy
    local.close()
    proxy.close()


@pytest.mark.parametrize("check_mode", [False, True])
def test_healthy_registries_never_changed(run, registries, check_mode):
    local, proxy = registries
    code, result = run(
        {
            "registries": [
                {"name": "local", "url": local.url, "username": "ci", "password": PASSWORD},
                {"name": "docker.io", "url": proxy.url + "/", "required": False},
            ],
            "_ansible_check_mode": check_mode,
        }
    )
    assert code == 0, result
    assert result["elapsed_ms"] >= 0
    assert {key: value for key, value in result.items() if key not in ("invocation", "elapsed_ms")} == {
        "changed": False,
        "registries": [
            {"name": "local", "url": local.url, "status": 200, "healthy": True, "required": True, "attempts": 1,
             "message": ""},
            {"name": "docker.io", "url": proxy.url + "/", "status": 200, "healthy": True, "required": False,
             "attempts": 1, "message": ""},
        ],
        "unhealthy": [],
        "unhealthy_required": [],
        "healthy": True,
    }  # fmt: skip
    assert local.requests == [("GET", "/v2/", basic_authorization("ci", PASSWORD))]
    assert proxy.requests == [("GET", "/v2/", None)]
    # no_log: the password is masked in the echoed arguments too
    assert PASSWORD not in json.dumps(result)


def test_unhealthy_registries_do_not_fail_the_task(run, registries):
    local, _proxy = registries
    with Distribution(listening=False) as down:
        code, result = run(
            {
                "registries": [
                    {"name": "local", "url": local.url, "username": "ci", "password": "wrong-" + PASSWORD},
                    {"name": "docker.io", "url": down.url, "required": False},
                ],
                "retries": 2,
                "delay": 0.01,
                "timeout": 1,
            }
        )
    assert code == 0 and not result.get("failed") and result["changed"] is False
    assert [(r["status"], r["attempts"]) for r in result["registries"]] == [(401, 3), (None, 1)]
    assert result["registries"][0]["message"] == (
        f"GET {local.url}/v2/ answered 401 (expected 200): the registry refused the credentials of user 'ci'"
    )
    assert "refused" in result["registries"][1]["message"]
    assert (result["unhealthy"], result["unhealthy_required"], result["healthy"]) == (
        ["local", "docker.io"],
        ["local"],
        False,
    )
    assert PASSWORD not in json.dumps(result) and len(local.requests) == 3


def test_bad_arguments_fail_before_any_probe(run, registries):
    local, _proxy = registries
    code, result = run(
        {
            "registries": [
                {"name": "local", "url": local.url + "/v2/", "password": PASSWORD},
                {"name": "local", "url": local.url, "ca_path": "/etc/ca.pem"},
            ],
            "retries": -1,
            "timeout": 0,
        }
    )
    assert code == 1 and result["failed"] is True
    assert result["problems"] == [
        f"registries[0].url: '{local.url}/v2/' must be the registry's root (scheme, host and port only) (expected "
        "http:// or https:// with host and port only, e.g. https://127.0.0.1:5000 or http://[::1]:5001)",
        "registries[0].username: missing while password is set (expected both username and password, or neither "
        "for a registry without authentication)",
        "registries[1].name: 'local' is also registries[0].name (expected each name once)",
        f"registries[1].ca_path: set but url '{local.url}' is not https:// (expected ca_path only with https://)",
        "retries: -1 is not a whole number >= 0 (expected e.g. 10)",
        "timeout: 0 is not a number of seconds > 0 (expected e.g. 2)",
    ]
    assert result["msg"] == "; ".join(result["problems"]) + ". Nothing was probed."
    assert local.requests == [] and PASSWORD not in json.dumps(result)


def test_argument_spec_refuses_a_missing_url_and_unknown_options(run):
    code, result = run({"registries": [{"name": "local"}]})
    assert code == 1 and "missing required arguments: url" in result["msg"]
    code, result = run({"registries": [{"name": "local", "url": "http://127.0.0.1:5000", "port": 5000}]})
    assert code == 1 and "port" in result["msg"]


def test_defaults(run, registries):
    _local, proxy = registries
    code, result = run({"registries": [{"name": "docker.io", "url": proxy.url}]})
    assert code == 0 and result["registries"][0]["required"] is True and result["healthy"] is True
    assert result["invocation"]["module_args"]["retries"] == 10
    assert result["invocation"]["module_args"]["delay"] == 1
    assert result["invocation"]["module_args"]["timeout"] == 2
    assert "invocation" not in json.loads(shown(result))
