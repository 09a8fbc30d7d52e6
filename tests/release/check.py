"""Release checks: what Galaxy, Automation Hub and ansible-builder would say about this collection.

Each check covers whatever roles and modules the working tree holds when it runs, and prints its
own time. ``make sanity`` runs ``sanity units``; ``make release-check`` runs the rest.

  role-docs     every role's README.md is what tests/release/role_docs.py generates from its specs
  drift         defaults/main.yml agrees with meta/argument_specs.yml, for every role
  sanity        ansible-test sanity on the collection as it ships (the built tarball, unpacked
                under .../ansible_collections/raibid/dgx_spark) plus tests/unit and tests/sanity
  units         ansible-test units (tests/unit) on the same tree
  ansible-doc   ansible-doc renders every module in plugins/modules and every role's argument specs
  tarball       ansible-galaxy collection build; the tarball holds no tests, Molecule or caches
  galaxy-import galaxy-importer accepts the tarball (ansible-doc, ansible-lint, docs; no containers)
  changelog     antsibull-changelog lint on the fragments and changelog.yaml; CHANGELOG.md generates
  changelog-md  write CHANGELOG.md (a preview of the next release while fragments are pending)
  ee            ansible-builder create from execution-environment.yml (the image is not built: no
                base image can be pulled here) and introspection of the installed tarball's
                meta/execution-environment.yml, as an EE build that includes the collection does it

Usage: check.py CHECK [CHECK ...] [-- extra ansible-test options]
Files are staged from git's view of the working tree (tracked plus untracked, not ignored);
RELEASE_TRACKED_ONLY=1 stages the tracked files only, as a fresh clone would have them.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import role_docs  # tests/release/role_docs.py

ROOT = Path(__file__).resolve().parent.parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
COLLECTION = "raibid.dgx_spark"
# Paths the built collection must never contain: development-only trees and caches.
FORBIDDEN_IN_TARBALL = re.compile(
    r"^(molecule|benchmarks|\.cache|\.venv|\.git|\.ci|\.config|tests/(?!sanity(/|$))[^/]+|image/agent/target)(/|$)"
    r"|(^|/)(__pycache__|\.pytest_cache|\.ruff_cache|\.mypy_cache|\.molecule)(/|$)"
    r"|\.(pyc|pyo|retry|tar\.gz)$"
)


# The importer warns about any sanity ignore file; ours holds only entries justified in writing next
# to each (tests/sanity/ignore-2.19.txt), so that one warning is expected.
EXPECTED_IMPORTER_WARNING = re.compile(
    r"^WARNING: Ignore files skip ansible-test sanity tests, found ignore-[0-9.]+\.txt"
)


class CheckFailed(Exception):
    pass


def env() -> Dict[str, str]:
    e = dict(os.environ)
    e.update(
        PATH=f"{VENV_BIN}:{e.get('PATH', '')}",
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
    )
    return e


def run(cmd: List[str], cwd: Path = ROOT, capture: bool = False, **kw) -> subprocess.CompletedProcess:
    print(f"$ {' '.join(str(c) for c in cmd)}", flush=True)
    return subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=kw.pop("env", env()),
        text=True,
        capture_output=capture,
        check=False,
        **kw,
    )


def staged_files() -> List[str]:
    args = ["git", "ls-files", "-z", "--cached"]
    if os.environ.get("RELEASE_TRACKED_ONLY") != "1":
        args += ["--others", "--exclude-standard"]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, check=True).stdout.decode()
    # Deleted-but-tracked files are left out.
    return sorted({f for f in out.split("\0") if f and (ROOT / f).is_file()})


def stage(dest_root: Path) -> Path:
    """Copy the working tree to DEST_ROOT/ansible_collections/raibid/dgx_spark (no .venv, caches)."""
    dest = dest_root / "ansible_collections" / "raibid" / "dgx_spark"
    for rel in staged_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target, follow_symlinks=False)
    return dest


def build(src: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    proc = run([VENV_BIN / "ansible-galaxy", "collection", "build", "--force", "--output-path", out], cwd=src)
    if proc.returncode:
        raise CheckFailed("ansible-galaxy collection build failed")
    (tarball,) = out.glob("raibid-dgx_spark-*.tar.gz")
    return tarball


def shipped_tree(tmp: Path) -> Path:
    """The tarball's content unpacked as a collection, plus tests/unit and tests/sanity from the tree.

    ansible-test runs on what ships (as Galaxy and Automation Hub run it on the uploaded tarball);
    development tooling that build_ignore keeps out (Molecule, test-bed scripts, benchmarks) is
    linted by ruff, yamllint and ansible-lint instead.
    """
    src = stage(tmp / "src")
    tarball = build(src, tmp / "dist")
    dest = tmp / "shipped" / "ansible_collections" / "raibid" / "dgx_spark"
    dest.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(dest, filter="data")
    for sub in ("tests/unit", "tests/sanity"):
        if (src / sub).is_dir():
            shutil.copytree(src / sub, dest / sub, dirs_exist_ok=True)
    return dest


def ansible_test(command: str, extra: List[str]) -> None:
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    install_get_pip_stand_in()
    with tempfile.TemporaryDirectory(prefix="raibid-release-") as tmp:
        tree = shipped_tree(Path(tmp))
        proc = run(
            [VENV_BIN / "ansible-test", command, "--local", "--python", python, "--color", "no", *extra], cwd=tree
        )
        if proc.returncode:
            raise CheckFailed(f"ansible-test {command} failed")


def install_get_pip_stand_in() -> None:
    """ansible-test bootstraps pip in its virtual environments with a script from a host we cannot reach.

    It uses a cached copy when there is one; tests/release/get_pip_offline.py does the same job from
    the package index pip is configured for.
    """
    import ansible_test._internal.python_requirements as reqs  # noqa: PLC0415 (only in the .venv)

    version = re.search(r"pip='([0-9.]+)'", Path(reqs.__file__).read_text()).group(1)
    cached = Path.home() / ".ansible" / "test" / "cache" / f"get_pip_{version.replace('.', '_')}.py"
    stand_in = Path(__file__).with_name("get_pip_offline.py")
    if not cached.is_file() or cached.read_bytes() != stand_in.read_bytes():
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stand_in, cached)


def check_sanity(extra: List[str]) -> None:
    ansible_test("sanity", extra)


def check_units(extra: List[str]) -> None:
    ansible_test("units", extra)


# plugins/<dir> -> ansible-doc type; module_utils, doc_fragments, plugin_utils and action hold no docs.
PLUGIN_TYPES = {
    "modules": "module",
    "filter": "filter",
    "test": "test",
    "lookup": "lookup",
    "inventory": "inventory",
    "callback": "callback",
    "connection": "connection",
    "become": "become",
    "cache": "cache",
    "vars": "vars",
    "strategy": "strategy",
}


def plugin_names(kind: str, folder: str) -> List[str]:
    """Every plugin of a type: file names, or (filter/test files hold several) what ansible-doc lists."""
    if kind not in ("filter", "test"):
        return sorted(p.stem for p in (ROOT / "plugins" / folder).glob("*.py") if p.stem != "__init__")
    listed = run([VENV_BIN / "ansible-doc", "-t", kind, "-l", COLLECTION, "--json"], capture=True)
    return sorted(n.split(".")[-1] for n in json.loads(listed.stdout or "{}"))


def roles_with_specs() -> List[str]:
    return sorted(p.parent.parent.name for p in (ROOT / "roles").glob("*/meta/argument_specs.yml"))


def check_ansible_doc(_extra: List[str]) -> None:
    """Every plugin and every role's argument specs render, and the JSON has what a reader needs."""
    problems: List[str] = []
    kinds = [(k, plugin_names(k, d)) for d, k in PLUGIN_TYPES.items() if (ROOT / "plugins" / d).is_dir()]
    kinds.append(("role", roles_with_specs()))
    for kind, names in kinds:
        if not names:
            continue
        fqcns = [f"{COLLECTION}.{n}" for n in names]
        text = run([VENV_BIN / "ansible-doc", "-t", kind, *fqcns], capture=True)
        if text.returncode or "[ERROR]" in text.stderr or "[WARNING]" in text.stderr:
            problems.append(f"ansible-doc -t {kind} failed (rc={text.returncode}):\n{text.stderr.strip()}")
        data = run([VENV_BIN / "ansible-doc", "-t", kind, "--json", *fqcns], capture=True)
        try:
            docs = json.loads(data.stdout or "{}")
        except json.JSONDecodeError:
            docs = {}
        for name, fqcn in zip(names, fqcns):
            missing = missing_doc(kind, name, docs.get(fqcn) or {})
            if missing:
                problems.append(f"{fqcn} ({kind}): ansible-doc shows no {', '.join(missing)}")
        print(f"  ansible-doc -t {kind}: {len(names)} rendered: {', '.join(names)}")
    if problems:
        raise CheckFailed("\n".join(problems))


