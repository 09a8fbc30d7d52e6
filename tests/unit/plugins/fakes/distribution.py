"""Stand-in CNCF distribution registry on 127.0.0.1 (registry_health's probes): ``GET /v2/`` as the registry answers
it, over HTTP or TLS, with or without htpasswd authentication.

``Distribution(status, credentials=("ci", "pw"))`` answers ``GET /v2/`` with ``status`` (200 by default) when the
request's ``Authorization`` is HTTP Basic with those credentials, else 401 with ``WWW-Authenticate: Basic`` and
distribution's ``UNAUTHORIZED`` error, as ``auth: htpasswd`` does; without ``credentials`` it answers ``status``
to anyone. ``starting=[503, ...]`` are answered first, one per request (a registry still starting).
``listening=False`` binds the port without listening, so connections are refused until ``listen()`` (a registry
whose process is not up yet). Every request is kept in ``requests`` as ``(method, path, Authorization or None)``;
any request but ``GET /v2/`` answers 404 and is listed in ``violations``.
"""

from __future__ import annotations

import http.server
import json
import socketserver
import ssl
import threading
from typing import Any, List, Optional, Sequence, Tuple

from ansible_collections.raibid.dgx_spark.plugins.module_utils.registry_health import basic_authorization

UNAUTHORIZED = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required", "detail": None}]}


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    registry: Distribution

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        status, headers, body = self.registry.answer(self.command, self.path, self.headers.get("Authorization"))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _answer


class Distribution:
    def __init__(
        self,
        status: int = 200,
        *,
        credentials: Optional[Tuple[str, str]] = None,
        starting: Sequence[int] = (),
        listening: bool = True,
        certfile: Optional[str] = None,
        keyfile: Optional[str] = None,
    ) -> None:
        self.status = status
        self.authorization = basic_authorization(*credentials) if credentials else None
        self.starting = list(starting)
        self.requests: List[Tuple[str, str, Optional[str]]] = []
        self.violations: List[str] = []
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        handler = type("Handler", (_Handler,), {"registry": self})
        self.server = _Server(("127.0.0.1", 0), handler, bind_and_activate=False)
        self.server.server_bind()
        if certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile, keyfile)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"{'https' if certfile else 'http'}://127.0.0.1:{self.port}"
        if listening:
            self.listen()

    def listen(self) -> None:
        """Start accepting connections (until now they were refused)."""
        self.server.server_activate()
        # A short poll so that close() (shutdown) returns at once, not after serve_forever's default 0.5 s.
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def answer(self, method: str, path: str, authorization: Optional[str]) -> Tuple[int, List[Tuple[str, str]], Any]:
        with self._lock:
            self.requests.append((method, path, authorization))
            if method != "GET" or path != "/v2/":
                self.violations.append(f"{method} {path}")
                return 404, [], {"errors": [{"code": "NOT_FOUND", "message": "not found"}]}
            if self.authorization and authorization != self.authorization:
                return 401, [("WWW-Authenticate", 'Basic realm="basic-realm"')], UNAUTHORIZED
            status = self.starting.pop(0) if self.starting else self.status
            return status, [], {}

    def close(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Distribution:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
