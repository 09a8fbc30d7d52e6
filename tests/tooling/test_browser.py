"""tests/browser.py, the headless-Chromium page check: its pure parts (the DevTools URL in the
browser's stderr, the command line, the reading of what the page script saw, PNG sizes), its start
and clean-up against stand-in browsers, and real renders of hand-written pages in the browser that
tests/testbed/setup.sh installs (those fail, naming the package, when it is missing)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import browser  # tests/browser.py

STDERR = """\
[1203/165304.730656:ERROR:dbus/bus.cc:405] Failed to connect to the bus: Failed to connect to socket
[1203/165304.748083:WARNING:device/bluetooth/dbus/bluez_dbus_manager.cc:209] Floss manager service not available

DevTools listening on ws://127.0.0.1:38297/devtools/browser/f43caff8-20e1-4a79-b925-231b36b8c8f5
[1203/165304.829296:WARNING:media/gpu/vaapi/vaapi_wrapper.cc:1655] drmGetDevices2() has not found any devices
"""


def png(width: int, height: int) -> bytes:
    """A minimal valid PNG (one grey row repeated)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    raw = (b"\x00" + b"\x80" * width) * height
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def gone(pid: int) -> bool:
    """The process is gone, or a zombie waiting to be reaped (within 5 s)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] == "Z":
                return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.05)
    return False


def require_browser() -> None:
    """Fail (no skip: this project allows none unlisted) when no browser is installed."""
    try:
        browser.find_browser()
    except browser.BrowserError as exc:
        pytest.fail(str(exc), pytrace=False)


# --- pure parts ------------------------------------------------------------------------------------


def test_the_devtools_url_is_found_among_the_browsers_noise():
    lines = STDERR.splitlines()
    assert browser.devtools_url(lines) == "ws://127.0.0.1:38297/devtools/browser/f43caff8-20e1-4a79-b925-231b36b8c8f5"
    assert browser.devtools_url(lines[:3]) is None  # not printed yet
    assert browser.devtools_url([]) is None
    assert browser.devtools_url(["DevTools listening on ws://a/1", "DevTools listening on ws://b/2"]) == "ws://a/1"


def test_the_first_executable_browser_is_found_and_a_missing_one_names_the_package(tmp_path):
    shell = script(tmp_path / "chromium-headless-shell", "exit 0")
    full = script(tmp_path / "chromium", "exit 0")
    assert browser.find_browser([("chromium-headless-shell", shell), ("chromium", full)]) == shell
    shell.chmod(0o644)  # not executable: the next one
    assert browser.find_browser([("chromium-headless-shell", shell), ("chromium", full)]) == full

    missing = [("chromium-headless-shell", tmp_path / "nope-1"), ("chromium", tmp_path / "nope-2")]
    with pytest.raises(browser.BrowserError) as err:
        browser.find_browser(missing)
    message = str(err.value)
    assert f"{tmp_path / 'nope-1'} (Debian package chromium-headless-shell)" in message, message
    assert f"{tmp_path / 'nope-2'} (Debian package chromium)" in message, message
    assert "apt-get install -y chromium-headless-shell" in message and "make setup" in message, message


def test_the_debian_browsers_are_looked_for_headless_shell_first():
    assert browser.BROWSERS == (
        ("chromium-headless-shell", Path("/usr/bin/chromium-headless-shell")),
        ("chromium", Path("/usr/bin/chromium")),
    )


def test_the_sandbox_is_off_only_for_root(tmp_path):
    args = browser.browser_args(Path("/usr/bin/chromium"), tmp_path / "profile", as_root=False)
    assert args[0] == "/usr/bin/chromium" and args[-1] == "about:blank"
    assert {"--headless", "--remote-debugging-port=0", f"--user-data-dir={tmp_path / 'profile'}"} <= set(args)
    assert "--no-sandbox" not in args
    assert "--no-sandbox" in browser.browser_args(Path("/usr/bin/chromium"), tmp_path / "profile", as_root=True)


def test_png_sizes_are_read_and_anything_else_is_refused():
    assert browser.png_size(png(3, 2)) == (3, 2)
    with pytest.raises(ValueError, match="not a PNG image"):
        browser.png_size(b"GIF89a" + bytes(30))
    with pytest.raises(ValueError, match="not a PNG image"):
        browser.png_size(png(3, 2)[:20])


def test_the_page_script_embeds_names_as_json_text():
    nodes, failing = ['a"b', "</script><b>x"], ["cert:<b>dind-ca</b>"]
    js = browser.check_script(nodes, failing)
    assert "__NODES__" not in js and "__FAILING__" not in js
    assert f"const nodes = {json.dumps(nodes)}, failing = {json.dumps(failing)};" in js


VISIBLE = {
    "nodes": {"this-host": {"found": True, "why": ""}, "ghost": {"found": True, "why": ""}},
    "ok_background": "rgb(218, 251, 225)",
    "failing": {
        "registry:local": {
            "header": "",
            "cells": [
                {"node": "this-host", "status": "fail", "text": "fail", "background": "rgb(255, 235, 233)", "why": ""},
                {"node": "ghost", "status": "none", "text": "-", "background": "rgb(246, 248, 250)", "why": ""},
            ],
            "detail": {"text": "this-host registry:local fail: refused", "why": ""},
        }
    },
}


def seen(**changes: object) -> dict:
    """VISIBLE with some parts replaced (a deep copy)."""
    copy = json.loads(json.dumps(VISIBLE))
    copy.update(changes)
    return copy


def test_a_report_with_everything_visible_has_nothing_missing():
    found, missing = browser.interpret(VISIBLE, ["this-host", "ghost"], ["registry:local"])
    assert missing == []
    assert found == [
        "node this-host: row visible",
        "node ghost: row visible",
        "failing check registry:local: fail cell visible for this-host "
        "(background rgb(255, 235, 233), ok is rgb(218, 251, 225))",
        "failing check registry:local: failure line visible: this-host registry:local fail: refused",
    ]


def test_missing_and_hidden_rows_are_named():
    nodes = {"this-host": {"found": True, "why": "display:none on tbody"}, "ghost": {"found": False, "why": "x"}}
    found, missing = browser.interpret(seen(nodes=nodes), ["this-host", "ghost", "other"], [])
    assert found == []
    assert missing == [
        "node this-host: its row is not visible: display:none on tbody",
        'node ghost: the page has no row tr[data-node="ghost"]',
        'node other: the page has no row tr[data-node="other"]',
    ]


def test_a_failing_check_without_its_column_or_fail_cell_is_named():
    _, missing = browser.interpret(VISIBLE, [], ["registry:docker.io"])
    assert missing == ["failing check registry:docker.io: no column header with that name in table#matrix"]

    data = seen()
    for cell in data["failing"]["registry:local"]["cells"]:
        cell["status"] = "ok"
    _, missing = browser.interpret(data, [], ["registry:local"])
    assert missing == ['failing check registry:local: no cell of its column has class "fail" (this-host=ok, ghost=ok)']


def test_a_hidden_fail_cell_header_or_failure_line_is_named():
    data = seen()
    check = data["failing"]["registry:local"]
    check["header"] = "opacity:0 on th.check"
    check["cells"][0]["why"] = "visibility:hidden"
    check["detail"]["why"] = "display:none on ul.details"
    _, missing = browser.interpret(data, [], ["registry:local"])
    assert missing == [
        "failing check registry:local: its column header is not visible: opacity:0 on th.check",
        "failing check registry:local: its fail cells are not visible (this-host: visibility:hidden)",
        "failing check registry:local: its failure line is not visible: display:none on ul.details",
    ]
    check["detail"] = None
    _, missing = browser.interpret(data, [], ["registry:local"])
    no_line = 'failing check registry:local: no failure line (ul.details li.fail) reads "registry:local fail:"'
    assert missing[-1] == no_line


@pytest.mark.parametrize("background", ["rgb(218, 251, 225)", "rgba(0, 0, 0, 0)"])
def test_a_fail_cell_without_a_status_colour_is_named(background):
    data = seen()
    data["failing"]["registry:local"]["cells"][0]["background"] = background
    found, missing = browser.interpret(data, [], ["registry:local"])
    assert missing == [
        f"failing check registry:local: its fail cell's background {background} is no status colour "
        "(an ok cell's is rgb(218, 251, 225)): the colour by status does not render"
    ]
    assert found == ["failing check registry:local: failure line visible: this-host registry:local fail: refused"]


def test_the_command_line_takes_repeated_nodes_and_checks():
    args = browser.parse_args(
        ["check-report", "r.html", "--node", "a", "--node", "b", "--failing", "x:y", "--screenshot", "o.png"]
    )
    assert (args.command, args.page, args.node, args.failing) == ("check-report", Path("r.html"), ["a", "b"], ["x:y"])
    assert (args.screenshot, args.timeout) == (Path("o.png"), browser.TIMEOUT_S)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["check-report", "r.html", "--failing", "x", "--screenshot", "o.png"],
        ["check-report", "r.html", "--node", "a", "--screenshot", "o.png"],
        ["check-report", "r.html", "--node", "a", "--failing", "x"],
        ["check-page", "r.html"],
    ],
)
def test_bad_usage_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        browser.main(argv)
    assert exit_.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_a_missing_browser_or_page_exits_2_naming_it(tmp_path, monkeypatch, capsys):
    page = tmp_path / "r.html"
    argv = ["check-report", str(page), "--node", "a", "--failing", "x", "--screenshot", str(tmp_path / "o.png")]
    assert browser.main(argv) == 2
    assert capsys.readouterr().err == f"error: no page to check at {page}: no such file\n"

    page.write_text("<p>hi</p>")
    monkeypatch.setattr(browser, "BROWSERS", (("chromium-headless-shell", tmp_path / "no-browser"),))
    assert browser.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no headless browser found") and "apt-get install -y chromium-headless-shell" in err
    assert not (tmp_path / "o.png").exists()


# --- start and clean-up, with stand-in browsers ----------------------------------------------------


def test_a_browser_that_exits_before_listening_is_named_with_its_output(tmp_path):
    fake = script(tmp_path / "chromium", 'echo "boom: cannot open display" >&2\nexit 3')
    b = browser.Browser(fake, timeout=10)
    with pytest.raises(browser.BrowserError) as err, b:
        pass
    message = str(err.value)
    assert message.startswith(f"{fake} exited with status 3 before it listened for DevTools"), message
    assert "boom: cannot open display" in message
    assert b.home is not None and not b.home.exists()


def test_a_browser_that_never_listens_is_killed_with_its_children_after_the_bound(tmp_path):
    # Like Debian's /usr/bin/chromium*: a shell wrapper that runs the real program as its child.
    fake = script(tmp_path / "chromium", f"echo starting >&2\nsleep 60 &\necho $! > {tmp_path}/child\nwait")
    b = browser.Browser(fake, timeout=1)
    started = time.monotonic()
    with pytest.raises(browser.BrowserError) as err, b:
        pass
    assert time.monotonic() - started < 10
    message = str(err.value)
    assert message.startswith(f"{fake} did not print 'DevTools listening on ws://...' within 1 s"), message
    assert "starting" in message
    assert gone(int((tmp_path / "child").read_text())), "the wrapper's child outlived the browser's clean-up"
    assert b.home is not None and not b.home.exists()


# --- the real browser ------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>t</title><style>
td.ok { background: #dafbe1; } td.fail { background: #ffebe9; } td.pale { background: #dafbe1; }
.hidden { visibility: hidden; } .faded { opacity: 0; } .away { position: absolute; left: -5000px; }
.gone { display: none; } .tall { height: 2400px; }
</style></head><body>
<table id="matrix"><thead><tr><th>node</th><th>verdict</th>
<th class="check">registry:local</th><th class="check">gpu</th><th class="check">memory</th></tr></thead>
<tbody>
<tr data-node="shown"><th>shown</th><td class="fail">unhealthy</td><td class="fail">fail</td>
<td class="fail pale">fail</td><td class="ok">ok</td></tr>
<tr data-node="hidden" class="hidden"><th>hidden</th><td class="ok">healthy</td><td class="ok">ok</td>
<td>-</td><td>-</td></tr>
<tr data-node="faded" class="faded"><th>faded</th><td class="ok">healthy</td><td class="ok">ok</td>
<td>-</td><td>-</td></tr>
</tbody></table>
<table class="away"><tbody><tr data-node="away"><th>away</th></tr></tbody></table>
<ul class="details"><li class="fail"><b>shown</b> registry:local <i>fail</i>: nothing answers</li>
<li class="fail gone"><b>shown</b> gpu <i>fail</i>: no GPU</li></ul>
<div class="tall"></div>
</body></html>
"""


