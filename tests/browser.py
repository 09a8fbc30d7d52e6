"""Check a page in headless Chromium over the Chrome DevTools Protocol: render it, screenshot it, and
say what is visible. Made for the fleet health report (playbooks/healthcheck.yml writes
health-report.html from roles/health/templates/health-report.html.j2): every node's row
`tr[data-node="NAME"]` must be visible, and each failing check must be a visible column header over a
visible `td.fail` cell whose background colour differs from an ok cell's (the colour by status really
renders), with a visible `ul.details li.fail` line naming it.

    python tests/browser.py check-report health-report.html --node this-host --node ghost \\
        --failing registry:local --screenshot report.png

exits 0 when everything is visible, 1 with one line per missing thing, 2 when the browser is missing,
does not start or does not answer in time, or on bad usage.

The browser is Debian's `chromium-headless-shell` (or `chromium`); tests/testbed/setup.sh (`make
setup`) installs it. It runs with a temporary profile, no network (the page is a file:// URL), and is
always killed, its whole process group, with its profile removed. Every wait is bounded and names what
hung. Standard library and websocket-client only; imported as `browser` with tests/ on sys.path.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import websocket

# Debian's browsers, preferred first: the headless shell is the same source package, much smaller.
BROWSERS: tuple[tuple[str, Path], ...] = (
    ("chromium-headless-shell", Path("/usr/bin/chromium-headless-shell")),
    ("chromium", Path("/usr/bin/chromium")),
)
# Seconds for each step: the browser's start (first start after boot reads ~200 MB), one DevTools
# call, the page's load. A check of the health report takes about a second.
TIMEOUT_S = 30.0
# The viewport: wide enough for the report's matrix; the screenshot covers the whole page.
WINDOW = (1280, 800)
_DEVTOOLS_LINE = re.compile(r"DevTools listening on (ws://\S+)")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class BrowserError(Exception):
    """The browser is missing, did not start, failed a DevTools call, or did not answer in time."""


# --- pure parts ----------------------------------------------------------------------------------


def find_browser(candidates: Optional[Sequence[tuple[str, Path]]] = None) -> Path:
    """The first executable browser of `candidates` (Debian package name, path; BROWSERS by default)."""
    candidates = candidates or BROWSERS
    for _package, path in candidates:
        if os.access(path, os.X_OK) and path.is_file():
            return path
    wanted = " or ".join(f"{path} (Debian package {package})" for package, path in candidates)
    raise BrowserError(
        f"no headless browser found: looked for {wanted}. Install it with "
        f"`apt-get install -y {candidates[0][0]}`, or run `make setup` (tests/testbed/setup.sh installs it)."
    )


def devtools_url(lines: Iterable[str]) -> Optional[str]:
    """The DevTools websocket URL from the browser's stderr lines ("DevTools listening on ws://..."),
    or None when no line has it yet."""
    for line in lines:
        match = _DEVTOOLS_LINE.search(line)
        if match:
            return match.group(1)
    return None


def browser_args(binary: Path, profile: Path, as_root: bool) -> list[str]:
    """The command line of a headless browser with its own profile, no network use beyond loopback
    DevTools on a free port, and the sandbox off only for root (Chromium refuses root with it)."""
    args = [
        str(binary),
        "--headless",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "--remote-debugging-address=127.0.0.1",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--hide-scrollbars",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--mute-audio",
    ]
    if as_root:
        args.append("--no-sandbox")
    return [*args, "about:blank"]


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG image, from its IHDR chunk."""
    if len(data) < 24 or not data.startswith(_PNG_MAGIC) or data[12:16] != b"IHDR":
        raise ValueError(f"not a PNG image ({len(data)} bytes, starting {data[:8]!r})")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# Runs in the page; returns what it sees as JSON-able values (interpreted by `interpret`). `why` is ""
