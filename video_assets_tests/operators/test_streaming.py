"""Bounded memory: frames stream through every operator in chunks, results stream out of ``iter_details``, and
both equal their one-array / one-list forms. Frames alive at once are read from the pipeline's own counters
(RunStats), never from timing or RSS. Also: progress=True | False | callable, and the keyframe-size warning."""

import io
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
import torch

from video_assets.models import load_clip
from video_assets.operators import VideoAdaptiveKeyframesSampling, VideoQualityScore
from video_assets.operators import stage as stage_module
from video_assets.operators.batching import RunStats, iter_overlapped, run_overlapped
from video_assets.operators.combined import QualityAndKeyframes
from video_assets.operators.common import decoder_threads_for
from video_assets.operators.keyframes import KEYFRAMES_WARN_ENV, KeyframesMemoryWarning
from video_assets.operators.slabs import FeatureSlabs
from video_assets.progress import Progress, resolve_progress
from video_assets.scoring import NAMED_PROMPTS, clip_iqa_probs
from video_assets.video import (
    DEFAULT_CHUNK_FRAMES,
    FrameBuffer,
    TruncatedVideoWarning,
    VideoReader,
    iter_frames,
    make_plan,
    open_source,
    sample_chunks,
    sample_frames,
)
from video_assets.video.orientation import frame_orientation
from video_assets_tests.videos import encode_video, read_index

TINY = "video-assets/tiny-clip"
CHUNK = DEFAULT_CHUNK_FRAMES


@pytest.fixture(scope="module")
def lengths(tmp_path_factory):
    """The same content at growing lengths (every frame is sampled, so the frame count grows with them)."""
    d = tmp_path_factory.mktemp("lengths")
    return {n: str(encode_video(d / f"n{n}.mp4", n_frames=n, gop=30)) for n in (40, 200, 600)}


@pytest.fixture(scope="module")
def cut(tmp_path_factory):
    d = tmp_path_factory.mktemp("cut")
    full = encode_video(d / "full.mp4", n_frames=90, gop=12, container_options={"movflags": "faststart"})
    path = d / "cut.mp4"
    path.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    return str(path)


def frames_bound(stats_workers: int, batch: int, queue_chunks: int | None = None) -> int:
    """What the design allows at once: the queue full, each worker blocked on one more chunk, and a partial
    batch plus one chunk waiting for the model."""
    q = queue_chunks or max(4, 4 * stats_workers)
    return (q + stats_workers) * CHUNK + batch + CHUNK


# -- the sampler -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [dict(interval_frames=1, sample_mode="by_interval_frames"),
                                    dict(sample_mode="by_fps", target_fps=7.0),
                                    dict(count_k=5), dict(sample_mode="by_timestamps", timestamps_sec=[9.0])])
@pytest.mark.parametrize("chunk", [1, 7, 32])
def test_iter_frames_equals_sample_frames(videos, kwargs, chunk):
    path = str(videos["h264_bframes.mp4"])
    whole = sample_frames(path, **kwargs)
    chunks = list(iter_frames(path, chunk=chunk, **kwargs))
    assert all(0 < len(c.indices) <= chunk for c in chunks)
    assert all(len(c.indices) == len(c.timestamps) == c.frames.shape[0] for c in chunks)
    assert [i for c in chunks for i in c.indices] == whole.indices
    assert [t for c in chunks for t in c.timestamps] == whole.timestamps
    got = np.concatenate([c.frames for c in chunks]) if chunks else np.empty((0,) + whole.frames.shape[1:])
    assert got.shape == whole.frames.shape and np.array_equal(got, whole.frames)
    assert [read_index(f) for f in got] == whole.indices  # the right frames, not just the same ones


def test_iter_frames_chunks_are_their_own_arrays(videos):
    chunks = list(iter_frames(str(videos["long_gop.mp4"]), sample_mode="by_interval_frames", interval_frames=1,
                              chunk=50))
    assert len(chunks) == 6
    assert [read_index(c.frames[0]) for c in chunks] == [0, 50, 100, 150, 200, 250]  # kept chunks stay valid
    assert not any(np.shares_memory(a.frames, b.frames) for a, b in zip(chunks, chunks[1:]))


