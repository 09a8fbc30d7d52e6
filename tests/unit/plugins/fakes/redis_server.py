"""Stand-in Redis server: checks each command against Redis's documented syntax and answers from a script.

It listens on 127.0.0.1 and speaks RESP2, and RESP3 after ``HELLO 3`` (redis-py 8 starts every
connection with it), so the real redis-py client (as the job_queue module builds it) turns method
calls into commands and parses the replies. It keeps no data: every reply to a data command is one
the test scripted, so what a test asserts is how our code used the commands and read the replies,
never a number the stand-in computed. (The real server runs in tests/integration/test_smoke_redis.py.)

A command outside the documented syntax gets the error reply Redis would give; a command the stand-in
does not simulate, or a data command without a scripted reply, gets a ``fake:`` one. Each is recorded
in ``violations``, and leaving the ``with`` block with violations fails the test, even where the
client swallowed the error.
"""

from __future__ import annotations

import re
import socket
import threading
from collections import deque
from typing import Any, BinaryIO, Callable, Deque, Dict, List, Optional, Sequence

# Syntax of the commands our code and redis-py's connection setup send, common to every Redis from
# 7.0 (KEDA's lag mode needs XINFO GROUPS' lag, new in 7.0) on. Source: the Redis command reference,
# redis.io/docs/latest/commands/<name>/ (ping, auth, select, client-setinfo, exists, xlen, xinfo-groups,
# xgroup-create, xadd, hello), each page's syntax line and "History". XADD's KEEPREF/DELREF/ACKED (8.2 only)
# are left out, as is anything a 7.0 server would refuse.
#   HELLO [protover [AUTH username password] [SETNAME clientname]]
#   PING [message]
#   AUTH [username] password
#   SELECT index
#   CLIENT SETINFO <LIB-NAME libname | LIB-VER libver>        (7.2; older servers reply an error)
#   EXISTS key [key ...]
#   XLEN key
#   XINFO GROUPS key
#   XGROUP CREATE key group <id | $> [MKSTREAM] [ENTRIESREAD entries-read]
#   XADD key [NOMKSTREAM] [<MAXLEN | MINID> [= | ~] threshold [LIMIT count]] <* | id> field value [field value ...]
CONTAINER_COMMANDS = ("CLIENT", "XGROUP", "XINFO")
# redis-py 8 asks for maintenance notifications on every RESP3 connection and carries on when the server
# does not know the subcommand (Redis 7 does not): answered as Redis 7 answers, and not a violation.
REFUSED_BY_REDIS_7 = {"CLIENT MAINT_NOTIFICATIONS": "ERR unknown subcommand 'MAINT_NOTIFICATIONS'. Try CLIENT HELP."}
HANDSHAKE = ("AUTH", "CLIENT SETINFO", "HELLO", "PING", "SELECT", *REFUSED_BY_REDIS_7)

_STREAM_ID = re.compile(r"^\d+(-\d+)?$")
_INTEGER = re.compile(r"^-?\d+$")


class Error(str):
    """An error reply (``-ERR ...``)."""


class Status(str):
    """A simple-string reply (``+OK``)."""


class CommandError(Exception):
    """A command Redis would refuse; the message is Redis's error reply."""


def group_entry(
    name: str,
    *,
    consumers: int = 0,
    pending: int = 0,
    last_delivered_id: str = "0-0",
    entries_read: Optional[int] = 0,
    lag: Optional[int] = 0,
) -> Dict[str, Any]:
    """One group of an ``XINFO GROUPS`` reply as Redis 7 sends it: a map in RESP3, flat name/value
    pairs in RESP2 (``encode`` does that)."""
    return {
        "name": name,
        "consumers": consumers,
        "pending": pending,
        "last-delivered-id": last_delivered_id,
        "entries-read": entries_read,
        "lag": lag,
    }


def _check_hello(args: Sequence[str]) -> None:
    rest = list(args)
    if rest:
        if rest.pop(0) not in ("2", "3"):
            raise CommandError("NOPROTO unsupported protocol version")
    while rest:
        word = rest.pop(0).upper()
        if word == "AUTH" and len(rest) >= 2:
            del rest[:2]
        elif word == "SETNAME" and rest:
            rest.pop(0)
        else:
            raise CommandError(f"ERR Syntax error in HELLO option '{word.lower()}'")


def _arity(name: str, args: Sequence[str], low: int, high: Optional[int] = None) -> None:
    if len(args) < low or (high is not None and len(args) > high):
        raise CommandError(f"ERR wrong number of arguments for '{name.lower()}' command")


