"""bench/nvdec_probe.py on a machine without NVDEC: the CPU side (indices through the sampler), the comparison and
throughput logic against a stand-in decoder that serves the CPU's own frames, and the "unavailable" result."""

from __future__ import annotations

import ctypes
import json
import sys

import pytest

import bench.operators
from bench import nvdec_probe as probe
from video_assets.compute.gpu_busy import GpuBusy
from video_assets.video import sample_frames
from video_assets_tests.videos import encode_video


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("nvdec")
    return [str(encode_video(d / f"v{i}.mp4", n_frames=90, gop=30, bframes=2, first_pattern=100 * i))
            for i in range(2)]


class FakeNvc:
    """PyNvVideoCodec's SimpleDecoder surface, serving the CPU reader's frames shifted by ``shift`` positions
    (numpy arrays: DLPack-capable, as NVDEC's frames are); ``short`` drops the last frame of a batch."""

    class OutputColorType:
        RGB = "RGB"

    def __init__(self, shift: int = 0, short: bool = False, reconfigure_fails: bool = False):
        self.shift, self.short, self.made = shift, short, []
        nvc = self

        class SimpleDecoder:
            def __init__(self, path, use_device_memory=True, output_color_type=None):
                assert use_device_memory and output_color_type == "RGB"
                self.path = path
                nvc.made.append(path)

            def __len__(self):
                return probe.plan_indices(self.path, probe.PLANS["quality"])[1]

            def reconfigure_decoder(self, path):
                if reconfigure_fails:
                    raise RuntimeError("no such decoder in the cache")
                self.path = path

            def get_batch_frames_by_index(self, indices):
                want = [min(i + nvc.shift, len(self) - 1) for i in indices]
                got = probe.cpu_frames(self.path, want)
                frames = [got[i] for i in want]
                return frames[:-1] if nvc.short else frames

        self.SimpleDecoder = SimpleDecoder


def test_indices_are_the_samplers_for_both_operator_plans(videos):
    for name, plan in probe.PLANS.items():
        idx, n = probe.plan_indices(videos[0], plan)
        assert n == 90
        assert idx == sample_frames(videos[0], plan=plan).indices
    assert probe.plan_indices(videos[0], probe.PLANS["keyframes"])[0] == [0, 30, 60]  # 1 fps at 30 fps
    assert len(probe.plan_indices(videos[0], probe.PLANS["quality"])[0]) == 8


def test_exactness_is_zero_for_the_same_frames_and_names_an_off_by_one(videos):
    idx, _ = probe.plan_indices(videos[0], probe.PLANS["quality"])
    same = probe.exactness(videos[0], "96x64", "quality", idx, probe.Decoders(FakeNvc()))
    assert "error" not in same, same
    assert same["frame_exact"] and same["best_offsets"] == [0] and same["max_abs"] == 0
    assert same["nvdec_shape"] == same["cpu_shape"] == [8, 64, 96, 3] and same["nvdec_dtype"] == "uint8"
    assert [f["index"] for f in same["frames"]] == idx
    late = probe.exactness(videos[0], "96x64", "quality", idx, probe.Decoders(FakeNvc(shift=1)))
    assert not late["frame_exact"] and late["best_offsets"] == [1] and late["max_abs"] > 0
    assert all(f["best_mean_abs"] < f["mean_abs"] for f in late["frames"])


def test_a_short_batch_is_an_error_row_not_a_crash(videos):
    idx, _ = probe.plan_indices(videos[0], probe.PLANS["quality"])
    row = probe.exactness(videos[0], "96x64", "quality", idx, probe.Decoders(FakeNvc(short=True)))
    assert row["error"] == "RuntimeError: asked for 8 frames, got 7"


def test_throughput_runs_one_reused_decoder_per_thread(videos):
    nvc = FakeNvc()
    decoders = probe.Decoders(nvc)
    idx = {p: probe.plan_indices(p, probe.PLANS["keyframes"])[0] for p in videos}
    row = probe.throughput(videos, idx, 2, 0.5, decoders, lambda: GpuBusy("cpu"))
    assert row["error_count"] == 0 and row["videos"] >= 2
    assert row["frames"] == 3 * row["videos"] and row["threads"] == 2
    assert row["videos_per_s"] == pytest.approx(row["videos"] / row["seconds"], rel=0.02)
    assert row["process_cores"] > 0 and row["gpu_busy_pct"] is None
    assert len(nvc.made) == 2 and decoders.stats()["decoders_created"] == 2  # reused across files
    assert decoders.stats()["reconfigured"] >= 1


def test_parse_corpus():
    assert probe.parse_corpus("640x360:12:20,1920x1080:8:10") == [(640, 360, 12, 20.0), (1920, 1080, 8, 10.0)]


def _has_driver() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