@pytest.mark.parametrize("chunk", [1, 7, 32])
def test_reused_chunk_array_gives_the_same_frames_and_is_one_array(videos, chunk):
    """FrameBuffer(reuse=True), as the operators use it: each chunk, taken before the next frame is added,
    equals the one-array sample exactly, and every chunk is written into the same array."""
    path = str(videos["long_gop.mp4"])
    kwargs = dict(sample_mode="by_interval_frames", interval_frames=2)
    whole = sample_frames(path, **kwargs)
    with open_source(path, "mp4", None) as opened, VideoReader(opened) as reader:
        plan = make_plan("by_interval_frames", 0.0, None, None, None, 2, None, None, None)
        buf = FrameBuffer(reader, chunk, reuse=True)
        chunks = [(list(c.indices), c.frames.copy(), c.frames) for c in sample_chunks(reader, plan, buffer=buf)]
    assert [i for c in chunks for i in c[0]] == whole.indices
    assert np.array_equal(np.concatenate([c[1] for c in chunks]), whole.frames)
    assert all(np.shares_memory(a[2], b[2]) for a, b in zip(chunks, chunks[1:]))  # one array, reused
    assert [read_index(f) for f in chunks[0][2]] != chunks[0][0] or len(chunks) == 1  # so: only valid until next


@pytest.mark.parametrize("reuse", [False, True])
def test_frame_buffer_takes_torch_frames_into_tensor_chunks(videos, reuse):
    """Frames given as torch tensors (as a GPU decoder gives them) are gathered into tensor chunks on their
    device, equal to the numpy chunks of the same frames."""
    path = str(videos["long_gop.mp4"])
    whole = sample_frames(path, sample_mode="by_interval_frames", interval_frames=3)
    with open_source(path, "mp4", None) as opened, VideoReader(opened) as reader:
        buf = FrameBuffer(reader, 4, len(whole.indices), reuse=reuse)
        chunks = []
        for p, f in zip(whole.indices, whole.frames):
            c = buf.add(p, torch.from_numpy(f))
            if c is not None:  # taken before the next add, as the operators do (reuse: the array is reused)
                chunks.append((c.indices, c.frames.clone()))
        last = buf.flush()
        if last is not None:
            chunks.append((last.indices, last.frames.clone()))
    assert all(isinstance(f, torch.Tensor) and f.dtype == torch.uint8 for _, f in chunks)
    assert [len(i) for i, _ in chunks][:-1] == [4] * (len(chunks) - 1)
    assert [i for c, _ in chunks for i in c] == whole.indices
    assert np.array_equal(torch.cat([f for _, f in chunks]).numpy(), whole.frames)


def test_operators_with_pooled_buffers_equal_unpooled(batch, tmp_path, monkeypatch):
    """The reused chunk array and the feature slabs change where bytes live, never a result: the same calls
    with a new array per chunk and the features as the model returned them give the same rows."""
    def run():
        q = VideoQualityScore(clip_model_name=TINY, device="cpu", sample_mode="by_interval_frames",
                              interval_frames=1, batch_size=5, decode_workers=2)
        k = VideoAdaptiveKeyframesSampling(clip_model_name=TINY, device="cpu", text="a white square", fps=6.0,
                                           max_num_frames=3, batch_size=7, decode_workers=2,
                                           return_keyframes=True)
        both = QualityAndKeyframes(
            VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=6, batch_size=4, decode_workers=2),
            VideoAdaptiveKeyframesSampling(clip_model_name=TINY, device="cpu", text="a white square", fps=4.0,
                                           max_num_frames=2, batch_size=3, decode_workers=2))
        return q.details(batch), k.details(batch), both.details(batch)

    pooled = run()
    original_init = FrameBuffer.__init__
    monkeypatch.setattr(FrameBuffer, "__init__",
                        lambda self, *a, reuse=False, **kw: original_init(self, *a, reuse=False, **kw))
    # where every operator's loop is set up: each stage's kept rows as the model and the stage return them
    monkeypatch.setattr(stage_module, "FeatureSlabs", lambda embed, keep: lambda pixels: keep(embed(pixels)))
    plain = run()
    # frames, indices and keyframe images exactly; scores to float rounding (which videos share a model batch
    # depends on timing, with or without pooling)
    for a, b in zip(pooled[:2], plain[:2]):
        _same_rows(a, b)
    _same_rows([x for pair in pooled[2] for x in pair], [x for pair in plain[2] for x in pair])
    assert pooled[0][0]["error"] is None and len(pooled[0][0]["frame_indices"]) > 2 * 5