def missing_doc(kind: str, name: str, doc: Dict) -> List[str]:
    if not doc:
        return ["documentation at all"]
    if kind == "role":
        main = (doc.get("entry_points") or {}).get("main") or {}
        return [k for k in ("short_description", "description") if not main.get(k)]
    body = doc.get("doc") or {}
    missing = [k for k in ("short_description", "description", "author") if not body.get(k)]
    missing += [k for k in ("examples", "return") if not doc.get(k)]
    if body.get("name", body.get("module")) != name:
        missing.append(f"its own name ({name})")
    return missing


def check_tarball(_extra: List[str]) -> Path:
    out = ROOT / ".cache" / "release" / "dist"
    shutil.rmtree(out, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="raibid-release-") as tmp:
        tarball = build(stage(Path(tmp)), out)
    with tarfile.open(tarball) as tar:
        names = [m.name for m in tar.getmembers()]
    bad = [n for n in names if FORBIDDEN_IN_TARBALL.search(n)]
    size_kb = tarball.stat().st_size // 1024
    print(f"  {tarball.relative_to(ROOT)}: {len(names)} entries, {size_kb} KiB")
    if bad:
        raise CheckFailed(
            "the tarball holds development files (add them to build_ignore in galaxy.yml):\n  " + "\n  ".join(bad)
        )
    return tarball


