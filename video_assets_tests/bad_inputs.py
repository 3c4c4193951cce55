"""A corpus of broken and hostile inputs, generated from videos encoded with PyAV and then cut or patched.

:func:`make_video_corpus` writes the files; each :class:`BadInput` says how to reach it (a local path, or a
path on the test HTTP server / S3 bucket / a forbidden address, turned into a source by the test) and what a
caller must see: ``errors`` (any of these substrings in the row's error) or, for inputs that are odd but
valid, ``same_as`` (the good video whose result it must equal).
"""

from __future__ import annotations

import json
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from video_assets_tests.videos import encode_audio_only, encode_video

SEED = 7


@dataclass
class BadInput:
    kind: str
    where: str  # "local", "http", "s3", "address" (a literal URI that must never be contacted)
    path: str  # local path, or the path on the server/bucket, or the URI itself
    errors: tuple[str, ...] = ()  # the row's error contains one of these
    same_as: str | None = None  # a good video's name: the row must equal that video's result
    policy: bool = False  # needs the source policy / limits of the other engineer's API
    extra: dict = field(default_factory=dict)


def _box_offsets(data: bytes, name: bytes) -> list[int]:
    """Offsets of top-level MP4 boxes named ``name``."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == name:
            out.append(pos)
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
        if size < 8:
            break
        pos += size
    return out


def _empty_video_track(path: Path) -> Path:
    """A Matroska file whose video track has no frames at all (zero duration)."""
    out = av.open(str(path), "w", format="matroska")
    s = out.add_stream("libx264", rate=12)
    s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
    out.start_encoding()  # writes the header; no frame follows
    out.close()
    return path


def _subtitle_only_mkv(path: Path) -> Path:
    """A Matroska file with one SubRip subtitle stream and nothing else (remuxed from an .srt)."""
    srt = path.with_suffix(".srt")
    srt.write_text("".join(f"{i + 1}\n00:00:0{i},000 --> 00:00:0{i},900\nline {i}\n\n" for i in range(3)))
    with av.open(str(srt)) as inp, av.open(str(path), "w", format="matroska") as out:
        s = out.add_stream_from_template(inp.streams.subtitles[0])
        for p in inp.demux(inp.streams.subtitles[0]):
            if p.dts is None:
                continue
            p.stream = s
            out.mux(p)
    srt.unlink()
    return path


def _mjpeg_mkv_huge(path: Path) -> Path:
    """MJPEG in Matroska whose container header and every JPEG frame header claim 16000 x 16000 pixels (256
    Mpx: FFmpeg accepts the size, so only a pixel limit stops a 384 MB allocation per frame)."""
    out = av.open(str(path), "w", format="matroska")
    s = out.add_stream("mjpeg", rate=6)
    s.width, s.height, s.pix_fmt = 256, 256, "yuvj420p"
    for i in range(6):
        frame = av.VideoFrame.from_ndarray(np.full((256, 256, 3), 40 * i, np.uint8), format="rgb24")
        frame.pts = i
        for packet in s.encode(frame):
            out.mux(packet)
    for packet in s.encode():
        out.mux(packet)
    out.close()
    data = bytearray(path.read_bytes())
    # Matroska PixelWidth (0xB0) / PixelHeight (0xBA) with a 2-byte value 256 = 0x0100
    for elem in (b"\xb0\x82\x01\x00", b"\xba\x82\x01\x00"):
        i = data.find(elem)
        assert i >= 0, elem
        data[i + 2:i + 4] = struct.pack(">H", 16000)
    # JPEG SOF0: FF C0 len(2) precision(1) height(2) width(2)
    pos = 0
    while (pos := data.find(b"\xff\xc0\x00\x11\x08", pos)) >= 0:
        data[pos + 5:pos + 9] = struct.pack(">HH", 16000, 16000)
        pos += 9
    path.write_bytes(bytes(data))
    return path


def make_good_videos(folder: Path) -> dict[str, Path]:
    """Two small, valid videos (distinct content) and their webm twin for the wrong-extension case."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "good_a.mp4": encode_video(folder / "good_a.mp4", n_frames=24, fps=12, gop=6, bframes=0,
                                   options={"preset": "ultrafast"}),
        "good_b.mkv": encode_video(folder / "good_b.mkv", n_frames=30, fps=10, codec="libx264", gop=10,
                                   bframes=2),
        "good_c.webm": encode_video(folder / "good_c.webm", n_frames=20, fps=10, codec="libvpx-vp9", gop=10,
                                    bframes=None),
    }