def test_feature_slabs_never_overwrite_returned_rows():
    calls = []

    def embed(px):
        out = torch.randn(px.shape[0], 3)
        calls.append(out.clone())
        return out

    slabs = FeatureSlabs(embed, rows=10)
    got = [slabs(torch.zeros(n, 1)) for n in (4, 4, 3, 12, 1, 9)]  # fills, spills, larger than a slab
    assert all(torch.equal(g, c) for g, c in zip(got, calls))
    assert got[0].untyped_storage().data_ptr() == got[1].untyped_storage().data_ptr()  # rows of one slab
    assert got[2].untyped_storage().data_ptr() != got[1].untyped_storage().data_ptr()  # 4 + 4 + 3 > 10


def test_reading_the_display_matrix_keeps_no_reference_to_the_frame(videos):
    """A decoded frame dies as soon as it is dropped (no reference cycle waiting for the garbage collector),
    so the decoder's picture pool does not grow with the frames decoded between collections."""
    import av

    with av.open(str(videos["h264_bframes.mp4"])) as c:
        frame = next(c.decode(c.streams.video[0]))
        before = sys.getrefcount(frame)
        assert frame_orientation(frame) is not None
        assert sys.getrefcount(frame) == before


def test_iter_frames_validates_before_io_and_warns_on_truncation(tmp_path, cut):
    missing = str(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="chunk"):
        iter_frames(missing, chunk=0)
    with pytest.raises(ValueError, match="count_k"):
        iter_frames(missing, count_k=0)
    with pytest.warns(TruncatedVideoWarning):
        whole = sample_frames(cut, sample_mode="by_interval_frames", interval_frames=1)
    with pytest.warns(TruncatedVideoWarning):
        chunks = list(iter_frames(cut, sample_mode="by_interval_frames", interval_frames=1, chunk=8))
    assert whole.truncated and [i for c in chunks for i in c.indices] == whole.indices


# -- frames alive at once --------------------------------------------------------------------------------------
def test_quality_frames_held_stay_bounded_as_frame_count_grows(lengths):
    op = VideoQualityScore(clip_model_name=TINY, device="cpu", sample_mode="by_interval_frames",
                           interval_frames=1, batch_size=8, decode_workers=1)
    peaks = {}
    for n, path in lengths.items():
        [d] = op.score_details(video_paths=[path])
        s = op.last_run_stats
        assert d["error"] is None and len(d["frame_indices"]) == n == s.frames
        assert s.largest_chunk <= CHUNK  # never the whole plan in one array
        assert s.chunks >= n // CHUNK
        assert s.frames_held == 0  # everything emitted went through the model
        peaks[n] = s.peak_frames_held
    bound = frames_bound(1, 8)
    assert bound < max(lengths)  # the bound is below the frame count: the test can tell streaming apart
    assert all(p <= bound for p in peaks.values()), peaks


def test_quality_keeps_a_score_per_frame_not_its_features(lengths):
    """Until a video is finished, the quality stage keeps each frame's probability (4 bytes per prompt), not its
    image features (64 float32 for the tiny model, 768 for ViT-L/14): at every frame of a long video, what
    grows with its frames is a few bytes each."""
    op = VideoQualityScore(clip_model_name=TINY, device="cpu", sample_mode="by_interval_frames",
                           interval_frames=1, batch_size=8, decode_workers=1, prompt=["quality", "sharpness"])
    n, path = max(lengths.items())
    [d] = op.score_details(video_paths=[path])
    s = op.last_run_stats
    assert d["error"] is None and len(d["frame_scores"]) == n and len(d["frame_scores"][0]) == 2
    assert op.model.encode_text(["x"]).shape[1] >= 32  # features would be 16 times as many bytes, or more
    assert s.peak_kept_bytes == n * 2 * 4  # all of the video's scores, float32, two prompts
    assert s.kept_bytes == 0  # released once the video finished