def test_a_hand_written_page_is_rendered_checked_and_screenshotted(tmp_path):
    require_browser()
    page, shot = tmp_path / "page.html", tmp_path / "out" / "page.png"
    page.write_text(PAGE)
    result = browser.check_report(
        page, ["shown", "hidden", "faded", "away", "absent"], ["registry:local", "gpu", "memory"], shot
    )
    assert result.browser.startswith("HeadlessChrome/") and result.binary == browser.find_browser()
    assert result.found == [
        "node shown: row visible",
        "failing check registry:local: fail cell visible for shown (background rgb(255, 235, 233), "
        "ok is rgb(218, 251, 225))",
        "failing check registry:local: failure line visible: shown registry:local fail: nothing answers",
    ]
    assert len(result.missing) == 8, result.missing
    assert result.missing[:2] == [
        "node hidden: its row is not visible: visibility:hidden",
        "node faded: its row is not visible: opacity:0 on tr.faded",
    ]
    away = result.missing[2]  # at x -5000 plus the table's border spacing
    assert away.startswith("node away: its row is not visible: it lies outside the page (box at -49"), away
    assert result.missing[3:] == [
        'node absent: the page has no row tr[data-node="absent"]',
        "failing check gpu: its fail cell's background rgb(218, 251, 225) is no status colour "
        "(an ok cell's is rgb(218, 251, 225)): the colour by status does not render",
        "failing check gpu: its failure line is not visible: display:none on li.fail.gone",
        'failing check memory: no cell of its column has class "fail" (shown=ok, hidden=, faded=)',
        'failing check memory: no failure line (ul.details li.fail) reads "memory fail:"',
    ]
    # The whole page, past the 800 px viewport: a real PNG of the reported size.
    data = shot.read_bytes()
    width, height = browser.png_size(data)
    assert (width, height) == result.screenshot_size and width >= 1280 and height >= 2400, (width, height)
    assert result.seconds < browser.TIMEOUT_S