@contextlib.contextmanager
def _no_copy_left_in_home() -> Iterator[None]:
    """Remove the copy of this collection that a run leaves in the user's ~/.ansible/collections.

    HOME above does not reach every subprocess: a copy of the checked tarball (with the importer's
    importer_result.json in it) still appeared in the login user's home, where ansible-lint of a
    later, newer tree found it before the checkout. Only a copy this run created is removed."""
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    copy = home / ".ansible" / "collections" / "ansible_collections" / "raibid" / "dgx_spark"
    existed = copy.exists() or copy.is_symlink()
    try:
        yield
    finally:
        if not existed and copy.is_dir() and not copy.is_symlink():
            shutil.rmtree(copy)
            print(f"  removed the copy the importer left in {copy}")


def check_galaxy_import(extra: List[str]) -> None:
    tarball = check_tarball(extra)
    with tempfile.TemporaryDirectory(prefix="raibid-importer-") as tmp:
        e = env()
        # As on Galaxy: no checkout ansible.cfg, and ansible-lint's cache (XDG_CACHE_HOME, which the
        # importer points at its local tmp) private to this run rather than shared in HOME. HOME too:
        # the ansible-lint the importer runs installs the collection it checks into
        # ~/.ansible/collections, where a later `make lint` of a newer tree would find it before
        # the checkout (a role added since then was "not found").
        e.pop("ANSIBLE_CONFIG")
        e.update(
            GALAXY_IMPORTER_CONFIG=str(Path(__file__).with_name("galaxy-importer.cfg")),
            GALAXY_IMPORTER_ANSIBLE_LOCAL_TMP=tmp,
            GALAXY_IMPORTER_TMP_ROOT_DIR=tmp,
            HOME=tmp,
            ANSIBLE_HOME=str(Path(tmp) / ".ansible"),
        )
        with _no_copy_left_in_home():
            proc = run([VENV_BIN / "python", "-m", "galaxy_importer.main", tarball], capture=True, env=e)
    output = proc.stdout + proc.stderr
    findings = [
        line
        for line in output.splitlines()
        if re.match(r"^\s*(ERROR|WARNING)", line) or re.search(r"\b(ERROR|WARNING)\b", line.split(":", 1)[0])
    ]
    print(output.strip()[-4000:])
    expected = [f for f in findings if EXPECTED_IMPORTER_WARNING.search(f)]
    findings = [f for f in findings if f not in expected]
    print(
        f"  galaxy-importer: rc={proc.returncode}, {len(findings)} warning/error line(s), "
        f"{len(expected)} expected (the justified entries of tests/sanity/ignore-2.19.txt)"
    )
    if proc.returncode or findings:
        raise CheckFailed("galaxy-importer reported:\n  " + "\n  ".join(findings or [f"exit status {proc.returncode}"]))


