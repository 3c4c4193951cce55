"""Decode in worker processes (decode_processes=N): the same rows as the thread path, bit for bit, from real
spawned processes that are reused across calls, hold no model, and are replaced when they crash or hang."""

import os
import pickle
import re
import time

import numpy as np
import pytest

from video_assets.compute.settings import DecodeSettings, decoder_threads_for
from video_assets.operators import VideoAdaptiveKeyframesSampling, VideoQualityScore, decode_processes
from video_assets.operators.combined import QualityAndKeyframes
from video_assets.operators.decode_processes import FAULT_ENV, auto_decode_processes
from video_assets.operators.stage import SharedDecode
from video_assets.video.limits import ReadLimits

TINY = "video-assets/tiny-clip"
VOLATILE = ("scored_at",)
# Equality tests run the model one frame at a time: on the CPU a batch's GEMM rounds each row depending on the
# other rows (blocking), so with several decode workers even two thread-path runs can differ in the last bit
# when videos reach the batcher in another order. One frame per batch makes the scores depend on the pixels
# alone, which is what must be equal.
EXACT = 1


def _paths(videos, tmp_path=None):
    paths = [str(p) for p in videos.values()]
    return paths + [str((tmp_path or videos["vfr.mkv"].parent) / "missing.mp4")]