# when an element is visible, else the reason it is not.
_CHECK_JS = r"""
(() => {
  const nodes = __NODES__, failing = __FAILING__;
  const doc = document.documentElement;
  const pageW = Math.max(doc.scrollWidth, doc.clientWidth), pageH = Math.max(doc.scrollHeight, doc.clientHeight);
  const describe = (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") +
    (e.className && typeof e.className === "string" ? "." + e.className.trim().split(/\s+/).join(".") : "");
  const why = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const s = getComputedStyle(e);
      if (s.display === "none") return "display:none on " + describe(e);
      if (parseFloat(s.opacity) === 0) return "opacity:0 on " + describe(e);
    }
    const vis = getComputedStyle(el).visibility;
    if (vis !== "visible") return "visibility:" + vis;
    const r = el.getBoundingClientRect();
    if (!(r.width > 0 && r.height > 0)) return "its bounding box is empty (" + r.width + "x" + r.height + " px)";
    const x = r.left + window.scrollX, y = r.top + window.scrollY;
    if (x + r.width <= 0 || y + r.height <= 0 || x >= pageW || y >= pageH)
      return "it lies outside the page (box at " + Math.round(x) + "," + Math.round(y) +
        ", page " + pageW + "x" + pageH + " px)";
    return "";
  };
  const rows = Array.from(document.querySelectorAll("tr[data-node]"));
  const out = {title: document.title, page: [pageW, pageH], nodes: {}, failing: {}, ok_background: null};
  for (const name of nodes) {
    const row = rows.find((r) => r.getAttribute("data-node") === name);
    out.nodes[name] = row ? {found: true, why: why(row)} : {found: false, why: "no such row"};
  }
  const table = document.querySelector("table#matrix");
  if (table && table.tBodies.length) {
    const probeRow = table.tBodies[0].insertRow();
    const probe = probeRow.insertCell();
    probe.className = "ok";
    out.ok_background = getComputedStyle(probe).backgroundColor;
    probeRow.remove();
  }
  const headers = table && table.tHead && table.tHead.rows.length ? Array.from(table.tHead.rows[0].cells) : [];
  const details = Array.from(document.querySelectorAll("ul.details li.fail"));
  for (const check of failing) {
    const index = headers.findIndex((th) => th.textContent.trim() === check);
    const result = {header: index >= 0 ? why(headers[index]) : null, cells: [], detail: null};
    if (index >= 0) {
      for (const row of table.querySelectorAll("tbody tr[data-node]")) {
        const cell = row.cells[index];
        if (!cell) continue;
        result.cells.push({node: row.getAttribute("data-node"), status: cell.className, text: cell.textContent.trim(),
                           background: getComputedStyle(cell).backgroundColor, why: why(cell)});
      }
    }
    const line = details.find((li) => li.textContent.replace(/\s+/g, " ").includes(" " + check + " fail:"));
    if (line) result.detail = {text: line.textContent.replace(/\s+/g, " ").trim(), why: why(line)};
    out.failing[check] = result;
  }
  return out;
})()
"""


def check_script(nodes: Sequence[str], failing: Sequence[str]) -> str:
    """The JavaScript expression that looks for `nodes` and `failing` checks in the page (names are
    embedded as JSON, so quotes and markup in them stay text)."""
    return _CHECK_JS.replace("__NODES__", json.dumps(list(nodes))).replace("__FAILING__", json.dumps(list(failing)))


def interpret(seen: dict[str, Any], nodes: Sequence[str], failing: Sequence[str]) -> tuple[list[str], list[str]]:
    """What the page shows and what it lacks, one line each, from `check_script`'s result."""
    found: list[str] = []
    missing: list[str] = []
    for name in nodes:
        node = seen.get("nodes", {}).get(name) or {"found": False}
        if not node["found"]:
            missing.append(f'node {name}: the page has no row tr[data-node="{name}"]')
        elif node["why"]:
            missing.append(f"node {name}: its row is not visible: {node['why']}")
        else:
            found.append(f"node {name}: row visible")
    ok_background = seen.get("ok_background")
    for check in failing:
        result = seen.get("failing", {}).get(check)
        if result is None or result["header"] is None:
            missing.append(f"failing check {check}: no column header with that name in table#matrix")
            continue
        if result["header"]:
            missing.append(f"failing check {check}: its column header is not visible: {result['header']}")
        fails = [c for c in result["cells"] if "fail" in c["status"].split()]
        shown = [c for c in fails if not c["why"]]
        if not fails:
            statuses = ", ".join(f"{c['node']}={c['status']}" for c in result["cells"]) or "no node rows"
            missing.append(f'failing check {check}: no cell of its column has class "fail" ({statuses})')
        elif not shown:
            hidden = ", ".join(f"{c['node']}: {c['why']}" for c in fails)
            missing.append(f"failing check {check}: its fail cells are not visible ({hidden})")
        else:
            coloured = [c for c in shown if c["background"] != ok_background and not _transparent(c["background"])]
            if ok_background is None:
                missing.append(f"failing check {check}: no table#matrix body to compare an ok cell's colour with")
            elif not coloured:
                missing.append(
                    f"failing check {check}: its fail cell's background {shown[0]['background']} is no status "
                    f"colour (an ok cell's is {ok_background}): the colour by status does not render"
                )
            else:
                names = ", ".join(c["node"] for c in coloured)
                found.append(
                    f"failing check {check}: fail cell visible for {names} "
                    f"(background {coloured[0]['background']}, ok is {ok_background})"
                )
        detail = result["detail"]
        if detail is None:
            missing.append(f'failing check {check}: no failure line (ul.details li.fail) reads "{check} fail:"')
        elif detail["why"]:
            missing.append(f"failing check {check}: its failure line is not visible: {detail['why']}")
        else:
            found.append(f"failing check {check}: failure line visible: {detail['text']}")
    return found, missing