def _check_xgroup_create(args: Sequence[str]) -> None:
    _arity("xgroup|create", args, 3)
    key_group_id, rest = args[:3], list(args[3:])
    if key_group_id[2] != "$" and not _STREAM_ID.match(key_group_id[2]):
        raise CommandError("ERR Invalid stream ID specified as stream command argument")
    while rest:
        word = rest.pop(0).upper()
        if word == "MKSTREAM":
            continue
        if word == "ENTRIESREAD" and rest and _INTEGER.match(rest[0]):
            rest.pop(0)
            continue
        raise CommandError("ERR syntax error")


def _check_xadd(args: Sequence[str]) -> None:
    _arity("xadd", args, 4)
    rest = list(args[1:])
    if rest[0].upper() == "NOMKSTREAM":
        rest.pop(0)
    if rest and rest[0].upper() in ("MAXLEN", "MINID"):
        rest.pop(0)
        if rest and rest[0] in ("=", "~"):
            rest.pop(0)
        if not rest:
            raise CommandError("ERR syntax error")
        rest.pop(0)
        if rest and rest[0].upper() == "LIMIT":
            rest.pop(0)
            if not rest or not _INTEGER.match(rest.pop(0)):
                raise CommandError("ERR syntax error")
    if not rest or (rest[0] != "*" and not re.match(r"^\d+(-(\d+|\*))?$", rest[0])):
        raise CommandError("ERR Invalid stream ID specified as stream command argument")
    fields = rest[1:]
    if not fields or len(fields) % 2:
        raise CommandError("ERR wrong number of arguments for 'xadd' command")


def _check_client_setinfo(args: Sequence[str]) -> None:
    _arity("client|setinfo", args, 2, 2)
    if args[0].upper() not in ("LIB-NAME", "LIB-VER"):
        raise CommandError(f"ERR Unrecognized option '{args[0]}'")


def _check_select(args: Sequence[str]) -> None:
    _arity("select", args, 1, 1)
    if not _INTEGER.match(args[0]):
        raise CommandError("ERR value is not an integer or out of range")


SYNTAX: Dict[str, Callable[[Sequence[str]], None]] = {
    "HELLO": _check_hello,
    "PING": lambda args: _arity("ping", args, 0, 1),
    "AUTH": lambda args: _arity("auth", args, 1, 2),
    "SELECT": _check_select,
    "CLIENT SETINFO": _check_client_setinfo,
    "EXISTS": lambda args: _arity("exists", args, 1),
    "XLEN": lambda args: _arity("xlen", args, 1, 1),
    "XINFO GROUPS": lambda args: _arity("xinfo|groups", args, 1, 1),
    "XGROUP CREATE": _check_xgroup_create,
    "XADD": _check_xadd,
}