def test_shared_decode_streams_both_sides(lengths, tmp_path):
    q = VideoQualityScore(clip_model_name=TINY, device="cpu", sample_mode="by_interval_frames",
                          interval_frames=1, batch_size=8, decode_workers=1)
    k = VideoAdaptiveKeyframesSampling(clip_model_name=TINY, device="cpu", text="a white square", fps=30.0,
                                       max_num_frames=4, batch_size=8, decode_workers=1, return_keyframes=False)
    both = QualityAndKeyframes(q, k)
    path = lengths[600]
    [(dq, dk)] = both.details([path])
    s = both.last_run_stats
    assert dq["error"] is None and dk["error"] is None
    assert s.frames == 600 + dk["num_candidates"] and s.largest_chunk <= CHUNK
    assert s.peak_frames_held <= frames_bound(1, 8)
    # and the streamed sides equal separate passes
    [sq] = q.score_details(video_paths=[path])
    [sk] = k.details([path])
    assert dq["frame_indices"] == sq["frame_indices"] and dq["timestamps"] == sq["timestamps"]
    assert np.allclose(dq["frame_scores"], sq["frame_scores"], atol=1e-6)
    assert dk["frame_ids"] == sk["frame_ids"] and np.allclose(dk["scores"], sk["scores"], atol=1e-6)


def test_streamed_quality_equals_the_one_array_computation(lengths, cut):
    """Chunked preprocessing scores every frame as preprocessing all of ``sample_frames``'s array at once."""
    clip = load_clip(TINY, device="cpu")
    op = VideoQualityScore(clip_model_name=TINY, device="cpu", sample_mode="by_interval_frames",
                           interval_frames=1, batch_size=16, decode_workers=2)
    paths = [lengths[200], cut]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncatedVideoWarning)
        rows = op.score_details(video_paths=paths)
        for d, path in zip(rows, paths):
            # the operator's decoder threads: frame threading decides how much of a cut file decodes
            s = sample_frames(path, sample_mode="by_interval_frames", interval_frames=1,
                              decoder_threads=decoder_threads_for(op.decode_workers))
            txt = clip.encode_text(list(NAMED_PROMPTS["quality"]))
            expected = clip_iqa_probs(clip.encode_pixels(clip.preprocess(s.frames)), txt, clip.logit_scale)
            assert d["frame_indices"] == s.indices and d["timestamps"] == s.timestamps
            assert d["truncated"] == s.truncated and d["warnings"] == s.warnings
            assert d["frame_scores"] == pytest.approx(expected[:, 0].tolist(), abs=1e-6)
    assert rows[1]["truncated"] and rows[1]["warnings"]


# -- streamed results ------------------------------------------------------------------------------------------
def _without_time(rows):
    return [{k: v for k, v in r.items() if k != "scored_at"} for r in rows]


def _same_rows(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            if key in ("frame_scores", "scores", "score") and x[key] is not None:
                assert np.allclose(x[key], y[key], atol=1e-6), key
            elif key == "keyframes":
                assert len(x[key]) == len(y[key]) and all(np.array_equal(p, q) for p, q in zip(x[key], y[key]))
            elif key != "scored_at":
                assert x[key] == y[key], (x["source"], key)


@pytest.fixture(scope="module")
def batch(videos, tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    broken = d / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 2)
    return [str(videos["h264_bframes.mp4"]), str(d / "missing.mp4"), str(videos["long_gop.mp4"]), str(broken),
            str(videos["vfr.mkv"]), str(videos["short_gop.mp4"]), str(videos["start_offset.mp4"])]


def test_quality_iter_details_equals_details(batch):
    op = VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=6, batch_size=5, decode_workers=2)
    listed = op.details(batch)
    _same_rows(list(op.iter_details(batch, window=2)), listed)
    assert op.last_run_stats.peak_in_flight <= 2 and op.last_run_stats.peak_results_waiting <= 2
    pairs = list(op.iter_details(batch, ordered=False))
    assert sorted(i for i, _ in pairs) == list(range(len(batch)))
    _same_rows([r for _, r in sorted(pairs, key=lambda p: p[0])], listed)
    assert listed[1]["error"] and listed[3]["error"] and listed[0]["error"] is None


def test_keyframes_iter_details_equals_details_with_exports(batch, tmp_path):
    op = VideoAdaptiveKeyframesSampling(clip_model_name=TINY, device="cpu", text="a white square", fps=6.0,
                                        max_num_frames=3, all_depth=2, batch_size=7, decode_workers=2,
                                        output_tos_dir=str(tmp_path / "kf"), return_keyframes=True)
    listed = op.details(batch)
    streamed = list(op.iter_details(batch, window=3))
    _same_rows(streamed, listed)
    assert streamed[0]["tos_paths"] and len(streamed[0]["keyframes"]) == 3
    assert op.last_run_stats.peak_in_flight <= 3