def _transparent(colour: str) -> bool:
    return colour in ("transparent", "rgba(0, 0, 0, 0)")


# --- the browser ---------------------------------------------------------------------------------


class DevTools:
    """A DevTools websocket connection: numbered calls, events kept until waited for, bounded reads."""

    def __init__(self, url: str, timeout: float = TIMEOUT_S):
        self.timeout = timeout
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        try:
            self._ws = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
        except (OSError, websocket.WebSocketException) as exc:
            raise BrowserError(f"could not connect to the browser's DevTools at {url}: {exc}") from exc

    def close(self) -> None:
        try:
            self._ws.close(timeout=1)
        except (OSError, websocket.WebSocketException):
            pass  # the browser is gone already

    def _receive(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        self._ws.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            return json.loads(self._ws.recv())
        except websocket.WebSocketTimeoutException:
            raise BrowserError(f"the browser did not send {waiting_for} within {self.timeout:.0f} s") from None
        except (OSError, websocket.WebSocketException) as exc:
            raise BrowserError(f"the DevTools connection broke while waiting for {waiting_for} ({exc!r})") from exc

    def call(self, method: str, params: Optional[dict[str, Any]] = None, session: Optional[str] = None) -> dict:
        """Send one command (to the page `session`, else the browser) and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._ws.send(json.dumps(message))
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._receive(deadline, f"its answer to {method}")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"DevTools {method} failed: {reply['error'].get('message', reply['error'])}")
                return reply.get("result", {})
            if "method" in reply:
                self._events.append(reply)

    def wait_event(self, method: str, session: Optional[str], match: dict[str, Any], what: str) -> dict:
        """The params of the first event `method` of `session` whose params include `match`; `what`
        names the wait in the timeout's message."""

        def wanted(event: dict[str, Any]) -> bool:
            params = event.get("params", {})
            return (
                event.get("method") == method
                and event.get("sessionId") == session
                and all(params.get(k) == v for k, v in match.items())
            )

        deadline = time.monotonic() + self.timeout
        while True:
            for event in self._events:
                if wanted(event):
                    self._events.remove(event)
                    return event.get("params", {})
            self._events.append(self._receive(deadline, what))


class Browser:
    """A headless browser process with a temporary profile and a DevTools connection; a context
    manager that always kills the process group and removes the profile."""

    def __init__(self, binary: Optional[Path] = None, timeout: float = TIMEOUT_S):
        self.binary = binary or find_browser()
        self.timeout = timeout
        self.home: Optional[Path] = None  # made on start: the profile and the stderr log
        self._proc: Optional[subprocess.Popen] = None
        self.devtools: Optional[DevTools] = None

    def __enter__(self) -> Browser:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> Optional[int]:
        """The browser's process ID, also its process group's; None once closed."""
        return self._proc.pid if self._proc else None

    @property
    def _log(self) -> Path:
        assert self.home is not None
        return self.home / "stderr.log"

    def output(self) -> str:
        """The end of the browser's stderr, for messages."""
        try:
            lines = self._log.read_text(errors="replace").splitlines()[-15:]
        except (OSError, AssertionError):
            return "    (no output)"
        return "\n".join(f"    {line}" for line in lines) or "    (no output)"

    def _start(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="raibid-browser-"))
        args = browser_args(self.binary, self.home / "profile", as_root=os.geteuid() == 0)
        with self._log.open("wb") as log:
            # A session of its own: Debian's /usr/bin wrappers run the real binary as a child, and the
            # browser forks renderers; killing the group stops them all.
            self._proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + self.timeout
        while True:
            url = devtools_url(self._log.read_text(errors="replace").splitlines())
            if url:
                break
            if self._proc.poll() is not None:
                raise BrowserError(
                    f"{self.binary} exited with status {self._proc.returncode} before it listened for DevTools; "
                    f"its output ends:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                raise BrowserError(
                    f"{self.binary} did not print 'DevTools listening on ws://...' within {self.timeout:.0f} s; "
                    f"its output ends:\n{self.output()}"
                )
            time.sleep(0.05)
        self.devtools = DevTools(url, self.timeout)

    def close(self) -> None:
        """Close the browser (politely, then SIGKILL to its process group) and remove its profile."""
        polite = False
        if self.devtools is not None:
            try:
                self.devtools.call("Browser.close")
                polite = True
            except BrowserError:
                pass  # killed below
            self.devtools.close()
            self.devtools = None
        if self._proc is not None:
            proc, self._proc = self._proc, None
            if polite:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            _kill_group(proc.pid)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                raise BrowserError(f"{self.binary} (PID {proc.pid}) did not die within 10 s of SIGKILL") from None
        if self.home is None:
            return
        for attempt in range(3):  # a dying renderer may still write into the profile
            try:
                shutil.rmtree(self.home)
                break
            except FileNotFoundError:
                break
            except OSError:
                if attempt == 2:
                    raise
                time.sleep(0.2)