def _same(a, b):
    """Rows equal exactly (floats bit for bit, arrays elementwise), apart from the time they were made."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            if k not in VOLATILE:
                _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    else:
        assert a == b, (a, b)


@pytest.fixture(scope="module")
def quality_pair():
    kw = dict(clip_model_name=TINY, device="cpu", count_k=8, batch_size=EXACT)
    procs = VideoQualityScore(decode_processes=2, **kw)
    yield VideoQualityScore(decode_processes=0, **kw), procs
    procs.close()


def test_quality_rows_equal_the_thread_path(videos, quality_pair):
    threads, procs = quality_pair
    paths = _paths(videos)
    want, got = threads.details(paths), procs.details(paths)
    assert want[-1]["error"] and "missing.mp4" in want[-1]["error"]
    assert sum(r["error"] is None for r in want) == len(videos)
    _same(want, got)
    stats = procs.last_run_stats
    assert stats.frames == sum(len(r["frame_indices"]) for r in want) and stats.frames_held == 0
    assert 0 < stats.peak_frames_held <= stats.frames


def test_processes_are_started_once_and_hold_no_model(videos, quality_pair):
    _, procs = quality_pair
    procs.details([str(videos["h264_bframes.mp4"])])
    first = procs.decode_pids()
    assert len(first) == 2
    rows = list(procs.iter_details([str(videos["vp9.webm"]), str(videos["mpeg4.avi"])]))
    assert all(r["error"] is None for r in rows)
    assert procs.decode_pids() == first  # the second call reused the same processes
    pool = procs._decode_pool
    child = pool.acquire()
    try:
        pid, model_libs = child.probe()
    finally:
        pool.release(child)
    assert pid in first and model_libs == []  # no open_clip (or weights) in a decode process


def test_the_task_sent_to_a_process_is_small_and_has_no_weights(quality_pair):
    _, procs = quality_pair
    model = procs.model
    decode = SharedDecode(procs.opener, [procs.stage(model)])
    blob = procs.in_processes(decode, [model], {})["prepare"].task_bytes  # what each process is sent
    assert len(blob) < 20_000 and b"open_clip" not in blob
    sent = pickle.loads(blob).__self__  # the call's SharedDecode, as a process gets it
    assert sent.stages[0].text_features is None  # the model side's part stays in the parent
    assert sent.opener.thread_count == decoder_threads_for(procs.decode_processes)


def test_keyframes_rows_equal_the_thread_path(videos, tmp_path):
    kw = dict(clip_model_name=TINY, device="cpu", text="a test pattern", return_keyframes=False,
              return_embeddings=True, max_num_frames=4, batch_size=EXACT)
    threads = VideoAdaptiveKeyframesSampling(decode_processes=0, output_tos_dir=str(tmp_path / "t"), **kw)
    with VideoAdaptiveKeyframesSampling(decode_processes=1, output_tos_dir=str(tmp_path / "p"), **kw) as procs:
        paths = _paths(videos, tmp_path)
        want, got = threads.details(paths), procs.details(paths)
    assert procs.decode_pids() == []  # closed by the with block
    assert sum(r["error"] is None for r in want) == len(videos)
    for w, g in zip(want, got):  # the images are written under each operator's own folder
        w.pop("tos_paths"), g.pop("tos_paths")
    _same(want, got)


@pytest.mark.parametrize("resize", ["child", "parent"])
def test_shared_decode_rows_equal_the_thread_path(videos, tmp_path, resize, monkeypatch):
    # raw frames: slots smaller than a chunk, so that every chunk crosses in a segment of its own
    monkeypatch.setattr(decode_processes, "RAW_SLOT_BYTES", 4096)
    q = dict(clip_model_name=TINY, device="cpu", count_k=5, batch_size=EXACT)
    k = dict(clip_model_name=TINY, device="cpu", return_keyframes=False, return_embeddings=True,
             max_num_frames=3, batch_size=EXACT)
    paths = _paths(videos, tmp_path)
    want = QualityAndKeyframes(q, k, decode_processes=0).details(paths)
    segments = set(os.listdir("/dev/shm"))
    with QualityAndKeyframes(q, k, decode_processes=2) as both:
        both.decode_resize = resize  # "parent": raw frames cross, the parent preprocesses (as on a GPU)
        got = both.details(paths)
    assert not {f for f in set(os.listdir("/dev/shm")) - segments if f.startswith("psm_")}  # none left behind
    assert sum(a["error"] is None and b["error"] is None for a, b in want) == len(videos)
    _same(want, got)


def test_a_crashed_process_fails_its_video_only_and_is_replaced(videos, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "exit:hevc.mkv")
    kw = dict(clip_model_name=TINY, device="cpu", count_k=4, batch_size=EXACT)
    paths = [str(p) for p in videos.values()]
    want = VideoQualityScore(decode_processes=0, **kw).details(paths)
    with VideoQualityScore(decode_processes=2, **kw) as procs:
        got = procs.details(paths)
        bad = [i for i, r in enumerate(got) if r["error"]]
        assert [paths[i] for i in bad] == [str(videos["hevc.mkv"])]
        err = got[bad[0]]["error"]
        assert "hevc.mkv" in err and "decode process" in err and "died (exit code 3)" in err
        _same([r for i, r in enumerate(want) if i not in bad], [r for i, r in enumerate(got) if i not in bad])
        crashed = int(re.search(r"decode process (\d+) died", err).group(1))
        again = procs.details([str(videos["vp9.webm"])])
        now = procs.decode_pids()
        assert len(now) == 2 and crashed not in now  # a fresh process took the crashed one's place
    _same(again, [want[paths.index(str(videos["vp9.webm"]))]])


def test_a_hung_process_is_killed_at_the_time_limit_and_replaced(videos, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "sleep:vfr.mkv")
    kw = dict(clip_model_name=TINY, device="cpu", count_k=4, limits=ReadLimits(timeout_sec=1.0))
    paths = [str(videos[n]) for n in ("h264_bframes.mp4", "vfr.mkv", "vp9.webm", "mpeg4.avi")]
    with VideoQualityScore(decode_processes=2, **kw) as procs:
        procs.details(paths[:1])  # both processes started
        before = set(procs.decode_pids())
        got = procs.details(paths)
        assert [r["error"] is None for r in got] == [True, False, True, True]
        assert "vfr.mkv" in got[1]["error"] and "took longer than the limit timeout_sec=1" in got[1]["error"]
        [hung] = before - set(procs.decode_pids())
        deadline = time.monotonic() + 30
        while _alive(hung) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(hung)  # killed (a thread stuck in FFmpeg could not have been)
        again = procs.details(paths[2:])
        assert all(r["error"] is None for r in again)
        now = set(procs.decode_pids())
    assert len(now) == 2 and hung not in now and len(before & now) == 1  # a fresh process took its place


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_in_order_window_follows_the_decode_processes(videos):
    """``iter_details`` runs ``max(8, 4 x decoders)`` videos ahead of the oldest row not yet taken, counting the
    decode processes a call uses (3 here: 12 videos), not ``decode_workers`` (1: 8), which would leave processes
    idle on a many-core host."""
    op = VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=2, decode_workers=1, decode_processes=3)
    try:
        rows = op.iter_details([str(videos["h264_bframes.mp4"])] * 20)
        first = next(rows)  # the consumer now waits: the decoders run ahead as far as the window lets them
        deadline = time.monotonic() + 120
        while op.last_run_stats.peak_in_flight < 12 and time.monotonic() < deadline:
            time.sleep(0.2)
        rest = list(rows)
    finally:
        op.close()
    assert first["error"] is None and len(rest) == 19 and all(r["error"] is None for r in rest)
    assert op.last_run_stats.peak_in_flight == 12


def test_setting_and_auto_rule():
    assert DecodeSettings(decode_processes=None).decode_processes is None
    assert DecodeSettings(decode_processes=3).decode_processes == 3
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="decode_processes"):
            VideoQualityScore(clip_model_name=TINY, device="cpu", decode_processes=bad)
    assert auto_decode_processes("cpu", cores=2) == 0 and auto_decode_processes("cuda:0", cores=4) == 0
    assert auto_decode_processes("cuda:0", cores=16) == 15 and auto_decode_processes("cpu", cores=16) == 8


def test_the_setting_reaches_the_operators_from_the_resource(tmp_path):
    from video_assets.orchestration.resources import ClipModelResource
    from video_assets.pipeline.runner import _keyframes_kwargs, _quality_kwargs
    from video_assets.pipeline.settings import KeyframeSettings, QualitySettings

    for value in (None, 0, 3):
        models = ClipModelResource(decode_processes=value).settings()
        assert models.decode_processes == value
        q = VideoQualityScore(**_quality_kwargs(QualitySettings(), models, None))
        k = VideoAdaptiveKeyframesSampling(**_keyframes_kwargs(KeyframeSettings(), str(tmp_path), "p", models, None))
        assert q.decode_processes == k.decode_processes == value
        assert QualityAndKeyframes(q, k).decode_processes == value
