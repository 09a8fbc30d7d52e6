"""Unit tests for plugins/module_utils/image_build.py (hashing, argv, plain progress parsing)."""

from __future__ import annotations

import json
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


# Seen in the buildkit scenario (Docker 26.1 default builder, containerd store): after a prune, the
# last step comes from the imported registry cache and BuildKit pulls its layer for the export, printing
# the blob transfer instead of CACHED. An executed step (the RUN with output) never shows blobs.
LAZY = """\
#9 [4/5] COPY payload.txt /payload.txt
#9 CACHED

#11 [5/5] RUN cat /one /two /payload.txt > /all && echo "base" > /variant
#11 sha256:69eba64fdb8c2aaaa3d5d2fbef37c2052479443bd543d1b67afbd4a7a904589d 104B / 104B 0.0s done
#11 extracting sha256:69eba64fdb8c2aaaa3d5d2fbef37c2052479443bd543d1b67afbd4a7a904589d 0.0s done
#11 DONE 0.1s

#12 [6/6] RUN echo built
#12 0.215 built
#12 DONE 0.3s
"""


def test_parse_counts_a_lazily_pulled_cache_hit_as_cached():
    steps = {s["name"].split("]")[0] + "]": s for s in ib.parse_plain_progress(LAZY).summary()["steps"]}
    assert steps["[4/5]"]["cached"] is True
    assert steps["[5/5]"]["cached"] is True
    assert steps["[5/5]"]["done"] is True
    assert steps["[6/6]"]["cached"] is False


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


# --- hash stability and secrets in the hash -------------------------------------------------------


def test_inputs_hash_of_a_build_without_secrets_is_unchanged(tmp_path):
    # Value computed with the module_utils of before secrets existed: images built then are not rebuilt.
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY a /a\n")
    (tmp_path / "a").write_text("a\n")
    os.chmod(tmp_path / "a", 0o644)
    settings = ib.hashed_settings({"build_args": {"A": "1"}, "platform": ["linux/arm64"], "secrets": []})
    assert ib.inputs_hash(str(tmp_path), str(tmp_path / "Dockerfile"), settings) == (
        "sha256:cc9f4db47802ee8a49973acb828d03b7c2e55d04423dd3f163cb97b00386c267"
    )


def test_secret_content_stays_out_of_the_hash_unless_opted_in(context, tmp_path_factory):
    df = str(context / "Dockerfile")
    secrets_dir = tmp_path_factory.mktemp("secrets")  # outside the build context
    ca = secrets_dir / "ca.pem"
    ca.write_text("old CA\n")

    def digest(spec, material=()):
        return ib.inputs_hash(str(context), df, ib.hashed_settings({"secrets": [spec]}), material)

    plain = {"id": "ca", "src": str(ca)}
    before = digest(plain)
    ca.write_text("new CA\n")
    assert digest(plain) == before, "content of a secret must not change the hash by default"
    assert digest({"id": "ca", "src": str(secrets_dir / "other.pem")}) != before, "the source does count"
    assert digest({"id": "ca", "env": "CA"}) != before
    assert digest({"id": "tok", "value": "s3cret-1"}) == digest({"id": "tok", "value": "s3cret-2"})
    opted = {"id": "ca", "src": str(ca), "rebuild_on_change": True}
    assert digest(opted, [("ca", b"old CA\n")]) != digest(opted, [("ca", b"new CA\n")])
    settings = json.dumps(ib.hashed_settings({"secrets": [{"id": "tok", "value": "s3cret-1"}]}))
    assert "s3cret" not in settings


# --- secrets: validation, argv, files -----------------------------------------------------------


def test_secret_flags_use_buildx_syntax(tmp_path):
    secrets = ib.parse_secrets(
        [{"id": "tok", "value": "v"}, {"id": "ca", "src": "/etc/ca.pem"}, {"id": "npm", "env": "NPM_TOKEN"}]
    )
    assert ib.secret_flags(secrets, {"tok": "/tmp/d/secret-2"}) == [
        "--secret",
        "id=ca,src=/etc/ca.pem",
        "--secret",
        "id=npm,env=NPM_TOKEN",
        "--secret",
        "id=tok,src=/tmp/d/secret-2",
    ]
    argv = ib.build_argv(
        "docker",
        {"path": "/ctx", "tags": ["r:1"]},
        "/ctx/Dockerfile",
        "sha256:a",
        "/m",
        secret_args=["--secret", "id=ca,src=/etc/ca.pem"],
    )
    assert argv[argv.index("--secret") + 1] == "id=ca,src=/etc/ca.pem" and argv[-1] == "/ctx"


def test_value_secrets_are_written_owner_only(tmp_path):
    paths = ib.write_value_secrets(
        [{"id": "b", "value": "two"}, {"id": "a", "src": "/x"}, {"id": "c", "value": "3"}], str(tmp_path)
    )
    assert sorted(paths) == ["b", "c"]
    for sid, value in (("b", "two"), ("c", "3")):
        assert os.stat(paths[sid]).st_mode & 0o777 == 0o600
        with open(paths[sid], encoding="utf-8") as fh:
            assert fh.read() == value