PREVIEW_NOTE = (
    "> **Preview.** Generated by `make docs` from the unreleased fragments in `changelogs/fragments/`;\n"
    "> version {version} is not released yet. The release procedure is in CONTRIBUTING.md.\n\n"
)


def changelog_text() -> str:
    """CHANGELOG.md as antsibull-changelog makes it: released versions, plus the unreleased fragments
    rendered as the version in galaxy.yml (released in a throw-away copy, so nothing here changes)."""
    version = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
    with tempfile.TemporaryDirectory(prefix="raibid-release-") as tmp:
        tree = stage(Path(tmp))
        fragments = [p for p in (tree / "changelogs" / "fragments").glob("*.y*ml")]
        if fragments:
            args = ["release", "--version", version, "--date", "1970-01-01"]
        else:
            args = ["generate"]
        proc = run([VENV_BIN / "antsibull-changelog", *args], cwd=tree, capture=True)
        if proc.returncode:
            raise CheckFailed(f"antsibull-changelog {args[0]} failed:\n{proc.stdout}{proc.stderr}")
        text = (tree / "CHANGELOG.md").read_text()
    if fragments:
        text = PREVIEW_NOTE.format(version=version) + text
    return text


def check_changelog(_extra: List[str]) -> None:
    for sub in ("lint", "lint-changelog-yaml"):
        args = [VENV_BIN / "antsibull-changelog", sub]
        if sub == "lint-changelog-yaml":
            args.append(ROOT / "changelogs" / "changelog.yaml")
        proc = run(args, capture=True)
        out = (proc.stdout + proc.stderr).strip()
        if proc.returncode or out:
            raise CheckFailed(f"antsibull-changelog {sub}:\n{out}")
    fragments = sorted((ROOT / "changelogs" / "fragments").glob("*.y*ml"))
    print(f"  antsibull-changelog lint: {len(fragments)} fragment(s) clean")
    text = changelog_text()
    current = (ROOT / "CHANGELOG.md").read_text() if (ROOT / "CHANGELOG.md").is_file() else ""
    # Not a failure: every new fragment or module changes the preview; `make docs` refreshes it, and
    # the release itself rewrites CHANGELOG.md.
    state = "up to date" if current == text else "differs from the fragments (run `make docs` to refresh it)"
    print(f"  CHANGELOG.md {state}")


def write_changelog(_extra: List[str]) -> None:
    text = changelog_text()
    target = ROOT / "CHANGELOG.md"
    if not target.is_file() or target.read_text() != text:
        target.write_text(text)
        print("  wrote CHANGELOG.md")


