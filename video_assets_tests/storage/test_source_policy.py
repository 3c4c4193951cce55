"""SourcePolicy: where manifest rows may point. Rejections happen before any I/O (the server sees nothing, the
file is never opened), name the redacted source and the rule, and keep the row with its error."""

from __future__ import annotations

import os
import socket

import pandas as pd
import pytest

from video_assets.errors import SourcePolicyError, VideoSourceError
from video_assets.storage.fs import describe_uri, redact_text
from video_assets.storage.policy import SourcePolicy
from video_assets.video import sample_frames


def test_permissive_allows_local_and_loopback_but_not_metadata(videos, http_server):
    p = SourcePolicy.permissive()
    p.check(str(videos["h264_bframes.mp4"]))
    p.check(f"http://127.0.0.1:{http_server.server_address[1]}/x.mp4")
    for uri in ("http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/",
                "http://[::ffff:169.254.169.254]/"):
        with pytest.raises(SourcePolicyError, match="metadata"):
            p.check(uri)


@pytest.mark.parametrize("uri, rule", [
    ("/etc/passwd", "outside the allowed folders"),
    ("file:///root/.aws/credentials", "outside the allowed folders"),
    ("../../secret", "outside the allowed folders"),
    ("http://169.254.169.254/latest/meta-data/iam/", "cloud metadata address"),
    ("http://[fd00:ec2::254]/latest/", "cloud metadata address"),
    ("http://localhost:1/v.mp4", "loopback"),
    ("http://127.1:1/v.mp4", "loopback"),  # legacy numeric form, resolved like the OS would
    ("http://10.1.2.3/v.mp4", "private-network"),
    ("http://[::1]:1/v.mp4", "loopback"),
    ("s3://someone-elses-bucket/v.mp4", "bucket 'someone-elses-bucket'"),
    ("ftp://host/v.mp4", "not among the allowed"),
])
def test_strict_policy_rejects(tmp_path, uri, rule):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    policy = SourcePolicy(local_roots=(str(inbox),), buckets=("inbox-bucket",))
    with pytest.raises(SourcePolicyError, match=rule) as info:
        policy.check(uri)
    assert str(info.value).startswith(describe_uri(uri) + ": source not allowed")


def test_symlink_and_dotdot_are_resolved_before_the_root_check(tmp_path, videos):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(videos["h264_bframes.mp4"].read_bytes())
    (inbox / "link.mp4").symlink_to(secret)
    policy = SourcePolicy(local_roots=(str(inbox),))
    with pytest.raises(SourcePolicyError):
        policy.check(str(inbox / "link.mp4"))
    with pytest.raises(SourcePolicyError):
        policy.check(str(inbox / ".." / "secret.mp4"))
    with pytest.raises(SourcePolicyError):  # a sibling folder whose name starts like the root
        policy.check(str(tmp_path / "inbox-evil" / "v.mp4"))
    (inbox / "ok.mp4").write_bytes(b"x")
    policy.check(str(inbox / "sub" / ".." / "ok.mp4"))


def test_hosts_allowlist_and_wildcards():
    p = SourcePolicy(hosts=("videos.example.com", "*.cdn.example.net"), allow_private_networks=True)
    p.check_url("https://videos.example.com/a.mp4", resolve=False)
    p.check_url("https://eu.cdn.example.net/a.mp4", resolve=False)
    for bad in ("https://evil.com/a.mp4", "https://cdn.example.net.evil.com/a.mp4"):
        with pytest.raises(SourcePolicyError, match="not among the allowed hosts"):
            p.check_url(bad, resolve=False)


def test_rejected_http_source_is_never_requested(fault_server):
    url = fault_server.url("h264_bframes.mp4")
    with pytest.raises(SourcePolicyError, match="loopback"):
        sample_frames(url, count_k=2, policy=SourcePolicy())  # default: private networks blocked
    assert fault_server.requests == []


def test_hostname_resolving_to_loopback_is_blocked(fault_server):
    assert socket.gethostbyname("localhost") == "127.0.0.1"
    url = f"http://localhost:{fault_server.server_address[1]}/h264_bframes.mp4"
    with pytest.raises(SourcePolicyError, match=r"loopback address \(localhost resolves to it\)"):
        sample_frames(url, count_k=2, policy=SourcePolicy())
    assert fault_server.requests == []


def test_allowed_server_redirecting_to_metadata_or_loopback(fault_server, monkeypatch):
    """An allowed host may answer with a redirect to a blocked address: the client refuses the hop."""
    # The first hop goes to 127.0.0.1 (the only address these tests contact), so loopback is allowed here;
    # the redirect target is a metadata address, blocked even so, and never contacted.
    policy = SourcePolicy(allow_private_networks=True)
    url = fault_server.redirect("to-metadata.mp4", "http://169.254.169.254/latest/meta-data/")
    with pytest.raises(SourcePolicyError, match="metadata address"):
        sample_frames(url, count_k=2, policy=policy)
    # A hostname-only allowlist: the redirect to another host (that resolves to loopback) is refused too.
    strict = SourcePolicy(hosts=("127.0.0.1",), allow_private_networks=True)
    url = fault_server.redirect("to-other-host.mp4",
                                f"http://localhost:{fault_server.server_address[1]}/h264_bframes.mp4")
    with pytest.raises(SourcePolicyError, match="not among the allowed hosts"):
        sample_frames(url, count_k=2, policy=strict)
    assert fault_server.count("h264_bframes.mp4") == 0