def test_validate_secrets(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    good = [{"id": "ca", "src": str(ca)}, {"id": "t.k-1", "env": "TOKEN"}, {"id": "v", "value": "hunter22"}]
    assert ib.validate_secrets(good, {"TOKEN": "x"}) == []
    bad = [
        {"id": "a,b", "value": "x"},
        {"id": "ca", "src": str(tmp_path / "missing.pem")},
        {"id": "ca", "value": "hunter22"},
        {"id": "e", "env": "UNSET_VAR"},
        {"id": "f", "src": "/a,b"},
        {"id": "g"},
    ]
    errors = ib.validate_secrets(bad, {})
    assert len(errors) == 6, errors
    assert errors[0].startswith("secrets[0].id: 'a,b'")
    assert "missing.pem is not a file" in errors[1]
    assert "given twice" in errors[2]
    assert "UNSET_VAR is not set" in errors[3]
    assert "secrets[4].src (f)" in errors[4]
    assert "found none" in errors[5]
    assert not any("hunter22" in e for e in errors)


def test_secret_contents_and_scrub(tmp_path, monkeypatch):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN-----\nMIIBabcdef\n-----END-----\n")
    contents = ib.secret_contents(
        [{"id": "ca", "src": str(ca)}, {"id": "t", "env": "TOK"}, {"id": "v", "value": "hunter22"}], {"TOK": "tok-abc"}
    )
    assert contents == {"ca": ca.read_bytes(), "t": b"tok-abc", "v": b"hunter22"}
    hidden = ib.sensitive_strings(contents.values())
    log = "#7 RUN cat /run/secrets/ca\n#7 0.1 MIIBabcdef\n#7 0.2 token tok-abc and hunter22 ok\n"
    scrubbed = ib.scrub(log, hidden)
    for value in ("MIIBabcdef", "tok-abc", "hunter22"):
        assert value not in scrubbed
    assert "#7 RUN cat /run/secrets/ca" in scrubbed and "ok" in scrubbed
    assert ib.scrub("rc=1 on", ["1", "on"]) == "rc=1 on", "values shorter than MIN_SCRUB_LEN stay"


def test_redact_argv_keeps_names():
    argv = ["docker", "buildx", "build", "--build-arg", "TOKEN=abc=def", "--build-arg", "PLAIN", "--build-arg=X=y", "."]
    assert ib.redact_argv(argv) == [
        "docker",
        "buildx",
        "build",
        "--build-arg",
        "TOKEN=***",
        "--build-arg",
        "PLAIN",
        "--build-arg=X=***",
        ".",
    ]


# --- registry state and the build/push/skip decision ---------------------------------------------

HASH = "sha256:current"


def imagetools_out(labels, digest="sha256:m"):
    if isinstance(labels, dict):
        image = {p: {"architecture": p, "config": {"Labels": {ib.INPUTS_LABEL: v}}} for p, v in labels.items()}
    else:
        image = {"architecture": "arm64", "os": "linux", "config": {"Labels": {ib.INPUTS_LABEL: labels}}}
    return json.dumps(
        {"manifest": {"digest": digest, "mediaType": "application/vnd.oci.image.manifest.v1+json"}, "image": image}
    )


def test_imagetools_argv():
    assert ib.imagetools_argv("docker", "127.0.0.1:5000/a:1", "remote") == [
        "docker",
        "buildx",
        "imagetools",
        "inspect",
        "--builder",
        "remote",
        "--format",
        ib.IMAGETOOLS_FORMAT,
        "127.0.0.1:5000/a:1",
    ]
    assert "--builder" not in ib.imagetools_argv("docker", "r:1")


def test_parse_imagetools():
    one = ib.parse_imagetools("r:1", 0, imagetools_out(HASH), "")
    assert (one.present, one.inputs_hash, one.digest, one.error) == (True, HASH, "sha256:m", "")
    assert one.current(HASH) and not one.current("sha256:other")
    multi = ib.parse_imagetools("r:1", 0, imagetools_out({"linux/amd64": HASH, "linux/arm64": HASH}), "")
    assert multi.current(HASH)
    mixed = ib.parse_imagetools("r:1", 0, imagetools_out({"linux/amd64": HASH, "linux/arm64": "sha256:old"}), "")
    assert mixed.present and not mixed.current(HASH)
    unlabeled = ib.parse_imagetools(
        "r:1", 0, json.dumps({"manifest": {"digest": "sha256:m"}, "image": {"os": "linux"}}), ""
    )
    assert unlabeled.present and unlabeled.inputs_hash == ""
    absent = ib.parse_imagetools("127.0.0.1:5000/a:1", 1, "", "ERROR: 127.0.0.1:5000/a:1: not found\n")
    assert (absent.present, absent.error) == (False, "")
    down = ib.parse_imagetools(
        "127.0.0.1:5000/a:1",
        1,
        "",
        'ERROR: failed to do request: Head "http://127.0.0.1:5000/v2/a/manifests/1": connection refused',
    )
    assert not down.present and "connection refused" in down.error
    assert ib.parse_imagetools("r:1", 0, "nonsense", "").error.startswith("unreadable")


def test_parse_push_digest():
    out = (
        "The push refers to repository [127.0.0.1:5000/a]\n5f70bf18a086: Pushed\n1: digest: sha256:"
        + "a" * 64
        + " size: 528\n"
    )
    assert ib.parse_push_digest(out) == "sha256:" + "a" * 64
    assert ib.parse_push_digest("nothing") == ""


def local(*labels, image_id="sha256:img"):
    return [
        ib.LocalImage(f"r:{i}", image_id if label is not None else "", label or "") for i, label in enumerate(labels)
    ]


def registry(*labels):
    return [
        ib.RegistryTag(f"r:{i}", present=label is not None, inputs_hash=label or "") for i, label in enumerate(labels)
    ]


PUSH = {"tags": ["r:0", "r:1"], "push": True, "load": True, "rebuild": "auto"}


@pytest.mark.parametrize(
    ("params", "local_images", "registry_tags", "action", "push_tags"),
    [
        # No push: the local image decides.
        ({**PUSH, "push": False}, local(HASH, HASH), None, "none", []),
        ({**PUSH, "push": False}, local("sha256:old", "sha256:old"), None, "built", []),
        ({**PUSH, "push": False, "rebuild": "always"}, local(HASH, HASH), None, "built", []),
        # Push: local current and every tag in the registry current -> nothing to do.
        (PUSH, local(HASH, HASH), registry(HASH, HASH), "none", []),
        # A push that failed last time: the registry lacks a tag (or holds an older build) -> push only those.
        (PUSH, local(HASH, HASH), registry(None, HASH), "pushed", ["r:0"]),
        (PUSH, local(HASH, HASH), registry("sha256:old", None), "pushed", ["r:0", "r:1"]),
        # ... but not when the engine's copy is not the whole result: build again with --push.
        ({**PUSH, "platform": ["linux/amd64", "linux/arm64"]}, local(HASH, HASH), registry(None, HASH), "built", []),
        ({**PUSH, "provenance": True}, local(HASH, HASH), registry(None, HASH), "built", []),
        (PUSH, local(HASH, None), registry(HASH, None), "built", []),
        # Local image stale: build (and push) whatever the registry says.
        (PUSH, local("sha256:old", "sha256:old"), None, "built", []),
        (PUSH, local(None, None), None, "built", []),
        # load=false: the registry alone decides.
        ({**PUSH, "load": False}, local(None, None), registry(HASH, HASH), "none", []),
        ({**PUSH, "load": False}, local(None, None), registry(HASH, None), "built", []),
        ({**PUSH, "rebuild": "always"}, local(HASH, HASH), registry(HASH, HASH), "built", []),
    ],
)
def test_plan_build(params, local_images, registry_tags, action, push_tags):
    plan = ib.plan_build(params, HASH, local_images, registry_tags)
    assert (plan.action, plan.push_tags) == (action, push_tags), plan.reason
    assert plan.reason


@pytest.mark.parametrize(
    ("params", "local_images", "needed"),
    [
        ({**PUSH, "push": False}, local(HASH, HASH), False),
        (PUSH, local(HASH, HASH), True),
        (PUSH, local("sha256:old", HASH), False),
        ({**PUSH, "load": False}, local(None, None), True),
        ({**PUSH, "rebuild": "always"}, local(HASH, HASH), False),
    ],
)
def test_registry_check_needed(params, local_images, needed):
    assert ib.registry_check_needed(params, local_images, HASH) is needed


@pytest.mark.parametrize(
    ("params", "plan", "deferred"),
    [
        # Without the option, or without push, nothing is deferred.
        (PUSH, None, False),
        (PUSH, ib.Plan("built", "stale"), False),
        ({**PUSH, "push": False, "push_if_verified": ""}, None, False),
        # Nothing verified, or other inputs verified: a new image, pushed only after the caller verified it.
        ({**PUSH, "push_if_verified": ""}, None, True),
        ({**PUSH, "push_if_verified": "sha256:old"}, None, True),
        # The verified inputs: this call pushes, unless it builds (rebuild=always, a missing local image).
        ({**PUSH, "push_if_verified": HASH}, None, False),
        ({**PUSH, "push_if_verified": HASH}, ib.Plan("pushed", "registry lacks r:0", ["r:0"]), False),
        ({**PUSH, "push_if_verified": HASH}, ib.Plan("none", "current"), False),
        ({**PUSH, "push_if_verified": HASH}, ib.Plan("built", "stale"), True),
    ],
)
def test_push_deferred(params, plan, deferred):
    assert ib.push_deferred(params, HASH, plan) is deferred