def test_combined_iter_details_equals_details(batch, tmp_path):
    q = VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=6, batch_size=5, decode_workers=2)
    k = VideoAdaptiveKeyframesSampling(clip_model_name=TINY, device="cpu", text="a white square", fps=6.0,
                                       max_num_frames=3, all_depth=2, batch_size=7, decode_workers=2,
                                       output_tos_dir=str(tmp_path / "kf"), return_keyframes=True)
    both = QualityAndKeyframes(q, k)
    listed = both.details(batch)
    streamed = list(both.iter_details(batch))
    assert len(streamed) == len(listed)
    _same_rows([p[0] for p in streamed], [p[0] for p in listed])
    _same_rows([p[1] for p in streamed], [p[1] for p in listed])


def _fake_run(n, delays, window, ordered, stats, frames_per_item=3):
    """iter_overlapped over synthetic items: item i sleeps delays[i] before emitting its frames."""
    def prepare(i, emit):
        time.sleep(delays[i])
        emit(torch.full((frames_per_item, 2), float(i)))
        return i

    return iter_overlapped(list(range(n)), str, prepare, embed=lambda x: x * 2,
                           finish=lambda i, meta, feats: (meta, feats[:, 0].tolist()), batch_size=4,
                           decode_workers=2, ordered=ordered, window=window, stats=stats)


def test_reorder_window_bounds_results_held_behind_a_slow_video():
    stats = RunStats()
    delays = [0.4] + [0.0] * 11  # the first video is slow: the others finish and wait for it
    got = list(_fake_run(12, delays, window=3, ordered=True, stats=stats))
    assert [pos for pos, _ in got] == list(range(12))
    assert [out.value for _, out in got] == [(i, [2.0 * i] * 3) for i in range(12)]
    assert stats.peak_in_flight <= 3 and stats.peak_results_waiting <= 3
    unbounded = RunStats()
    list(_fake_run(12, delays, window=None, ordered=True, stats=unbounded))
    assert unbounded.peak_results_waiting > 3  # without the window they pile up: the counter sees it


def test_completion_order_yields_fast_videos_first():
    got = list(_fake_run(6, [0.5] + [0.0] * 5, window=None, ordered=False, stats=RunStats()))
    assert sorted(pos for pos, _ in got) == list(range(6))
    assert got[-1][0] == 0  # the slow one last


def test_closing_the_iterator_early_stops_the_workers():
    run = _fake_run(50, [0.01] * 50, window=4, ordered=True, stats=RunStats())
    first = next(run)
    assert first[0] == 0
    run.close()
    deadline = time.monotonic() + 5
    while any(t.name.startswith("decode-") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name.startswith("decode-") for t in threading.enumerate())


def test_list_form_is_unchanged():
    outs = run_overlapped(list(range(5)), str, lambda i, emit: (emit(torch.ones(2, 2) * i), i)[1],
                          embed=lambda x: x, finish=lambda i, meta, f: float(f.sum()), batch_size=3)
    assert [o.value for o in outs] == [4.0 * i for i in range(5)]


# -- progress --------------------------------------------------------------------------------------------------
class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_callable_gets_every_video(batch):
    calls = []
    op = VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=2, decode_workers=2,
                           progress=lambda done, total, rate: calls.append((done, total, rate)))
    op.details(batch)
    assert [c[:2] for c in calls] == [(i, len(batch)) for i in range(1, len(batch) + 1)]
    assert all(rate > 0 for _, _, rate in calls)
    again = []
    list(op.iter_details(batch[:2], progress=lambda *a: again.append(a)))  # the call's own wins
    assert [a[0] for a in again] == [1, 2] and len(calls) == len(batch)


def test_progress_false_prints_nothing(batch, capfd, caplog, monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())  # even where a bar would be drawn
    caplog.set_level("INFO")
    op = VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=2, progress=False)
    op.details(batch[:2])
    assert sys.stderr.getvalue() == ""
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert not [r for r in caplog.records if r.name == "video_assets.progress"]


def test_progress_bar_on_a_terminal_and_quiet_otherwise(batch, monkeypatch):
    op = VideoAdaptiveKeyframesSampling(clip_model_name=TINY, device="cpu", fps=2.0, max_num_frames=2,
                                        return_keyframes=False)
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    op.details(batch[:3])  # the default: interactive stderr -> a tqdm bar
    assert "keyframes" in term.getvalue() and "3/3" in term.getvalue()
    plain = io.StringIO()
    monkeypatch.setattr(sys, "stderr", plain)
    op.details(batch[:3])  # not a terminal: no bar
    assert plain.getvalue() == ""
    op.details(batch[:2], progress=True)  # forced
    assert "2/2" in plain.getvalue()