def test_dns_answer_checked_again_at_connect_time(fault_server, monkeypatch):
    """DNS rebinding: the upfront check sees a public address, the connection would go to 127.0.0.1. The HTTP
    client's resolver checks the answer it actually connects to, so nothing reaches the server."""
    port = fault_server.server_address[1]
    real_getaddrinfo = socket.getaddrinfo
    calls = []

    def rebinding_getaddrinfo(host, *args, **kwargs):
        if host == "rebind.test":
            calls.append(host)
            ip = "93.184.216.34" if len(calls) == 1 else "127.0.0.1"  # public first, loopback afterwards
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_getaddrinfo)
    with pytest.raises(SourcePolicyError, match="loopback"):
        sample_frames(f"http://rebind.test:{port}/h264_bframes.mp4", count_k=2, policy=SourcePolicy())
    assert len(calls) >= 2  # the upfront check and the client's own lookup
    assert fault_server.requests == []


def test_redirect_loop_is_bounded(fault_server, loopback_policy):
    url = fault_server.redirect_loop("loop.mp4")
    with pytest.raises(VideoSourceError, match="loop.mp4: cannot open \\(TooManyRedirects"):
        sample_frames(url, count_k=2, policy=loopback_policy)
    # HEAD + GET (fsspec's size probe) follow at most max_redirects + 1 hops each; no retries
    assert fault_server.count("loop.mp4") <= 2 * (loopback_policy.max_redirects + 1)


def test_base64_and_bytes_are_not_subject_to_the_policy(videos):
    data = videos["h264_bframes.mp4"].read_bytes()
    nothing = SourcePolicy(schemes=())
    assert len(sample_frames(data, count_k=2, policy=nothing)) == 2
    with pytest.raises(SourcePolicyError, match="local paths are not among the allowed"):
        sample_frames(str(videos["h264_bframes.mp4"]), count_k=2, policy=nothing)


def test_local_file_not_opened_when_rejected(tmp_path, videos, monkeypatch):
    import av

    opened = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    with pytest.raises(SourcePolicyError):
        sample_frames(str(videos["h264_bframes.mp4"]), count_k=2,
                      policy=SourcePolicy(local_roots=(str(tmp_path),)))
    assert opened == []


def test_redaction_of_credentials_in_messages(fault_server, loopback_policy):
    signed = (fault_server.url("missing.mp4") + "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE"
              "&X-Amz-Signature=deadbeefcafe")
    signed = signed.replace("http://", "http://user:hunter2@")
    with pytest.raises(VideoSourceError, match=r"not found \(404") as info:  # reached the server: a real 404
        sample_frames(signed, count_k=2, policy=loopback_policy)
    msg = str(info.value)
    for secret in ("hunter2", "AKIAEXAMPLE", "deadbeefcafe", "user:"):
        assert secret not in msg
    shown = describe_uri(signed)
    assert msg.startswith(shown + ": ") and shown.endswith("/missing.mp4?<redacted>")
    text = redact_text("GET https://b.s3.amazonaws.com/k?X-Amz-Signature=abc failed; token=xyz")
    assert "abc" not in text and "xyz" not in text


def test_policy_through_the_pipeline_runner(tmp_path, videos, fault_server):
    """Rows the policy rejects stay in every table with their error, and nothing is read for them."""
    from video_assets.pipeline.runner import build_manifest_table, score_quality
    from video_assets.pipeline.settings import pipeline_source_policy

    inbox = tmp_path / "inbox"
    (inbox / "manifests").mkdir(parents=True)
    (inbox / "videos").mkdir()
    good = inbox / "videos" / "good.mp4"
    good.write_bytes(videos["h264_bframes.mp4"].read_bytes())
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(videos["h264_bframes.mp4"].read_bytes())
    rows = ["../videos/good.mp4", "/etc/passwd", "file:///root/.aws/credentials", "../../secret",
            "http://169.254.169.254/latest/meta-data/", fault_server.url("h264_bframes.mp4"), str(outside)]
    manifest = inbox / "manifests" / "m.csv"
    manifest.write_text("uri\n" + "\n".join(rows) + "\n")
    policy = pipeline_source_policy(str(inbox), str(tmp_path / "wh"), data_dir=str(tmp_path / "data"))
    table, _ = build_manifest_table(str(manifest), "m", source_policy=policy)
    df = table.to_pandas()
    assert len(df) == len(rows)
    assert df["readable"].tolist() == [True] + [False] * (len(rows) - 1)
    assert all("source not allowed" in e for e in df["error"].iloc[1:])
    assert fault_server.requests == []
    q = score_quality(df, partition_key="m", source_policy=policy).to_pandas()
    assert len(q) == len(rows)
    assert q["quality_score"].notna().tolist() == [True] + [False] * (len(rows) - 1)
    assert all("source not allowed" in e for e in q["error"].iloc[1:])
    assert fault_server.requests == []
    assert isinstance(q, pd.DataFrame) and os.path.exists(good)


def test_a_folder_listed_twice_is_named_once(tmp_path):
    from video_assets.storage.policy import SourcePolicy

    media = tmp_path / "media"
    media.mkdir()
    policy = SourcePolicy(local_roots=[str(media), str(media) + "/", str(tmp_path / "media" / ".." / "media")],
                          buckets=["b", "b"])
    assert policy.local_roots == (str(media.resolve()),) and policy.buckets == ("b",)


def test_an_empty_scheme_list_is_refused_not_taken_for_every_scheme(tmp_path):
    """allowed_schemes=[] (a Launchpad list emptied to block sources) used to mean every scheme."""
    from video_assets.orchestration.resources import WarehouseResource

    wh = WarehouseResource(warehouse=str(tmp_path / "wh"), inbox=str(tmp_path / "inbox"))
    assert wh.model_copy(update={"allowed_schemes": ["s3"]}).source_policy().schemes == ("s3",)
    with pytest.raises(ValueError, match="allowed_schemes is empty: no manifest row could be read"):
        WarehouseResource(warehouse=str(tmp_path / "wh"), allowed_schemes=[]).source_policy()
