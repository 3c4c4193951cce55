"""The pure URI helpers of storage/uri.py, without I/O: one rule per question, and the callers that use it."""

from __future__ import annotations

import os

import pytest

from video_assets.errors import SourcePolicyError
from video_assets.storage.fs import filesystem_for
from video_assets.storage.policy import SourcePolicy, local_roots_from
from video_assets.storage.uri import (
    bucket_of,
    describe_uri,
    is_local,
    is_remote_uri,
    join_uri,
    local_path,
    redact_text,
    scheme_of,
    strip_file_scheme,
)


@pytest.mark.parametrize("uri,scheme", [
    ("/data/a.mp4", ""), ("relative/a.mp4", ""), ("C:/videos/a.mp4", ""), ("file:///data/a.mp4", "file"),
    ("FILE:///data/a.mp4", "file"), ("S3://bucket/k", "s3"), ("s3a://bucket/k", "s3a"), ("tos://b/k", "tos"),
    ("https://host/x.mp4", "https"), ("file:/one/slash", ""), ("3s://not-a-scheme", ""),
    ("git+ssh://host/repo", "git+ssh"),
])
def test_scheme_of(uri, scheme):
    assert scheme_of(uri) == scheme


def test_remote_and_local():
    remote = ("http://h/x", "HTTPS://h/x", "s3://b/k", "s3a://b/k", "tos://b/k")
    assert [is_remote_uri(u) for u in remote] == [True] * 5
    assert [is_remote_uri(u) for u in ("/x", "file:///x", "ftp://h/x", "memory://x")] == [False] * 4
    assert [is_local(u) for u in ("/x", "rel/x", "file:///x", "File:///x")] == [True] * 4
    assert [is_local(u) for u in ("s3://b/k", "http://h/x", "memory://x")] == [False] * 3


@pytest.mark.parametrize("uri,path", [
    ("file:///data/a.mp4", "/data/a.mp4"),
    ("FILE:///data/a.mp4", "/data/a.mp4"),  # the scheme's case does not matter, as in scheme_of
    ("File://relative/a.mp4", "relative/a.mp4"),
    ("/data/a.mp4", "/data/a.mp4"),
    ("relative/a.mp4", "relative/a.mp4"),
    ("s3://bucket/file:///k", "s3://bucket/file:///k"),  # only a leading file:// is a scheme
    ("https://h/file://x", "https://h/file://x"),
])
def test_strip_file_scheme(uri, path):
    assert strip_file_scheme(uri) == path


def test_local_path_is_absolute_and_expands_home(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert local_path("a/b.mp4") == str(tmp_path / "a" / "b.mp4")
    assert local_path("file://a/../c.mp4") == str(tmp_path / "c.mp4")
    assert local_path("FILE:///x/y.mp4") == "/x/y.mp4"
    assert local_path("~/v.mp4") == str(tmp_path / "home" / "v.mp4")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "a", target_is_directory=True)
    assert local_path(str(link / "b.mp4")) == str(link / "b.mp4")  # symlinks are kept


def test_bucket_of():
    assert bucket_of("s3://bucket/a/b.mp4") == "bucket"
    assert bucket_of("tos://user@bucket/k") == "bucket"
    assert bucket_of("s3://bucket") == "bucket"
    assert bucket_of("S3A://b-1.x/") == "b-1.x"


def test_join_uri():
    assert join_uri("s3://b/prefix/", "/kf/", "a.jpg") == "s3://b/prefix/kf/a.jpg"
    assert join_uri("/data", "kf", "a.jpg") == os.path.join("/data", "kf", "a.jpg")
    assert join_uri("file:///data/", "a.jpg") == "file:///data/a.jpg"


def test_describe_uri_removes_credentials_and_queries():
    assert describe_uri("https://user:pw@host:8080/a.mp4?X-Amz-Signature=s#frag") == \
        "https://host:8080/a.mp4?<redacted>"
    assert describe_uri("s3://AKIA:secret@bucket/k") == "s3://bucket/k"
    assert describe_uri("/local/path?x=1") == "/local/path?x=1"  # a local path is not a URL
    assert describe_uri("http://[::1/x") == "http://<unparseable>"


def test_redact_text():
    text = redact_text("GET https://u:pw1@h/k?sig=abc failed; X-Amz-Credential=AKIAXYZ/x token=s3cr3t&b=1")
    assert text == "GET https://h/k?<redacted> failed; X-Amz-Credential=<redacted> token=<redacted>&b=1"


def test_callers_share_the_file_rule(tmp_path):
    """filesystem_for, the policy's local roots and its local check agree on upper-case ``FILE://``."""
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    upper = "FILE://" + str(video)
    fs, path = filesystem_for(upper)
    assert path == str(video) and fs.cat_file(path) == b"x"
    assert local_roots_from(["FILE://" + str(tmp_path), "", "s3://b/x", str(tmp_path / "d")]) == \
        (str(tmp_path), str(tmp_path / "d"))
    policy = SourcePolicy(local_roots=local_roots_from(["File://" + str(tmp_path)]))
    policy.check(upper)  # inside the root
    with pytest.raises(SourcePolicyError, match="outside the allowed folders"):
        policy.check("FILE:///etc/passwd")
