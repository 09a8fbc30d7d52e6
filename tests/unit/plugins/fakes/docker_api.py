"""Stand-in Docker Engine API on a unix socket, and a stand-in registry ``/v2/`` on TCP (node_health's probes).

``EngineAPI(socket_path, info=..., version=..., images=...)`` serves, as dockerd does (HTTP/1.1, keep-alive,
JSON), the routes of the Engine API the module uses, with or without a ``/v1.NN`` prefix: ``GET /info``,
``GET /version`` and ``GET /images/{name}/json`` (a name without a tag or digest means ``:latest``; an
unknown image is dockerd's 404 ``No such image``). Any other route answers dockerd's 404 ``page not found``
and is listed in ``violations``, as is a method other than GET; ``delay`` holds every answer back that many
seconds (an engine that hangs). ``Registry(status)`` answers ``GET /v2/`` with ``status`` over HTTP, or over
TLS with ``certfile``/``keyfile``; any other request is a violation.
"""

from __future__ import annotations

import http.server
import json
import re
import socketserver
import ssl
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import unquote

# dockerd's API router (moby api/server/router): the version prefix is optional.
_VERSIONED = re.compile(r"^/v1\.\d+(/.*)$")
_IMAGE = re.compile(r"^/images/(.+)/json$")

# `GET /info` of docker-ce 29 on DGX OS with the containerd image store, trimmed to what the check reads and a
# few neighbours.
INFO_DGX: Dict[str, Any] = {
    "ID": "8c0f1a4e-3f5b-4b0e-9d8a-0f6a1c2b3d4e",
    "Containers": 2,
    "Images": 14,
    "Driver": "overlayfs",
    "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]],
    "DockerRootDir": "/var/lib/docker",
    "LiveRestoreEnabled": True,
    "Runtimes": {"io.containerd.runc.v2": {"path": "runc"}, "nvidia": {"path": "nvidia-container-runtime"}, "runc": {}},
    "DefaultRuntime": "runc",
    "ServerVersion": "29.0.1",
}
VERSION_DGX: Dict[str, Any] = {"Version": "29.0.1", "ApiVersion": "1.52", "MinAPIVersion": "1.24", "Os": "linux"}


def _reference(name: str) -> str:
    last = name.rsplit("/", 1)[-1]
    return name if (":" in last or "@" in name) else name + ":latest"


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _TCPHTTPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Docker/29.0.1 (linux)"
    stand_in: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def address_string(self) -> str:
        return "stand-in"

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        status, body = self.stand_in.answer("GET", self.path)
        self._reply(status, body)

    def _refuse(self) -> None:
        status, body = self.stand_in.answer(self.command, self.path)
        self._reply(status, body)

    do_POST = do_PUT = do_DELETE = do_HEAD = _refuse


class _Service:
    server: socketserver.BaseServer

    def __init__(self) -> None:
        self.requests: List[Tuple[str, str]] = []
        self.violations: List[str] = []
        self._thread: Optional[threading.Thread] = None

    def answer(self, method: str, path: str) -> Tuple[int, Any]:
        raise NotImplementedError

    def _serve(self, server: socketserver.BaseServer) -> None:
        handler = type("Handler", (_Handler,), {"stand_in": self})
        server.RequestHandlerClass = handler  # type: ignore[attr-defined]
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> _Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EngineAPI(_Service):
    def __init__(
        self,
        socket_path: str,
        info: Optional[Mapping[str, Any]] = None,
        version: Optional[Mapping[str, Any]] = None,
        images: Optional[Mapping[str, Mapping[str, Any]]] = None,
        delay: float = 0.0,
    ) -> None:
        super().__init__()
        self.info = dict(INFO_DGX if info is None else info)
        self.version = dict(VERSION_DGX if version is None else version)
        self.images = {_reference(k): dict(v) for k, v in (images or {}).items()}
        self.delay = delay
        self._serve(_UnixHTTPServer(socket_path, _Handler))

    def answer(self, method: str, path: str) -> Tuple[int, Any]:
        self.requests.append((method, path))
        if self.delay:
            time.sleep(self.delay)
        route = path.split("?", 1)[0]
        match = _VERSIONED.match(route)
        route = match.group(1) if match else route
        image = _IMAGE.match(route)
        if method == "GET" and route == "/info":
            return 200, self.info
        if method == "GET" and route == "/version":
            return 200, self.version
        if method == "GET" and image:
            name = _reference(unquote(image.group(1)))
            if name in self.images:
                return 200, self.images[name]
            return 404, {"message": f"No such image: {name}"}
        self.violations.append(f"{method} {path}")
        return 404, {"message": "page not found"}


class Registry(_Service):
    """``GET /v2/`` answers ``status``; over TLS when ``certfile`` and ``keyfile`` are given."""

    def __init__(self, status: int = 200, certfile: Optional[str] = None, keyfile: Optional[str] = None) -> None:
        super().__init__()
        self.status = status
        server = _TCPHTTPServer(("127.0.0.1", 0), _Handler)
        if certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile, keyfile)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self.url = f"{'https' if certfile else 'http'}://127.0.0.1:{self.port}"
        self._serve(server)

    def answer(self, method: str, path: str) -> Tuple[int, Any]:
        self.requests.append((method, path))
        if method != "GET" or path != "/v2/":
            self.violations.append(f"{method} {path}")
            return 404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]}
        if self.status == 401:
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
        return self.status, {}