def check_ee(extra: List[str]) -> None:
    # The definition copies the built tarball into the build context (additional_build_files).
    tarball = check_tarball(extra)
    context = ROOT / ".cache" / "release" / "ee-context"
    shutil.rmtree(context, ignore_errors=True)
    proc = run(
        [
            VENV_BIN / "ansible-builder",
            "create",
            "-f",
            ROOT / "execution-environment.yml",
            "-c",
            context,
            "--output-filename",
            "Containerfile",
        ],
        capture=True,
    )
    if proc.returncode:
        raise CheckFailed(f"ansible-builder create rejected execution-environment.yml:\n{proc.stdout}{proc.stderr}")
    containerfile = (context / "Containerfile").read_text()
    for needle in ("ansible-galaxy collection install", "introspect.py introspect", "raibid-dgx_spark.tar.gz"):
        if needle not in containerfile:
            raise CheckFailed(f"the generated Containerfile has no {needle!r}")
    if not list((context / "_build" / "collections").glob("raibid-dgx_spark-*.tar.gz")):
        raise CheckFailed("the build context holds no collection tarball")
    # What the EE build does next: install the collections, then introspect each installed
    # collection's meta/execution-environment.yml for its Python and system requirements.
    with tempfile.TemporaryDirectory(prefix="raibid-release-") as tmp:
        proc = run(
            [VENV_BIN / "ansible-galaxy", "collection", "install", "--force", "--no-deps", "-p", tmp, tarball],
            capture=True,
        )
        if proc.returncode:
            raise CheckFailed(f"ansible-galaxy collection install failed:\n{proc.stderr}")
        proc = run([VENV_BIN / "ansible-builder", "introspect", tmp], capture=True)
        if proc.returncode:
            raise CheckFailed(f"ansible-builder introspect failed:\n{proc.stdout}{proc.stderr}")
    found = yaml.safe_load(proc.stdout) or {}
    deps = (yaml.safe_load((ROOT / "meta" / "execution-environment.yml").read_text()) or {}).get("dependencies", {})
    for kind in ("python", "system"):
        if kind not in deps:
            raise CheckFailed(f"meta/execution-environment.yml names no {kind} requirements file")
        wanted = [
            line.split("#", 1)[0].strip()
            for line in (ROOT / deps[kind]).read_text().splitlines()
            if line.split("#", 1)[0].strip()
        ]
        got = [str(x) for x in found.get(kind) or []]
        lost = [w for w in wanted if not any(g.startswith(w) for g in got)]
        if lost:
            raise CheckFailed(f"introspection of the installed collection lost {kind} requirements {lost}; got {got}")
        print(f"  {kind} requirements an EE build takes from {deps[kind]}: {len(wanted)}")
    print(f"  build context: {context.relative_to(ROOT)} (Containerfile, _build/); image not built here")


def check_role_docs(_extra: List[str]) -> None:
    if role_docs.main(["--check"]):
        raise CheckFailed("role READMEs are stale or missing; run `make docs`")


def check_drift(_extra: List[str]) -> None:
    if role_docs.main(["--drift"]):
        raise CheckFailed("defaults/main.yml and meta/argument_specs.yml disagree")


CHECKS: Dict[str, Callable[[List[str]], object]] = {
    "role-docs": check_role_docs,
    "drift": check_drift,
    "sanity": check_sanity,
    "units": check_units,
    "ansible-doc": check_ansible_doc,
    "tarball": check_tarball,
    "galaxy-import": check_galaxy_import,
    "changelog": check_changelog,
    "changelog-md": write_changelog,
    "ee": check_ee,
}


def main(argv: List[str]) -> int:
    extra: List[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    unknown = [a for a in argv if a not in CHECKS]
    if not argv or unknown:
        print(__doc__)
        print(f"unknown check(s): {unknown}" if unknown else "name at least one check")
        return 2
    rows, failed = [], 0
    for name in argv:
        print(f"---------------- {name} ----------------", flush=True)
        t0 = time.monotonic()
        try:
            CHECKS[name](extra)
            result = "ok"
        except CheckFailed as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            result, failed = "FAILED", failed + 1
        rows.append(f"  {name:<14} {time.monotonic() - t0:6.1f}s  {result}")
    print("\nRelease checks:")
    print("\n".join(rows))
    print(f"release checks: {len(argv) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
