"""Unit tests for plugins/module_utils/image_build.py (hashing, argv, plain progress parsing)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils import image_build as ib

# Shape of BuildKit's plain progress (docker buildx 0.13 on Docker 26, containerd image store).
COLD = """#0 building with "default" instance using docker driver

#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 186B done
#1 DONE 0.0s

#2 [internal] load metadata for docker.io/raibid-test/busybox:1
#2 DONE 0.0s

#3 [internal] load .dockerignore
#3 transferring context: 2B done
#3 DONE 0.0s

#4 importing cache manifest from 127.0.0.1:5000/cache:test
#4 ERROR: 127.0.0.1:5000/cache:test: not found

#5 [1/4] FROM docker.io/raibid-test/busybox:1
#5 DONE 0.1s

#6 [2/4] RUN echo one > /one && sleep 1
#6 DONE 1.2s

#7 [3/4] RUN echo two > /two
#7 0.105 some output
#7 DONE 0.3s

#8 [stage-1 4/4] COPY file /file
#8 DONE 0.0s

#9 exporting to image
#9 DONE 0.4s

#10 exporting cache to registry
#10 preparing build cache for export
#10 DONE 0.9s
"""

WARM = """#4 importing cache manifest from 127.0.0.1:5000/cache:test
#4 DONE 0.0s

#5 [1/4] FROM docker.io/raibid-test/busybox:1
#5 CACHED

#6 [2/4] RUN echo one > /one && sleep 1
#6 CACHED

#7 [3/4] RUN echo two > /two
#7 CACHED

#8 [stage-1 4/4] COPY file /file
#8 CACHED
"""


def test_parse_cold_build():
    log = ib.parse_plain_progress(COLD)
    summary = log.summary()
    assert summary["layer_steps"] == 3
    assert summary["cached_steps"] == 0
    assert summary["cache_imported"] == ["127.0.0.1:5000/cache:test"]
    assert summary["cache_exported"] is True
    assert [s["instruction"] for s in summary["steps"]] == ["FROM", "RUN", "RUN", "COPY"]
    run = summary["steps"][1]
    assert run["name"] == "[2/4] RUN echo one > /one && sleep 1" and run["seconds"] == 1.2 and run["done"]
    assert summary["errors"] == [
        "importing cache manifest from 127.0.0.1:5000/cache:test: 127.0.0.1:5000/cache:test: not found"
    ]


def test_parse_warm_build_counts_cached_layer_steps():
    summary = ib.parse_plain_progress(WARM).summary()
    assert (summary["layer_steps"], summary["cached_steps"]) == (3, 3)
    assert summary["cache_exported"] is False


def test_parse_ignores_noise():
    assert ib.parse_plain_progress("not progress\n\n#x nope\n").summary()["steps"] == []


@pytest.fixture
def context(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY a /a\n")
    (tmp_path / "a").write_text("a\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.log").write_text("b\n")
    (tmp_path / ".dockerignore").write_text("# comment\n*.tmp\nsub\n!sub/keep.log\n")
    return tmp_path


def test_context_files_honour_dockerignore(context):
    (context / "x.tmp").write_text("x")
    (context / "sub" / "keep.log").write_text("k")
    assert ib.context_files(str(context)) == [".dockerignore", "Dockerfile", "a", "sub/keep.log"]


def test_inputs_hash_changes_with_content_mode_and_settings(context):
    df = str(context / "Dockerfile")
    base = ib.inputs_hash(str(context), df, ib.hashed_settings({}))
    assert base.startswith("sha256:") and base == ib.inputs_hash(str(context), df, ib.hashed_settings({}))
    # Ignored files do not count.
    (context / "junk.tmp").write_text("junk")
    assert ib.inputs_hash(str(context), df, ib.hashed_settings({})) == base
    assert ib.inputs_hash(str(context), df, ib.hashed_settings({"build_args": {"A": "1"}})) != base
    (context / "a").write_text("changed\n")
    changed = ib.inputs_hash(str(context), df, ib.hashed_settings({}))
    assert changed != base
    os.chmod(context / "a", 0o755)
    assert ib.inputs_hash(str(context), df, ib.hashed_settings({})) != changed


def test_hashed_settings_ignore_cache_and_destination():
    a = ib.hashed_settings({"cache_to": ["type=registry,ref=x"], "push": True, "platform": ["b", "a"]})
    b = ib.hashed_settings({"platform": ["a", "b"]})
    assert a == b


def test_build_argv():
    params = {
        "path": "/ctx",
        "tags": ["r:1", "r:latest"],
        "build_args": {"B": "2", "A": "1"},
        "labels": {"x": "y"},
        "target": "final",
        "platform": ["linux/arm64"],
        "builder": "raibid",
        "cache_from": ["type=registry,ref=c"],
        "cache_to": ["type=registry,ref=c,mode=max"],
        "pull": True,
        "network": "host",
        "provenance": False,
        "load": True,
        "push": True,
    }
    argv = ib.build_argv("docker", params, "/ctx/Dockerfile", "sha256:abc", "/tmp/m.json")
    assert argv[:5] == ["docker", "buildx", "build", "--progress", "plain"]
    joined = " ".join(argv)
    for part in (
        "--builder raibid",
        "--tag r:1 --tag r:latest",
        "--build-arg A=1 --build-arg B=2",
        f"--label {ib.INPUTS_LABEL}=sha256:abc",
        "--label x=y",
        "--target final",
        "--platform linux/arm64",
        "--cache-from type=registry,ref=c",
        "--cache-to type=registry,ref=c,mode=max",
        "--pull",
        "--network host",
        "--provenance=false",
        "--load --push",
        "--metadata-file /tmp/m.json",
    ):
        assert part in joined, part
    assert argv[-1] == "/ctx"


def test_parse_metadata():
    meta = ib.parse_metadata('{"containerimage.digest": "sha256:d", "containerimage.config.digest": "sha256:c"}')
    assert meta == {"digest": "sha256:d", "config_digest": "sha256:c", "image_name": ""}
    assert ib.parse_metadata("garbage")["digest"] == ""


def test_validate_cache_specs():
    assert ib.validate_cache_specs(["type=registry,ref=h:5000/c:t,mode=max"], "cache_to") == []
    errors = ib.validate_cache_specs(["h:5000/c:t", "ref=x"], "cache_to")
    assert len(errors) == 2 and errors[0].startswith("cache_to: 'h:5000/c:t'")


def test_docker_driver_gets_no_load_flag():
    params = {"path": "/ctx", "tags": ["r:1"], "load": True, "push": True}
    assert "--load" not in ib.build_argv("docker", params, "/ctx/Dockerfile", "sha256:a", "/m", driver="docker")
    assert "--load" in ib.build_argv("docker", params, "/ctx/Dockerfile", "sha256:a", "/m", driver="remote")


def test_parse_builder_driver():
    assert ib.parse_builder_driver("Name:          default\nDriver:        docker\n") == "docker"
    assert ib.parse_builder_driver("nothing") == ""