def make_video_corpus(folder: Path) -> list[BadInput]:
    """Write every broken/hostile file into ``folder``; return the cases (local, http, s3, address)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    src = folder / "_src"
    src.mkdir(exist_ok=True)
    moov_last = encode_video(src / "moov_last.mp4", n_frames=48, fps=12, gop=12, bframes=2)
    faststart = encode_video(src / "faststart.mp4", n_frames=48, fps=12, gop=12, bframes=2,
                             container_options={"movflags": "faststart"})
    fs_data = faststart.read_bytes()
    ml_data = moov_last.read_bytes()
    assert _box_offsets(fs_data, b"moov")[0] < _box_offsets(fs_data, b"mdat")[0]
    assert _box_offsets(ml_data, b"moov")[0] > _box_offsets(ml_data, b"mdat")[0]

    def write(name: str, data: bytes) -> str:
        (folder / name).write_bytes(data)
        return str(folder / name)

    cases: list[BadInput] = []
    not_video = ("not a readable video", "no video stream", "cannot be opened", "Invalid data", "could not")

    cases.append(BadInput("empty_file", "local", write("empty.mp4", b""), ("empty",)))
    cases.append(BadInput("random_bytes", "local", write("random.mp4", rng.randbytes(64 * 1024)), not_video))
    cases.append(BadInput("truncated_moov_missing", "local",
                          write("moov_missing.mp4", ml_data[:_box_offsets(ml_data, b"moov")[0]]),
                          not_video + ("moov",)))
    mdat = _box_offsets(fs_data, b"mdat")[0]
    cut = mdat + (len(fs_data) - mdat) // 3
    # the frames before the cut are real: a result flagged truncated, with a warning (the documented contract)
    cases.append(BadInput("truncated_mdat_cut", "local", write("mdat_cut.mp4", fs_data[:cut]),
                          extra={"truncated": True}))
    cases.append(BadInput("huge_dimensions", "local", str(_mjpeg_mkv_huge(folder / "huge.mkv")),
                          ("max_pixels",), policy=True))
    cases.append(BadInput("zero_duration_stream", "local", str(_empty_video_track(folder / "no_frames.mkv")),
                          ("has no frames", "End of file", "no video stream")))
    cases.append(BadInput("audio_only", "local", str(encode_audio_only(folder / "audio_only.mp4")),
                          ("no video stream",)))
    png = folder / "image.png"
    from PIL import Image
    Image.fromarray(np.full((64, 96, 3), 200, np.uint8)).save(png)
    cases.append(BadInput("image_file", "local", str(png), ("still image", "not a video", "image")))
    cases.append(BadInput("subtitle_only_mkv", "local", str(_subtitle_only_mkv(folder / "subs.mkv")),
                          ("no video stream",)))
    corrupt = bytearray(fs_data)
    mid = mdat + (len(fs_data) - mdat) // 2
    corrupt[mid:mid + 2048] = rng.randbytes(2048)
    cases.append(BadInput("corrupted_frames_mid_stream", "local", write("corrupt_mid.mp4", bytes(corrupt)),
                          ("corrupt", "decode", "Invalid data"), extra={"may_succeed": True}))
    cases.append(BadInput("wrong_extension", "local", write("webm_named.mp4",
                                                            (folder / "_good" / "good_c.webm").read_bytes()),
                          same_as="good_c.webm"))
    unsupported = bytearray((folder / "_good" / "good_b.mkv").read_bytes())
    i = unsupported.find(b"V_MPEG4/ISO/AVC")
    unsupported[i:i + 15] = b"V_NOSUCH/CODEC!"  # same length: the Matroska element sizes stay valid
    cases.append(BadInput("unsupported_codec", "local", write("unsupported_codec.mkv", bytes(unsupported)),
                          ("codec", "decoder")))
    cases.append(BadInput("ftyp_only", "local", write("ftyp_only.mp4", fs_data[:32]), not_video + ("moov",)))
    cases.append(BadInput("html_as_video", "local", write("error_page.mp4", b"<html><body>403 Forbidden"
                                                          b"</body></html>\n" * 20), not_video))
    cases.append(BadInput("missing_file", "local", str(folder / "does_not_exist.mp4"),
                          ("not found", "No such file", "does not exist")))
    (folder / "a_folder.mp4").mkdir(exist_ok=True)
    cases.append(BadInput("directory", "local", str(folder / "a_folder.mp4"),
                          ("folder", "directory", "not a file", "Is a directory")))
    # remote
    cases.append(BadInput("s3_zero_byte_object", "s3", "empty_object.mp4", ("empty",)))
    cases.append(BadInput("http_404", "http", "nope/missing.mp4", ("404", "not found", "Not Found")))
    cases.append(BadInput("http_slow_server", "http", "slow/good_a.mp4",
                          ("timed out", "timeout", "Timeout"), policy=True, extra={"delay": 5}))
    cases.append(BadInput("http_redirect_loop", "http", "loop/good_a.mp4", ("redirect",), policy=True))
    cases.append(BadInput("http_redirect_to_metadata", "http", "evil/good_a.mp4",
                          ("169.254.169.254", "metadata", "not allowed"), policy=True))
    cases.append(BadInput("metadata_address", "address", "http://169.254.169.254/latest/meta-data/iam/x.mp4",
                          ("169.254.169.254", "metadata", "not allowed"), policy=True))
    cases.append(BadInput("path_traversal", "local", str(folder / ".." / ".." / ".." / "etc" / "passwd"),
                          ("not allowed", "outside the allowed"), policy=True))
    return cases


def manifest_level_lines(good: list[str]) -> tuple[str, dict[int, str]]:
    """A CSV manifest mixing ``good`` URIs with broken lines; returns (text, {line: expected error})."""
    lines = ["uri,label"]
    expected: dict[int, str] = {}
    for u in good:
        lines.append(f"{u},good")
    lines.append("")  # blank line: skipped silently
    lines.append(f"{good[0]},dup")  # duplicate row: marked, processed once
    bad = [
        ('x.mp4,too,many', "expected 2 fields, got 3"),
        ('"unclosed.mp4,oops', "a quoted field is not closed on this line"),
        ('"quoted"junk.mp4,x', "',' expected after '\"'"),
        (',no uri', "'uri'/'video_path' is missing"),
        ("a\x01b.mp4,ctrl", "contains control characters"),
    ]
    for text, err in bad:
        lines.append(text)
        expected[len(lines)] = err
    return "\n".join(lines) + "\n", expected


def jsonl_manifest(good: list[str]) -> tuple[bytes, dict[int, str]]:
    """JSON Lines with invalid JSON, a non-object, a number as URI and a non-UTF-8 line among good rows."""
    rows = [json.dumps({"uri": u, "label": "good"}).encode() for u in good]
    bad = [(b'{"uri": "broken.mp4"', "invalid JSON"), (b"[1, 2]", "expected a JSON object, got list"),
           (b'{"uri": 5}', "not a string (int)"), (b'{"uri": "vid\xe9o.mp4"}', "not UTF-8 text"),
           (b'{"uri": "\\ud800.mp4"}', "lone surrogate"), (b"[" * 100_000, "nested too deeply")]
    lines = list(rows)
    expected = {}
    for data, err in bad:
        lines.append(data)
        expected[len(lines)] = err
    return b"\n".join(lines) + b"\n", expected
