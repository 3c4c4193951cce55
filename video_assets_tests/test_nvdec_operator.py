"""bench/nvdec_operator.py, the candidate NVDEC path through the real operators, against a STAND-IN decoder.

The stand-in has PyNvVideoCodec's SimpleDecoder surface and serves the CPU reader's own frames as torch tensors
(the probe's tests do the same with numpy). So these tests check the plumbing only: the positions NVDEC is
asked for, chunks, preprocessing of tensors, fallbacks, the mixed queue, and that results equal the thread
path's exactly. Whether real NVDEC frames are the CPU's (same index, pixels within a tolerance) is checked by
bench/nvdec_probe.py on a GPU, not here."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from bench import nvdec_operator as nvop
from bench import nvdec_probe as probe
from video_assets.operators import VideoAdaptiveKeyframesSampling, VideoQualityScore
from video_assets_tests.operators.test_decode_processes import EXACT, _same
from video_assets_tests.videos import encode_video

TINY = "video-assets/tiny-clip"


class StandIn:
    """PyNvVideoCodec's surface: ``SimpleDecoder`` serving the CPU reader's frames (``probe.cpu_frames``) as
    uint8 torch tensors, dropping missing indices as ``get_batch_frames_by_index`` does. ``refuse``: names it
    cannot open (an unsupported codec); ``fail_call``: that call of ``get_batch_frames_by_index`` (1-based, over
    all decoders) raises; ``short``: every batch loses its last frame; ``delay``: seconds per batch."""

    class OutputColorType:
        RGB = "RGB"

    def __init__(self, refuse: tuple[str, ...] = (), fail_call: int | None = None, short: bool = False,
                 delay: float = 0.0):
        self.batches: list[tuple[str, list[int]]] = []
        self.lock = threading.Lock()
        nvc = self

        def check(path):
            if any(r in Path(path).name for r in refuse):
                raise RuntimeError("stand-in: unsupported codec")

        class SimpleDecoder:
            def __init__(self, path, use_device_memory=True, output_color_type=None):
                assert use_device_memory and output_color_type == "RGB"
                check(path)
                self.path = path

            def __len__(self):
                return probe.plan_indices(self.path, probe.PLANS["quality"])[1]

            def reconfigure_decoder(self, path):
                check(path)
                self.path = path

            def get_batch_frames_by_index(self, indices):
                with nvc.lock:
                    nvc.batches.append((Path(self.path).name, list(indices)))
                    call = len(nvc.batches)
                if call == fail_call:
                    raise RuntimeError("stand-in: decode failed")
                time.sleep(delay)
                got = probe.cpu_frames(self.path, indices)
                frames = [torch.from_numpy(got[i]) for i in indices if i in got]
                return frames[:-1] if short else frames

        self.SimpleDecoder = SimpleDecoder

    def asked(self) -> dict[str, list[int]]:
        """Per video, every index NVDEC was asked for, in order."""
        out: dict[str, list[int]] = {}
        for name, idx in self.batches:
            out.setdefault(name, []).extend(idx)
        return out


@pytest.fixture(scope="module")
def inputs(videos, tmp_path_factory):
    """Videos NVDEC takes, one it refuses (hevc), a rotated one, bytes, a missing path and a corrupt file."""
    d = tmp_path_factory.mktemp("nvdecop")
    rotated = str(encode_video(d / "rotated.mp4", display_rotation=-90))
    bad = d / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    good = [str(videos[n]) for n in ("h264_bframes.mp4", "short_gop.mp4", "vfr.mkv", "start_offset.mp4")]
    return {"good": good, "refused": str(videos["hevc.mkv"]), "rotated": rotated,
            "bytes": videos["mpeg4.avi"].read_bytes(), "missing": str(d / "missing.mp4"), "bad": str(bad)}


def _all(inputs) -> list:
    return [*inputs["good"], inputs["refused"], inputs["rotated"], inputs["missing"], inputs["bad"],
            inputs["good"][0]]


def _quality(**kw):
    return VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=8, batch_size=EXACT, decode_processes=0,
                             decode_workers=2, **kw)


def test_quality_on_the_nvdec_path_equals_the_thread_path_and_falls_back_per_video(inputs):
    paths = _all(inputs)
    op = _quality()
    binary = dict(video_binaries=[inputs["bytes"]], video_formats=["avi"])
    threads, threads_bytes = op.details(paths), op.score_details(**binary)
    nvc = StandIn(refuse=("hevc",))
    run = nvop.use_nvdec(op, nvc, sessions=2)
    try:
        nvdec, nvdec_bytes = op.details(paths), op.score_details(**binary)
    finally:
        run.close()
    _same(nvdec, threads)
    _same(nvdec_bytes, threads_bytes)
    assert nvdec_bytes[0]["error"] is None
    assert [r["error"] is None for r in nvdec] == [True] * 6 + [False, False, True]  # the batch went on
    s = run.summary()
    assert s["nvdec_videos"] == 5 and s["cpu_videos"] == 0 and s["cpu_fallbacks"] == 4
    assert s["fallback_reasons"] == {"decoder: RuntimeError: stand-in: unsupported codec": 1,
                                     "display rotation or flip": 1, "not a local file": 2}
    assert s["decoders_created"] <= 2  # one per session, reused across videos
    # NVDEC was asked for exactly the thread path's frame indices, in order, in chunks of the stage's size
    asked = nvc.asked()
    for path, row in zip(paths[:4], threads[:4]):
        assert asked[Path(path).name] == row["frame_indices"] * (2 if path == paths[0] else 1)
    assert "hevc.mkv" not in asked and "rotated.mp4" not in asked


def test_keyframes_on_the_nvdec_path_equal_the_thread_path(inputs):
    paths = _all(inputs)
    op = VideoAdaptiveKeyframesSampling(clip_model_name=TINY, device="cpu", text="a white square", fps=6.0,
                                        max_num_frames=3, batch_size=EXACT, decode_workers=2, decode_processes=0,
                                        return_keyframes=True, return_embeddings=True)
    threads = op.details(paths)
    run = nvop.use_nvdec(op, StandIn(refuse=("hevc",)), sessions=2)
    try:
        nvdec = op.details(paths)
    finally:
        run.close()
    _same(nvdec, threads)
    assert run.summary()["nvdec_videos"] == 5
    assert threads[0]["candidate_frame_ids"] and threads[0]["keyframes"]


@pytest.mark.parametrize("fault", ["fail", "short"])
def test_a_chunk_that_fails_mid_video_finishes_on_the_cpu_with_the_same_result(videos, fault):
    """300 frames at every second frame: 150 positions, several chunks; the second NVDEC call fails (or every
    batch comes back a frame short): the rest of the video is decoded on the CPU, nothing emitted is lost."""
    path = str(videos["long_gop.mp4"])
    op = VideoQualityScore(clip_model_name=TINY, device="cpu", sample_mode="by_interval_frames", interval_frames=2,
                           batch_size=EXACT, decode_processes=0, decode_workers=1)
    [threads] = op.details([path])
    nvc = StandIn(fail_call=2) if fault == "fail" else StandIn(short=True)
    run = nvop.use_nvdec(op, nvc, sessions=1)
    try:
        [nvdec] = op.details([path])
    finally:
        run.close()
    _same(nvdec, threads)
    assert len(threads["frame_indices"]) == 150
    s = run.summary()
    reason = "RuntimeError: stand-in: decode failed" if fault == "fail" else "RuntimeError: asked for 32 frames, got 31"
    assert s["nvdec_videos"] == 0 and s["mid_video_fallbacks"] == {reason: 1} and s["cpu_fallbacks"] == 1
    assert len(nvc.batches) == (2 if fault == "fail" else 1)


def test_the_mixed_queue_gives_videos_to_nvdec_sessions_and_decode_processes(inputs):
    """One NVDEC session and one decode process take videos from the one queue (the stand-in is slowed so that
    the session is busy when the process's worker asks); the rows equal the thread path's."""
    paths = inputs["good"] * 3
    threads = _quality().details(paths)
    with VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=8, batch_size=EXACT,
                           decode_processes=1) as op:
        run = nvop.use_nvdec(op, StandIn(delay=0.05), sessions=1)
        mixed = op.details(paths)
        pids = op.decode_pids()
    _same(mixed, threads)
    s = run.summary()
    assert s["nvdec_videos"] >= 1 and s["cpu_videos"] >= 1 and s["nvdec_videos"] + s["cpu_videos"] == len(paths)
    assert s["cpu_fallbacks"] == 0 and len(pids) == 1


def test_sessions_are_checked_out_without_waiting():
    sessions = nvop.Sessions(2)
    a, b = sessions.checkout(), sessions.checkout()
    assert {a, b} == {0, 1} and sessions.checkout() is None
    sessions.release(a)
    assert sessions.checkout() == a


def test_without_pynvvideocodec_use_nvdec_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", None)
    with pytest.raises(RuntimeError, match="NVDEC is not available: import PyNvVideoCodec failed"):
        nvop.use_nvdec(_quality())


BENCH = ["--size", "96x64", "--corpus-videos", "2", "--corpus-seconds", "1", "--seconds", "30", "--segments", "1",
         "--batch", "2", "--processes", "", "--operators", "quality", "--model", "tiny", "--nvdec", "2"]


def test_the_benchmark_records_nvdec_modes_as_unavailable_without_pynvvideocodec(tmp_path, monkeypatch, capsys):
    """The dry run's case (no PyNvVideoCodec): the nvdec rows say why, the threads figure is measured, exit 0."""
    from bench import decode_processes

    monkeypatch.setattr(bench_operators(), "CORPUS_DIR", tmp_path / "corpus")
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", None)
    out = tmp_path / "q.json"
    assert decode_processes.main([*BENCH, "--min-videos", "4", "--nvdec-processes", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["complete"] and data["modes"] == ["threads", "nvdec", "nvdec+1"]
    assert data["nvdec"]["available"] is False and data["nvdec"]["reason"].startswith("import PyNvVideoCodec failed")
    threads, *nv = data["rows"]
    assert threads["mode"] == "threads" and threads["decoder"] == "cpu" and threads["videos"] == 4  # --min-videos
    assert [(r["mode"], r["available"], r["decode_processes"]) for r in nv] == [("nvdec", False, 0),
                                                                                ("nvdec+1", False, 1)]
    assert all(r["reason"] == data["nvdec"]["reason"] for r in nv)
    decode_processes.summary([out])
    assert "not measured: import PyNvVideoCodec failed" in capsys.readouterr().out


def test_the_benchmark_runs_the_nvdec_mode_through_the_operator(tmp_path, monkeypatch):
    from bench import decode_processes

    monkeypatch.setattr(bench_operators(), "CORPUS_DIR", tmp_path / "corpus")
    monkeypatch.setattr(probe, "nvdec_status", lambda: ({"reason": None}, StandIn()))
    out = tmp_path / "q.json"
    assert decode_processes.main([*BENCH, "--min-videos", "4", "--json", str(out)]) == 0
    rows = {r["mode"]: r for r in json.loads(out.read_text())["rows"]}
    nv = rows["nvdec"]
    assert nv["decoder"] == "nvdec" and nv["nvdec_sessions"] == 2 and nv["decode_workers"] == 2
    assert nv["videos"] == 4 and nv["videos_per_s"] > 0
    assert nv["nvdec_videos"] == 2 + 4 and nv["cpu_fallbacks"] == 0  # the warm-up (the 2 videos), the figure
    assert rows["threads"]["decoder"] == "cpu" and rows["threads"]["videos"] == 4


def bench_operators():
    import bench.operators

    return bench.operators


def _nvdec_module():
    st, nvc = probe.nvdec_status()
    return nvc, st["reason"]


@pytest.mark.skipif(_nvdec_module()[0] is None, reason=f"needs NVDEC: {_nvdec_module()[1]}")
def test_on_a_gpu_nvdec_rows_match_the_cpu_decoder(videos):
    """The one test with REAL NVDEC (the GPU session's cuda-tests step runs it): the same model on the GPU, fed
    by the CPU decoder and by NVDEC, gives the same frame indices and nearly the same scores (NVDEC's colour
    conversion differs by a few levels; 0.02 is a first bound, the probe measures the pixel tolerance)."""
    paths = [str(videos[n]) for n in ("h264_bframes.mp4", "short_gop.mp4", "hevc.mkv", "vp9.webm")]
    op = VideoQualityScore(clip_model_name=TINY, device="cuda", count_k=6, decode_processes=0)
    cpu = op.score_details(video_paths=paths)
    run = nvop.use_nvdec(op, sessions=2)
    try:
        gpu = op.score_details(video_paths=paths)
    finally:
        run.close()
    s = run.summary()
    assert s["nvdec_videos"] >= 2, s  # the H.264 files at least; HEVC and VP9 may fall back (then said why)
    for g, c in zip(gpu, cpu):
        assert g["error"] is None and g["frame_indices"] == c["frame_indices"]
        assert g["frame_scores"] == pytest.approx(c["frame_scores"], abs=0.02)