def encode(value: Any, protocol: int = 2) -> bytes:
    """``value`` as a RESP reply: Error, Status, None (null), int, str (bulk), a list, or a dict (a map in
    RESP3, flat key/value pairs in RESP2) of those."""
    if isinstance(value, bool):
        raise TypeError("script 1 or 0, not a boolean")
    if isinstance(value, dict) and protocol != 3:
        value = [item for pair in value.items() for item in pair]
    if isinstance(value, Error):
        reply = b"-" + value.encode() + b"\r\n"
    elif isinstance(value, Status):
        reply = b"+" + value.encode() + b"\r\n"
    elif value is None:
        reply = b"_\r\n" if protocol == 3 else b"$-1\r\n"
    elif isinstance(value, int):
        reply = b":%d\r\n" % value
    elif isinstance(value, str):
        reply = b"$%d\r\n%s\r\n" % (len(value.encode()), value.encode())
    elif isinstance(value, dict):
        reply = b"%%%d\r\n" % len(value) + b"".join(encode(k, 3) + encode(v, 3) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        reply = b"*%d\r\n" % len(value) + b"".join(encode(item, protocol) for item in value)
    else:
        raise TypeError(f"cannot encode {value!r} as a reply")
    return reply


def _read_command(stream: BinaryIO) -> Optional[List[str]]:
    """One command (a RESP array of bulk strings, as clients send them); None at end of stream."""
    header = stream.readline()
    if not header:
        return None
    if not header.startswith(b"*"):
        raise CommandError(f"fake: expected a RESP array, got {header!r}")
    args: List[str] = []
    while len(args) < int(header[1:]):
        size = stream.readline()
        if not size.startswith(b"$"):
            raise CommandError(f"fake: expected a bulk string, got {size!r}")
        args.append(stream.read(int(size[1:]) + 2)[:-2].decode())
    return args


class FakeRedis:
    """``with FakeRedis() as server:`` a stand-in listening on ``server.host``:``server.port``.

    ``reply(command, value, ...)`` queues replies for a command (``"XINFO GROUPS"``, ``"XLEN"``), taken
    in order; ``answer(command, value)`` gives the reply for every call once the queue is empty.
    ``commands`` holds every command received; ``sent()`` the ones that are not connection setup.
    """

    def __init__(self, password: Optional[str] = None, version: str = "7.0.15") -> None:
        self.password = password
        self.version = version
        self.commands: List[List[str]] = []
        self.violations: List[str] = []
        self._queued: Dict[str, Deque[Any]] = {}
        self._standing: Dict[str, Any] = {}
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._threads: List[threading.Thread] = []
        self._connections: List[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> FakeRedis:
        self._accepting.start()
        return self

    def __exit__(self, exc_type: Any, *_rest: Any) -> None:
        self._listener.close()
        for conn in self._connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=5)
        if exc_type is None and self.violations:
            raise AssertionError("the stand-in Redis refused commands:\n" + "\n".join(self.violations))

    def reply(self, command: str, *values: Any) -> None:
        self._queued.setdefault(command.upper(), deque()).extend(values)

    def answer(self, command: str, value: Any) -> None:
        self._standing[command.upper()] = value

    def sent(self) -> List[List[str]]:
        """The commands received, without connection setup (AUTH, CLIENT SETINFO, SELECT) and PING."""
        return [c for c in self.commands if _name(c) not in HANDSHAKE]

    def _accept(self) -> None:
        while True:
            try:
                conn, _addr = self._listener.accept()
            except OSError:
                return
            self._connections.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        protocol = 2
        with conn, conn.makefile("rb") as stream:
            while True:
                try:
                    args = _read_command(stream)
                except (CommandError, OSError, ValueError) as exc:
                    self.violations.append(str(exc))
                    return
                if args is None:
                    return
                reply = self._handle(args)
                if _name(args) == "HELLO" and len(args) > 1 and not isinstance(reply, Error):
                    protocol = int(args[1])
                try:
                    conn.sendall(encode(reply, protocol))
                except OSError:
                    return

    def _handle(self, args: List[str]) -> Any:
        with self._lock:
            self.commands.append(args)
            name = _name(args)
            if name in REFUSED_BY_REDIS_7:
                return Error(REFUSED_BY_REDIS_7[name])
            check = SYNTAX.get(name)
            if check is None:
                return self._refuse(args, f"ERR fake: {name} is not simulated (only {', '.join(SYNTAX)})")
            try:
                check(args[len(name.split()) :])
            except CommandError as exc:
                return self._refuse(args, str(exc))
            if name in HANDSHAKE:
                return self._connection_reply(name, args)
            return self._scripted(name, args)

    def _scripted(self, name: str, args: List[str]) -> Any:
        if self._queued.get(name):
            return self._queued[name].popleft()
        if name in self._standing:
            return self._standing[name]
        return self._refuse(args, f"ERR fake: no reply scripted for {name}")

    def _connection_reply(self, name: str, args: List[str]) -> Any:
        """Redis's fixed answers to connection setup: PING, AUTH, HELLO, SELECT, CLIENT SETINFO."""
        words = [a.upper() for a in args]
        reply: Any = Status("OK")
        if name == "PING":
            reply = Status("PONG") if len(args) == 1 else args[1]
        elif name == "AUTH" and self.password is None:
            reply = Error("ERR AUTH <password> called without any password configured for the default user.")
        elif "AUTH" in words and args[-1 if name == "AUTH" else words.index("AUTH") + 2] != self.password:
            reply = Error("WRONGPASS invalid username-password pair or user is disabled.")
        elif name == "HELLO":
            reply = {
                "server": "redis",
                "version": self.version,
                "proto": int(args[1]) if len(args) > 1 else 2,
                "id": 1,
                "mode": "standalone",
                "role": "master",
                "modules": [],
            }
        return reply

    def _refuse(self, args: List[str], message: str) -> Error:
        self.violations.append(f"{args}: {message}")
        return Error(message)


def _name(args: Sequence[str]) -> str:
    """``XGROUP CREATE`` for a container command, else the command's first word, upper case."""
    head = args[0].upper() if args else ""
    if head in CONTAINER_COMMANDS and len(args) > 1:
        return f"{head} {args[1].upper()}"
    return head