def test_the_command_line_reports_the_browser_the_screenshot_and_each_missing_thing(tmp_path):
    require_browser()
    page, shot = tmp_path / "page.html", tmp_path / "page.png"
    page.write_text(PAGE)

    def cli(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, browser.__file__, "check-report", str(page), "--screenshot", str(shot), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    ok = cli("--node", "shown", "--failing", "registry:local")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0].startswith("browser: HeadlessChrome/") and lines[0].endswith(f"({browser.find_browser()})")
    assert lines[1].startswith(f"screenshot: {shot} (1280x") and " px, " in lines[1]
    assert lines[-1].startswith("all visible in ")

    bad = cli("--node", "shown", "--node", "absent", "--failing", "memory")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert [line for line in bad.stdout.splitlines() if line.startswith("missing: ")] == [
        'missing: node absent: the page has no row tr[data-node="absent"]',
        'missing: failing check memory: no cell of its column has class "fail" (shown=ok, hidden=, faded=)',
        'missing: failing check memory: no failure line (ul.details li.fail) reads "memory fail:"',
    ]
    assert bad.stdout.splitlines()[-1].startswith("3 missing in ")


def test_a_page_that_never_loads_is_named_and_the_browser_is_cleaned_up(tmp_path, monkeypatch):
    require_browser()
    started: list[tuple[browser.Browser, int]] = []

    class Recorded(browser.Browser):
        def _start(self) -> None:
            super()._start()
            assert self.pid is not None
            started.append((self, self.pid))

    monkeypatch.setattr(browser, "Browser", Recorded)
    page = tmp_path / "hang.html"
    page.write_text("<html><body><script>while (true) {}</script></body></html>")
    begin = time.monotonic()
    with pytest.raises(browser.BrowserError) as err:
        browser.check_report(page, ["a"], ["x"], tmp_path / "hang.png", timeout=2)
    assert time.monotonic() - begin < 20
    assert str(err.value) == f"the browser did not send the load event of {page.as_uri()} within 2 s"
    [(closed, pid)] = started
    assert gone(pid) and not browser._running_in_group(pid), f"browser process group {pid} still runs"
    assert closed.home is not None and not closed.home.exists()
    assert not (tmp_path / "hang.png").exists()
