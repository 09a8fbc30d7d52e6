"""Where the KEDA v2.20.2 CRDs come from (tests/support.py keda_crd): a mirror directory, the shared
copy next to the checkout, or a download checked against its pinned sha256 -- and a failure that says
how to provide them, never a skip. The download is served by a local HTTP server through the URL
override (this machine cannot reach GitHub); no test bed is needed."""

from __future__ import annotations

import functools
import hashlib
import http.server
import re
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import support  # tests/support.py

NAME = "scaledjobs"
FILE = "keda.sh_scaledjobs.yaml"
CONTENT = b"apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: scaledjobs.keda.sh}\n"


@pytest.fixture
def pinned(monkeypatch, tmp_path) -> Path:
    """Pins for a stand-in file, the cache under tmp_path and no shared mirror; returns the cache dir."""
    monkeypatch.setitem(support.KEDA_CRDS_SHA256, FILE, hashlib.sha256(CONTENT).hexdigest())
    monkeypatch.setattr(support, "KEDA_CRDS_DEFAULT_DIR", tmp_path / "no-shared-mirror")
    monkeypatch.setattr(support, "KEDA_CRDS_CACHE", tmp_path / "cache")
    return tmp_path / "cache"


@pytest.fixture
def server(tmp_path) -> Iterator[tuple[str, Path, list[str]]]:
    """An HTTP server on 127.0.0.1: (base URL, the directory it serves there, the paths requested)."""
    root = tmp_path / "served"
    served = root / "keda"
    served.mkdir(parents=True)
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/keda/", served, requests
    httpd.shutdown()
    httpd.server_close()


def test_downloaded_once_checked_and_then_read_from_the_cache(pinned, server):
    url, served, requests = server
    (served / FILE).write_bytes(CONTENT)
    env = {support.KEDA_CRDS_URL_ENV: url}
    path = support.keda_crd(NAME, env)
    assert path == pinned / FILE and path.read_bytes() == CONTENT
    assert requests == [f"/keda/{FILE}"]
    (served / FILE).unlink()
    assert support.keda_crd(NAME, env) == path
    assert len(requests) == 1, "the second call reads the cache"
    assert not list(pinned.glob("*.part"))


def test_a_download_with_another_checksum_is_an_error_and_not_kept(pinned, server):
    url, served, _ = server
    (served / FILE).write_bytes(CONTENT + b"# changed upstream\n")
    with pytest.raises(support.KedaCrdError) as err:
        support.keda_crd(NAME, {support.KEDA_CRDS_URL_ENV: url})
    message = str(err.value)
    assert f"downloaded from {url}{FILE}" in message
    assert f"expected {support.KEDA_CRDS_SHA256[FILE]}" in message
    assert not (pinned / FILE).exists()


def test_a_stale_cache_file_is_downloaded_again(pinned, server):
    url, served, requests = server
    (served / FILE).write_bytes(CONTENT)
    pinned.mkdir()
    (pinned / FILE).write_bytes(b"truncated")
    assert support.keda_crd(NAME, {support.KEDA_CRDS_URL_ENV: url}).read_bytes() == CONTENT
    assert requests == [f"/keda/{FILE}"]


def test_no_mirror_and_no_download_fails_saying_how_to_provide_them(pinned, server):
    url, _served, _ = server  # serves nothing: 404
    with pytest.raises(support.KedaCrdError) as err:
        support.keda_crd(NAME, {support.KEDA_CRDS_URL_ENV: url})
    message = str(err.value)
    assert "404" in message
    for needed in (support.KEDA_CRDS_DIR_ENV, support.KEDA_CRDS_URL_ENV, support.KEDA_CRDS_SHA256[FILE]):
        assert needed in message
    assert f"{support.KEDA_CRDS_URL}/{FILE}" in message, "the pinned URL, not only the override"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): a connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_server_fails_the_same_way(pinned):
    url = f"http://127.0.0.1:{closed_port()}/"
    with pytest.raises(support.KedaCrdError, match=f"{support.KEDA_CRDS_DIR_ENV}.*Connection refused"):
        support.keda_crd(NAME, {support.KEDA_CRDS_URL_ENV: url})


def test_a_mirror_directory_is_used_and_checked(pinned, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / FILE).write_bytes(CONTENT)
    env = {support.KEDA_CRDS_DIR_ENV: str(mirror), support.KEDA_CRDS_URL_ENV: f"http://127.0.0.1:{closed_port()}/"}
    assert support.keda_crd(NAME, env) == mirror / FILE
    (mirror / FILE).write_bytes(CONTENT + b"\n")
    with pytest.raises(support.KedaCrdError, match=re.escape(f"is not the pinned KEDA v2.20.2 {FILE}")):
        support.keda_crd(NAME, env)
    (mirror / FILE).unlink()
    with pytest.raises(support.KedaCrdError, match=re.escape(f"has no {FILE}")):
        support.keda_crd(NAME, env)
    assert not pinned.exists(), "a given mirror is never replaced by a download"


def test_the_shared_mirror_is_the_default(pinned, monkeypatch, tmp_path):
    shared = tmp_path / "shared-data"
    shared.mkdir()
    (shared / FILE).write_bytes(CONTENT)
    monkeypatch.setattr(support, "KEDA_CRDS_DEFAULT_DIR", shared)
    assert support.keda_crd(NAME, {}) == shared / FILE


def test_only_pinned_crds_are_asked_for():
    with pytest.raises(support.KedaCrdError, match="not one of the pinned"):
        support.keda_crd("scaledthings", {})


def test_the_pins_are_the_shared_mirrors_files():
    """Where the shared mirror is next to the checkout (our machines), each pinned checksum is its
    file's. Elsewhere there is nothing here to compare with; the integration tests' keda_crds fixture
    checks every downloaded file against the same pins."""
    if support.KEDA_CRDS_DEFAULT_DIR.is_dir():
        for filename, sha in support.KEDA_CRDS_SHA256.items():
            assert support.sha256_file(support.KEDA_CRDS_DEFAULT_DIR / filename) == sha, filename
    assert support.KEDA_CRDS_URL.startswith(f"https://raw.githubusercontent.com/kedacore/keda/{support.KEDA_COMMIT}/")