def test_pipeline_progress_object_is_used_as_is(caplog):
    caplog.set_level("INFO")
    seen = []
    p = Progress(2, "probe", every_sec=0.0, callback=lambda *a: seen.append(a))
    assert resolve_progress(p, 2, "x") is p
    p.step()
    p.step()
    assert [s[:2] for s in seen] == [(1, 2), (2, 2)]
    assert any("probe: 2/2 videos" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="progress"):
        resolve_progress("yes", 1, "x")
    with pytest.raises(ValueError, match="progress"):
        VideoQualityScore(clip_model_name=TINY, device="cpu", progress=3)


def test_progress_module_is_torch_free():
    code = "import sys, video_assets.progress; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- keyframe arrays -------------------------------------------------------------------------------------------
def test_keyframes_size_warning_once_per_call(batch, monkeypatch):
    good = [batch[0], batch[2], batch[4], batch[5]]
    op = VideoAdaptiveKeyframesSampling(clip_model_name=TINY, device="cpu", fps=4.0, max_num_frames=3,
                                        return_keyframes=True, keyframes_warn_mb=0.01)
    with pytest.warns(KeyframesMemoryWarning) as record:
        op.details(good)
    assert len([w for w in record if w.category is KeyframesMemoryWarning]) == 1
    assert "iter_details" in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KeyframesMemoryWarning)
        big = VideoAdaptiveKeyframesSampling(clip_model_name=TINY, device="cpu", fps=4.0, max_num_frames=3,
                                             return_keyframes=True)  # default 2048 MB: far above
        big.details(good)
        off = VideoAdaptiveKeyframesSampling(clip_model_name=TINY, device="cpu", fps=4.0, max_num_frames=3,
                                             return_keyframes=False, keyframes_warn_mb=0.01)
        off.details(good)  # no arrays returned: nothing to warn about
        list(op.iter_details(good))  # the iterator holds one video's arrays at a time
    monkeypatch.setenv(KEYFRAMES_WARN_ENV, "0.01")
    from_env = VideoAdaptiveKeyframesSampling(clip_model_name=TINY, device="cpu", fps=4.0, max_num_frames=3)
    assert from_env.keyframes_warn_mb == 0.01
    monkeypatch.setenv(KEYFRAMES_WARN_ENV, "lots")
    with pytest.raises(ValueError, match=KEYFRAMES_WARN_ENV):
        VideoAdaptiveKeyframesSampling(clip_model_name=TINY, device="cpu")


def test_batches_gathered_from_several_videos_reuse_one_array_and_keep_every_feature():
    # Every batch of 4 is gathered from chunks of 3 frames (two or three videos): with an embed that copies
    # its features out (FeatureSlabs), each full batch is written into the same array, and no video's features
    # are overwritten by a later batch.
    seen = []

    def embed(x):
        seen.append(x)  # kept alive, so that a new array per batch could not get the same address
        return x.flatten(1)[:, :2] * 2  # a view of the batch's rows: FeatureSlabs copies them out

    slabs = FeatureSlabs(embed)
    frames = lambda i: torch.full((3, 3, 4, 4), float(i)).contiguous(memory_format=torch.channels_last)  # noqa: E731
    outs = run_overlapped(list(range(8)), str, lambda i, emit: (emit(frames(i)), i)[1], embed=slabs,
                          finish=lambda i, meta, f: f[:, 0].tolist(), batch_size=4, decode_workers=1)
    assert [o.value for o in outs] == [[2.0 * i] * 3 for i in range(8)]
    # the first full batch's array serves every later one
    assert len(seen) == 6 and len({x.data_ptr() for x in seen[1:]}) == 1
    plain = run_overlapped(list(range(8)), str, lambda i, emit: (emit(frames(i)), i)[1],
                           embed=lambda x: x.flatten(1)[:, :2] * 2, finish=lambda i, meta, f: f[:, 0].tolist(),
                           batch_size=4, decode_workers=1)
    assert [o.value for o in plain] == [o.value for o in outs]  # an embed without the promise: a new array