def _kill_group(pgid: int) -> None:
    """SIGKILL the process group `pgid` and wait (bounded) until none of it runs."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not _running_in_group(pgid):
            return
        time.sleep(0.05)


def _running_in_group(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@dataclass
class ReportCheck:
    """What one check of a page found: the browser, the screenshot, what is visible, what is not."""

    page: Path
    browser: str
    binary: Path
    screenshot: Path
    screenshot_size: tuple[int, int]
    found: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.missing


def check_report(
    page: Path,
    nodes: Sequence[str],
    failing: Sequence[str],
    screenshot: Path,
    *,
    binary: Optional[Path] = None,
    timeout: float = TIMEOUT_S,
) -> ReportCheck:
    """Render `page` in the headless browser, write a full-page PNG to `screenshot`, and look for
    each of `nodes` and `failing` checks (see the module's docstring). Raises BrowserError when the
    browser is missing, fails or hangs; what the page lacks is in the result's `missing`."""
    started = time.monotonic()
    page = Path(page).resolve()
    if not page.is_file():
        raise BrowserError(f"no page to check at {page}: no such file")
    with Browser(binary, timeout) as browser:
        tools = browser.devtools
        assert tools is not None
        version = tools.call("Browser.getVersion").get("product", "unknown")
        target = tools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = tools.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        tools.call("Page.enable", session=session)
        tools.call("Page.setLifecycleEventsEnabled", {"enabled": True}, session)
        nav = tools.call("Page.navigate", {"url": page.as_uri()}, session)
        if nav.get("errorText"):
            raise BrowserError(f"the browser could not open {page.as_uri()}: {nav['errorText']}")
        load = {"name": "load", "loaderId": nav.get("loaderId")}
        tools.wait_event("Page.lifecycleEvent", session, load, f"the load event of {page.as_uri()}")

        metrics = tools.call("Page.getLayoutMetrics", session=session)
        content = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {
            "x": 0,
            "y": 0,
            "width": max(math.ceil(content["width"]), WINDOW[0]),
            "height": max(math.ceil(content["height"]), 1),
            "scale": 1,
        }
        shot = tools.call(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}, session
        )
        png = base64.b64decode(shot["data"])
        size = png_size(png)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(png)

        evaluated = tools.call(
            "Runtime.evaluate", {"expression": check_script(nodes, failing), "returnByValue": True}, session
        )
        if "exceptionDetails" in evaluated:
            details = evaluated["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"the page check's JavaScript failed in {page}: {text}")
        seen = evaluated["result"].get("value") or {}
    found, missing = interpret(seen, nodes, failing)
    return ReportCheck(page, version, browser.binary, screenshot, size, found, missing, time.monotonic() - started)


# --- command line --------------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The command line; argparse exits 2 on bad usage."""
    parser = argparse.ArgumentParser(prog="browser.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("check-report", help="check a health-report.html in headless Chromium")
    report.add_argument("page", type=Path, help="the HTML page (health-report.html)")
    report.add_argument("--node", action="append", required=True, help="a node whose row must be visible")
    report.add_argument("--failing", action="append", required=True, help="a check that must show as failing")
    report.add_argument("--screenshot", type=Path, required=True, help="where to write the full-page PNG")
    report.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds for each browser step")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        result = check_report(args.page, args.node, args.failing, args.screenshot, timeout=args.timeout)
    except BrowserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    width, height = result.screenshot_size
    print(f"browser: {result.browser} ({result.binary})")
    print(f"screenshot: {result.screenshot} ({width}x{height} px, {result.screenshot.stat().st_size} bytes)")
    for line in result.found:
        print(f"ok: {line}")
    for line in result.missing:
        print(f"missing: {line}")
    print(f"{'all visible' if result.ok else f'{len(result.missing)} missing'} in {result.seconds:.1f} s")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
