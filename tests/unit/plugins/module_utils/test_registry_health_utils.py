"""Unit tests for plugins/module_utils/registry_health.py: validation before any probe, the rounds (retries,
delay, required or not) on a fake clock, and the probes against stand-in registries on 127.0.0.1
(fakes/distribution.py: open, htpasswd, TLS, starting, not listening)."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Tuple

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils import node_health as nh
from ansible_collections.raibid.dgx_spark.plugins.module_utils import registry_health as rh
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.fakes import certs
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.fakes.distribution import Distribution

PASSWORD = "s3cret-Pa55"
TOKEN = rh.basic_authorization("ci", PASSWORD)


class FakeClock:
    """``clock()`` and ``sleep(seconds)``: sleeping only moves the clock (and runs ``on_sleep``)."""

    def __init__(self, on_sleep: Optional[Any] = None) -> None:
        self.now = 100.0
        self.sleeps: List[float] = []
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(len(self.sleeps))


def run(registries: List[Dict[str, Any]], fake: Optional[FakeClock] = None, **options: Any) -> Dict[str, Any]:
    fake = fake or FakeClock()
    plan = rh.validate({"registries": registries, "retries": 2, "delay": 1.5, "timeout": 2, **options})
    return rh.registry_health(plan, clock=fake.clock, sleep=fake.sleep)


def by_name(result: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {entry["name"]: entry for entry in result["registries"]}


def refused_url() -> str:
    with Distribution(listening=False) as closed:
        return closed.url


# --- validation -------------------------------------------------------------------------------------------


def problems(params: Dict[str, Any]) -> List[str]:
    with pytest.raises(rh.RegistryHealthError) as exc:
        rh.validate(params)
    assert str(exc.value) == "; ".join(exc.value.problems)
    return exc.value.problems


def test_a_valid_set_becomes_a_plan(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("PEM\n")
    plan = rh.validate(
        {
            "registries": [
                {
                    "name": "local",
                    "url": "https://127.0.0.1:5000",
                    "ca_path": str(ca),
                    "username": "ci",
                    "password": "x",
                },
                {"name": "docker.io", "url": "http://[::1]:5001/", "required": False},
                {"name": "ghcr.io", "url": "http://localhost", "ca_path": None, "username": None, "password": None},
            ],
            "retries": 0,
            "delay": 0,
            "timeout": 0.5,
        }
    )
    assert plan.retries == 0 and plan.delay == 0.0 and plan.timeout == 0.5
    assert [(r.name, r.required, r.headers()) for r in plan.registries] == [
        ("local", True, {"Authorization": rh.basic_authorization("ci", "x")}),
        ("docker.io", False, {}),
        ("ghcr.io", True, {}),
    ]
    assert "password" not in repr(plan.registries[0]) and "'x'" not in repr(plan)
    assert rh.validate({"registries": []}) == rh.Plan([], 10, 1.0, 2.0)


def test_basic_authorization_is_rfc7617():
    # RFC 7617 section 2's example, and UTF-8 for what is not ASCII.
    assert rh.basic_authorization("Aladdin", "open sesame") == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    assert rh.basic_authorization("test", "123\u00a3") == "Basic dGVzdDoxMjPCow=="


def test_every_bad_field_is_named_at_once_and_no_password_is_shown(tmp_path):
    found = problems(
        {
            "registries": [
                {"name": "", "url": "ftp://127.0.0.1:5000"},
                {"name": "local", "url": "https://127.0.0.1:5000/v2/", "password": PASSWORD},
                {"name": "local", "url": "http://127.0.0.1:5001", "ca_path": "/etc/ca.pem", "username": "ci"},
                {"name": "quay", "url": "https://127.0.0.1:99999", "username": "c:i", "password": ""},
                {"name": "ghcr", "url": f"https://ci:{PASSWORD}@127.0.0.1:5002", "required": "yes", "tls": True},
                {"name": "gcr", "url": "https://127.0.0.1:5003", "ca_path": str(tmp_path / "none.pem")},
                "local",
            ],
            "retries": -1,
            "delay": -0.5,
            "timeout": 0,
        }
    )
    form = "(expected http:// or https:// with host and port only, e.g. https://127.0.0.1:5000 or http://[::1]:5001)"
    both = "expected both username and password, or neither for a registry without authentication"
    assert found == [
        "registries[0].name: '' is not a name (expected a non-empty name, e.g. local or docker.io)",
        f"registries[0].url: 'ftp://127.0.0.1:5000' needs the scheme http:// or https:// {form}",
        "registries[1].url: 'https://127.0.0.1:5000/v2/' must be the registry's root (scheme, host and port only) "
        + form,
        f"registries[1].username: missing while password is set ({both})",
        "registries[2].name: 'local' is also registries[1].name (expected each name once)",
        "registries[2].ca_path: set but url 'http://127.0.0.1:5001' is not https:// (expected ca_path only with "
        "https://)",
        f"registries[2].password: missing while username is set ({both})",
        "registries[3].url: 'https://127.0.0.1:99999' is not a URL (Port out of range 0-65535) " + form,
        "registries[3].username: 'c:i' holds ':' (expected a name without ':', as Basic auth needs)",
        "registries[3].password: is empty or not a string (expected the user's password)",
        "registries[4]: unknown key(s) tls (known: name, url, ca_path, username, password, required)",
        "registries[4].url: 'https://***@127.0.0.1:5002' must be the registry's root (scheme, host and port only) "
        + form,
        "registries[4].required: 'yes' is not a boolean (expected true or false)",
        f"registries[5].ca_path: {tmp_path}/none.pem is not a file (expected the PEM CA certificate that verifies "
        "the registry's TLS certificate)",
        "registries[6]: expected a dict with name and url (and ca_path, username, password, required)",
        "retries: -1 is not a whole number >= 0 (expected e.g. 10)",
        "delay: -0.5 is not a number of seconds >= 0 (expected e.g. 1)",
        "timeout: 0 is not a number of seconds > 0 (expected e.g. 2)",
    ]
    assert PASSWORD not in json.dumps(found)


@pytest.mark.parametrize("registries", [None, "local", {"name": "local"}])
def test_registries_must_be_a_list(registries):
    assert problems({"registries": registries}) == [
        f"registries: expected a list of dicts, got {type(registries).__name__}"
    ]


# --- rounds on a fake clock ---------------------------------------------------------------------------------


class ScriptedProbe:
    """Answers per URL, one per call (the last one repeats); records every call."""

    def __init__(self, answers: Mapping[str, List[Tuple[Optional[int], str]]]) -> None:
        self.answers = {url: list(values) for url, values in answers.items()}
        self.calls: List[Tuple[str, Optional[str], float, Dict[str, str]]] = []

    def __call__(self, url: str, ca_path: Optional[str], timeout: float, headers: Mapping[str, str]):
        self.calls.append((url, ca_path, timeout, dict(headers)))
        values = self.answers[url]
        return values.pop(0) if len(values) > 1 else values[0]


def scripted(answers: Mapping[str, List[Tuple[Optional[int], str]]], registries, retries=3, delay=2.0):
    probe, fake = ScriptedProbe(answers), FakeClock()
    plan = rh.validate({"registries": registries, "retries": retries, "delay": delay, "timeout": 0.25})
    return rh.registry_health(plan, probe=probe, clock=fake.clock, sleep=fake.sleep), probe, fake


def test_all_healthy_takes_one_round_and_no_sleep():
    result, probe, fake = scripted(
        {"http://a:1": [(200, "")], "http://b:2": [(200, "")]},
        [{"name": "a", "url": "http://a:1"}, {"name": "b", "url": "http://b:2", "required": False}],
    )
    assert fake.sleeps == [] and len(probe.calls) == 2 and result["elapsed_ms"] == 0
    assert result == {
        "registries": [
            {"name": "a", "url": "http://a:1", "status": 200, "healthy": True, "required": True, "attempts": 1,
             "message": ""},
            {"name": "b", "url": "http://b:2", "status": 200, "healthy": True, "required": False, "attempts": 1,
             "message": ""},
        ],
        "unhealthy": [],
        "unhealthy_required": [],
        "healthy": True,
        "elapsed_ms": 0,
    }  # fmt: skip


def test_a_required_registry_is_waited_for_and_a_proxy_probed_once():
    refused = (None, "[Errno 111] Connection refused")
    result, probe, fake = scripted(
        {"http://local:5000": [refused, (503, ""), (200, "")], "http://proxy:5001": [refused]},
        [
            {"name": "local", "url": "http://local:5000"},
            {"name": "proxy", "url": "http://proxy:5001", "required": False},
        ],
    )
    assert [call[0] for call in probe.calls] == ["http://local:5000", "http://proxy:5001"] + ["http://local:5000"] * 2
    assert fake.sleeps == [2.0, 2.0] and result["elapsed_ms"] == 4000
    local, proxy = result["registries"]
    assert (local["status"], local["healthy"], local["attempts"], local["message"]) == (200, True, 3, "")
    assert (proxy["status"], proxy["healthy"], proxy["attempts"]) == (None, False, 1)
    assert proxy["message"] == "GET http://proxy:5001/v2/: [Errno 111] Connection refused"
    assert (result["unhealthy"], result["unhealthy_required"], result["healthy"]) == (["proxy"], [], True)


def test_retries_run_out_with_a_delay_between_rounds_only():
    result, probe, fake = scripted({"http://a:1/": [(503, "")]}, [{"name": "a", "url": "http://a:1/"}], retries=3)
    assert len(probe.calls) == 4 and fake.sleeps == [2.0, 2.0, 2.0] and result["elapsed_ms"] == 6000
    assert result["registries"][0]["attempts"] == 4
    assert result["registries"][0]["message"] == "GET http://a:1/v2/ answered 503 (expected 200)"
    assert (result["unhealthy"], result["unhealthy_required"], result["healthy"]) == (["a"], ["a"], False)


def test_zero_retries_is_one_round():
    result, probe, fake = scripted(
        {"http://a:1": [(None, "timed out"), (200, "")]}, [{"name": "a", "url": "http://a:1"}], 0
    )
    assert len(probe.calls) == 1 and fake.sleeps == [] and result["unhealthy_required"] == ["a"]


def test_only_the_registries_still_failing_are_probed_again():
    result, probe, _fake = scripted(
        {"http://a:1": [(None, "refused"), (200, "")], "http://b:2": [(None, "refused"), (None, "refused"), (200, "")],
         "http://c:3": [(200, "")]},
        [{"name": "a", "url": "http://a:1"}, {"name": "b", "url": "http://b:2"}, {"name": "c", "url": "http://c:3"}],
    )  # fmt: skip
    assert [call[0][-1] for call in probe.calls] == ["1", "2", "3", "1", "2", "2"]
    assert [r["attempts"] for r in result["registries"]] == [2, 3, 1] and result["healthy"] is True


def test_the_probe_gets_url_ca_path_timeout_and_the_authorization(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("PEM\n")
    _result, probe, _fake = scripted(
        {"https://a:1": [(200, "")], "http://b:2": [(200, "")]},
        [{"name": "a", "url": "https://a:1", "ca_path": str(ca), "username": "ci", "password": PASSWORD},
         {"name": "b", "url": "http://b:2"}],
    )  # fmt: skip
    assert probe.calls == [("https://a:1", str(ca), 0.25, {"Authorization": TOKEN}), ("http://b:2", None, 0.25, {})]


def test_a_probe_that_raises_is_that_registry_unhealthy_and_never_shows_the_password():
    def probe(url, ca_path, timeout, headers):
        raise RuntimeError(f"boom {headers['Authorization']} {PASSWORD}")

    fake = FakeClock()
    plan = rh.validate({"registries": [{"name": "a", "url": "http://a:1", "username": "ci", "password": PASSWORD}],
                        "retries": 1, "delay": 0})  # fmt: skip
    result = rh.registry_health(plan, probe=probe, clock=fake.clock, sleep=fake.sleep)
    entry = result["registries"][0]
    assert (entry["status"], entry["attempts"]) == (None, 2)
    assert entry["message"] == "GET http://a:1/v2/: probe error: RuntimeError: boom Basic ******** ********"
    assert PASSWORD not in json.dumps(result) and TOKEN.split()[1] not in json.dumps(result)


def test_no_registries_is_healthy_without_a_probe():
    result, probe, fake = scripted({}, [])
    assert result == {"registries": [], "unhealthy": [], "unhealthy_required": [], "healthy": True, "elapsed_ms": 0}
    assert probe.calls == [] and fake.sleeps == []


# --- against stand-in registries on 127.0.0.1 ----------------------------------------------------------------


def test_open_and_htpasswd_registries_answer_200():
    with Distribution() as open_registry, Distribution(credentials=("ci", PASSWORD)) as auth:
        result = run(
            [
                {"name": "open", "url": open_registry.url},
                {"name": "auth", "url": auth.url + "/", "username": "ci", "password": PASSWORD},
            ]
        )
    assert [(r["name"], r["status"], r["healthy"], r["attempts"]) for r in result["registries"]] == [
        ("open", 200, True, 1),
        ("auth", 200, True, 1),
    ]
    assert open_registry.requests == [("GET", "/v2/", None)] and auth.requests == [("GET", "/v2/", TOKEN)]
    assert open_registry.violations == auth.violations == []
    assert result["healthy"] is True and PASSWORD not in json.dumps(result)


def test_401_404_and_refused_are_unhealthy_with_a_message():
    url = refused_url()
    with Distribution(credentials=("ci", PASSWORD)) as auth, Distribution(404) as wrong:
        result = run(
            [
                {"name": "no-credentials", "url": auth.url},
                {"name": "wrong-password", "url": auth.url, "username": "ci", "password": "not-" + PASSWORD},
                {"name": "not-a-registry", "url": wrong.url},
                {"name": "down", "url": url, "required": False},
            ],
            retries=1,
            delay=0,
        )
    entries = by_name(result)
    assert [(r["status"], r["attempts"]) for r in result["registries"]] == [(401, 2), (401, 2), (404, 2), (None, 1)]
    assert entries["no-credentials"]["message"] == (
        f"GET {auth.url}/v2/ answered 401 (expected 200): the registry requires authentication "
        "(set username and password)"
    )
    assert entries["wrong-password"]["message"] == (
        f"GET {auth.url}/v2/ answered 401 (expected 200): the registry refused the credentials of user 'ci'"
    )
    assert entries["not-a-registry"]["message"] == f"GET {wrong.url}/v2/ answered 404 (expected 200)"
    assert entries["down"]["message"].startswith(f"GET {url}/v2/: ") and "refused" in entries["down"]["message"]
    assert result["unhealthy"] == ["no-credentials", "wrong-password", "not-a-registry", "down"]
    assert result["unhealthy_required"] == ["no-credentials", "wrong-password", "not-a-registry"]
    assert result["healthy"] is False
    assert PASSWORD not in json.dumps(result)
    # the wrong credentials were sent, the right ones never
    assert {auth_header for _m, _p, auth_header in auth.requests} == {
        None,
        rh.basic_authorization("ci", "not-" + PASSWORD),
    }


def test_a_registry_that_starts_during_the_wait_becomes_healthy():
    registry = Distribution(starting=[503], listening=False)
    fake = FakeClock(on_sleep=lambda count: registry.listen() if count == 1 else None)
    try:
        result = run([{"name": "local", "url": registry.url}], fake, retries=5, delay=3)
    finally:
        registry.close()
    (entry,) = result["registries"]
    # refused, then 503 (starting), then 200
    assert (entry["status"], entry["healthy"], entry["attempts"], entry["message"]) == (200, True, 3, "")
    assert fake.sleeps == [3.0, 3.0] and result["elapsed_ms"] == 6000 and len(registry.requests) == 2


def test_real_delay_between_rounds():
    with Distribution(503) as registry:
        plan = rh.validate({"registries": [{"name": "a", "url": registry.url}], "retries": 2, "delay": 0.05})
        result = rh.registry_health(plan)
    assert result["registries"][0]["attempts"] == 3 and len(registry.requests) == 3
    assert 100 <= result["elapsed_ms"] < 1000


def test_tls_with_ca_path_and_credentials(tmp_path):
    ca, cert, key = certs.server_for_localhost(tmp_path)
    with Distribution(credentials=("ci", PASSWORD), certfile=str(cert), keyfile=str(key)) as registry:
        result = run(
            [
                {"name": "verified", "url": registry.url, "ca_path": str(ca), "username": "ci", "password": PASSWORD},
                {"name": "system-cas", "url": registry.url, "username": "ci", "password": PASSWORD, "required": False},
            ]
        )
    verified, system = result["registries"]
    assert (verified["status"], verified["healthy"]) == (200, True)
    assert system["status"] is None and "CERTIFICATE_VERIFY_FAILED" in system["message"]
    assert registry.requests == [("GET", "/v2/", TOKEN)]
    assert PASSWORD not in json.dumps(result)


def test_node_health_probe_sends_the_headers_and_still_works_without():
    with Distribution(credentials=("ci", PASSWORD)) as registry:
        assert nh.probe_registry(registry.url, None, 2, {"Authorization": TOKEN}) == (200, "")
        assert nh.probe_registry(registry.url, None, 2) == (401, "")
    assert registry.requests == [("GET", "/v2/", TOKEN), ("GET", "/v2/", None)]