@pytest.mark.skipif(_has_driver(), reason="a machine with an NVIDIA driver: NVDEC may be there")
def test_without_nvdec_the_probe_records_why_after_its_cpu_side(tmp_path, monkeypatch):
    monkeypatch.setattr(bench.operators, "CORPUS_DIR", tmp_path / "corpus")
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", None)  # import fails as where it is not installed
    out = tmp_path / "nvdec.json"
    args = ["--corpus", "96x64:2:1", "--exact-videos", "1", "--json", str(out)]
    assert probe.main(args) == 0
    data = json.loads(out.read_text())
    assert data["complete"] and data["errors"] == []
    st = data["nvdec"]
    assert st["available"] is False and st["reason"].startswith("import PyNvVideoCodec failed")
    assert st["libs"]["libcuda.so.1"].startswith("does not load")
    assert data["exactness"] == [] and data["throughput"] == [] and data["skipped"] == ["exactness", "throughput"]
    assert data["corpus"] == [{"size": "96x64", "videos": 2, "seconds": 1.0}]
    rows = {(r["video"], r["plan"]): r for r in data["indices"]}
    assert len(rows) == 4 and all("error" not in r for r in rows.values())
    first = rows["ops_96x64_30fps_1s_gop60_s0.mp4", "quality"]
    assert first["sample_frames_same_indices"] is True and first["cpu_shape"] == [8, 64, 96, 3]
    assert "cpu_shape" not in rows["ops_96x64_30fps_1s_gop60_s1.mp4", "quality"]  # beyond --exact-videos
    assert rows["ops_96x64_30fps_1s_gop60_s0.mp4", "keyframes"]["indices"] == [0]
    assert set(data["plans"]) == {"quality", "keyframes"} and data["plans"]["quality"]["count_k"] == 8
    assert probe.main([*args, "--require-nvdec"]) == 3


def test_a_failure_anywhere_still_writes_the_json(tmp_path, monkeypatch):
    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(probe, "corpus", broken)
    out = tmp_path / "nvdec.json"
    assert probe.main(["--corpus", "96x64:1:1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert not data["complete"] and data["errors"][0]["error"] == "OSError: disk full"
    assert data["nvdec"] is not None and data["indices"] == []


def test_the_decode_processes_summary_passes_over_a_probe_file(tmp_path, capsys):
    from bench.decode_processes import summary

    (tmp_path / "h200-nvdec.json").write_text(json.dumps({"probe": "nvdec", "throughput": []}))
    row = {"operator": "quality", "size": "640x360", "mode": "threads", "decode_processes": 0, "videos": 48,
           "videos_per_s": 20.5, "cpu_s_per_video": 0.25, "cpu_cores_busy": 5.1}
    (tmp_path / "h200-quality.json").write_text(json.dumps({"rows": [row]}))
    summary(sorted(tmp_path.glob("h200-*.json")))
    out = capsys.readouterr().out
    assert "h200-nvdec.json            not a decode_processes result" in out and "20.50" in out


def test_the_whole_probe_with_a_stand_in_decoder_fills_every_part(tmp_path, monkeypatch):
    """run()'s NVDEC branch end to end (what the one GPU call will run), with the stand-in decoder."""
    monkeypatch.setattr(bench.operators, "CORPUS_DIR", tmp_path / "corpus")
    nvc = FakeNvc()
    monkeypatch.setattr(probe, "nvdec_status", lambda: ({"available": True, "reason": None}, nvc))
    out = tmp_path / "nvdec.json"
    base = ["--corpus", "96x64:2:1", "--exact-videos", "1", "--threads", "1,2", "--json", str(out)]
    assert probe.main([*base, "--seconds", "0.3", "--require-nvdec"]) == 0
    data = json.loads(out.read_text())
    assert data["complete"] and data["errors"] == [] and data["skipped"] == []
    assert [(r["plan"], r["frame_exact"], r["max_abs"]) for r in data["exactness"]] == [("quality", True, 0),
                                                                                         ("keyframes", True, 0)]
    rows = [(r["size"], r["plan"], r["threads"]) for r in data["throughput"]]
    assert rows == [("96x64", "quality", 1), ("96x64", "keyframes", 1), ("96x64", "quality", 2),
                    ("96x64", "keyframes", 2)]  # fewer threads first
    assert data["running"] is None
    assert all(r["videos"] > 0 and r["error_count"] == 0 for r in data["throughput"])
    assert data["throughput"][0]["frames"] == 8 * data["throughput"][0]["videos"]
    assert data["decoders"]["decoders_created"] == 2 and data["decoders"]["reconfigure_errors"] == []
    # no budget: nothing measured, everything named as skipped, still a complete result
    assert probe.main([*base, "--budget-s", "0"]) == 0
    data = json.loads(out.read_text())
    assert data["exactness"] == [] and data["throughput"] == [] and len(data["skipped"]) == 2 + 4
    assert data["complete"] and all(s.endswith(": budget") for s in data["skipped"])


def test_a_failed_reconfigure_is_recorded_and_a_new_decoder_takes_over(videos):
    nvc = FakeNvc(reconfigure_fails=True)
    decoders = probe.Decoders(nvc)
    idx = {p: probe.plan_indices(p, probe.PLANS["quality"])[0] for p in videos}
    row = probe.throughput(videos, idx, 1, 0.3, decoders, lambda: GpuBusy("cpu"))
    stats = decoders.stats()
    assert row["error_count"] == 0 and row["videos"] >= 2 and stats["reconfigured"] == 0
    assert stats["decoders_created"] == len(nvc.made) >= 2
    assert stats["reconfigure_errors"][0] == "v1.mp4: RuntimeError: no such decoder in the cache"
