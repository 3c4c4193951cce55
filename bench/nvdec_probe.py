"""NVDEC through PyNvVideoCodec against the CPU sampler: frame-exactness and throughput (issue 18, item 2).

    python -m bench.nvdec_probe [--corpus 640x360:12:20,1920x1080:8:10] [--exact-videos 2] [--seconds 2]
                                [--threads 1,2,4,7,14] [--budget-s 50] [--require-nvdec] [--json PATH]

Benchmark tooling only: nothing in ``video_assets/`` uses NVDEC before this has run on a GPU. On bench/operators.py's
corpus (``--corpus``: ``WIDTHxHEIGHT:VIDEOS:SECONDS`` per size, the corpora ``bench/gpu_session.sh`` prepares;
missing videos are encoded), for the plans of the two operators (:data:`PLANS`: quality's 8 frames, keyframes'
1 fps candidates), the frame indices are the CPU path's own (the reader's frame index and ``select_positions``)
and the CPU frames the reader's (``fetch``, the pixels ``sample_frames`` returns). NVDEC decodes the same indices with
``SimpleDecoder(path, use_device_memory=True, output_color_type=RGB).get_batch_frames_by_index``; each thread owns
one decoder, reused across files with ``reconfigure_decoder``.

1. ``nvdec``: whether PyNvVideoCodec imports, the driver libraries (libcuda, libnvcuvid, libnvidia-encode) and
   torch's CUDA; ``available`` false with the ``reason`` otherwise (on a machine without a GPU the import fails
   on libnvidia-encode.so.1).
2. ``indices``: per video and plan, the CPU path's indices and frame count, and whether ``sample_frames``
   returned exactly those (always runs, GPU or not).
3. ``exactness``: for ``--exact-videos`` videos per size and each plan, NVDEC's frame for each index against the
   CPU's frames at index-2..index+2: abs pixel difference with the same index (max, mean, 99th percentile, share
   over 16), and the offset of the best-matching CPU frame (0 everywhere: frame-exact; +-1: off by one).
4. ``throughput``: per plan and size, for each thread count, frames/s and videos/s over ``--seconds`` (the corpus
   cycled), cores busy (the whole machine, /proc/stat), this process's CPU (``process_cores``), the threads' own
   CPU, GPU and NVDEC busy (nvidia-smi), errors. Videos/s that grows with threads while the threads' CPU share
   stays high means the decode calls run in parallel, i.e. release the GIL; flat videos/s with ``process_cores``
   near 1 means they hold it.

Everything that fails (import, missing driver library, a decode) is recorded in the JSON, never a crash without
output; the JSON is rewritten after each phase (``complete`` false until the end), also on SIGTERM, and
``running`` names the work in progress, so a crash in native code (its stacks go to stderr) leaves what it was
doing. Throughput runs thread count by thread count (all figures of 1 thread first). Phases stop starting new
work after ``--budget-s``; what was left is listed in ``skipped``. Exit status 0, or 3 with
``--require-nvdec`` when NVDEC was not available.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import faulthandler
import json
import os
import platform
import signal
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench.decode_processes import _write
from bench.operators import corpus
from bench.timing import busy_cpu_seconds
from video_assets.keyframes.settings import KeyframeSelection
from video_assets.video import VideoReader, make_plan, open_source, sample_frames, select_positions
from video_assets.video.plan import DEFAULT_PLAN

# The operators' own plans: quality's default (count_k=8), keyframes' candidates (1 fps; max_candidates caps
# long videos only, none of the corpus).
PLANS = {"quality": DEFAULT_PLAN,
         "keyframes": make_plan("by_fps", target_fps=KeyframeSelection().fps,
                                max_frames=KeyframeSelection().max_candidates)}
CORPUS = "640x360:12:20,1920x1080:8:10"  # gpu_session.sh's C360 and C1080
NEIGHBOURS = 2  # CPU frames compared on each side of an index
DRIVER_LIBS = ("libcuda.so.1", "libnvcuvid.so.1", "libnvidia-encode.so.1")


class Stopped(Exception):
    """SIGTERM (the step's timeout): write what was measured and stop."""


def parse_corpus(spec: str) -> list[tuple[int, int, int, float]]:
    """``"640x360:12:20,1920x1080:8:10"`` -> [(640, 360, 12, 20.0), (1920, 1080, 8, 10.0)]."""
    out = []
    for part in spec.split(","):
        size, n, seconds = part.split(":")
        w, h = (int(x) for x in size.lower().split("x"))
        out.append((w, h, int(n), float(seconds)))
    return out


def _error(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


def plan_indices(path: str, plan) -> tuple[list[int], int]:
    """The CPU path's frame indices for ``plan`` (the reader's frame index, ``select_positions``, as the
    operators' stages take them) and the video's frame count."""
    with open_source(path) as opened, VideoReader(opened) as reader:
        return select_positions(plan, reader.index.times, reader.duration).tolist(), len(reader.index)


def cpu_frames(path: str, positions: list[int]) -> dict[int, np.ndarray]:
    """The CPU decoder's RGB frames (as displayed) at ``positions``, through the reader's fetch."""
    with open_source(path) as opened, VideoReader(opened) as reader:
        return {int(p): np.array(a) for p, a in reader.fetch(np.asarray(positions), rgb=True)}


def nvdec_status() -> tuple[dict, object | None]:
    """What NVDEC needs, and the imported module (None when it is not usable)."""
    st: dict = {"available": False, "reason": None, "libs": {}, "pynvvideocodec": None, "torch_cuda": None}
    for lib in DRIVER_LIBS:
        try:
            ctypes.CDLL(lib)
            st["libs"][lib] = "loads"
        except OSError as e:
            st["libs"][lib] = f"does not load: {e}"
    try:
        import torch

        st["torch"] = torch.__version__
        st["torch_cuda"] = torch.cuda.is_available()
        if st["torch_cuda"]:
            st["device_name"] = torch.cuda.get_device_name(0)
    except Exception as e:  # noqa: BLE001 - recorded
        st["torch_error"] = _error(e)
    try:
        import PyNvVideoCodec as nvc
    except Exception as e:  # noqa: BLE001 - an ImportError, or PyNvVideoCodec's RuntimeError without a driver
        st["reason"] = f"import PyNvVideoCodec failed: {_error(e)}"
        return st, None
    st["pynvvideocodec"] = getattr(nvc, "__version__", "?")
    st["cuda_version"] = str(getattr(nvc, "__cuda_version__", None))
    if not st["torch_cuda"]:
        st["reason"] = "torch sees no CUDA device"
        return st, None
    st["available"] = True
    return st, nvc


class Decoders:
    """One SimpleDecoder per thread slot, made on first use and reused across files (``reconfigure_decoder``);
    a reconfigure that fails is recorded and replaced by a new decoder."""

    def __init__(self, nvc):
        self.nvc, self.slots, self.current = nvc, {}, {}
        self.lock = threading.Lock()  # for the counts: each slot is one thread's, the counts are everyone's
        self.created, self.create_s, self.reconfigured, self.reconfigure_s = 0, 0.0, 0, 0.0
        self.reconfigure_errors: list[str] = []

    def _new(self, path: str):
        t = time.perf_counter()
        dec = self.nvc.SimpleDecoder(path, use_device_memory=True, output_color_type=self.nvc.OutputColorType.RGB)
        with self.lock:
            self.created += 1
            self.create_s += time.perf_counter() - t
        return dec

    def get(self, slot: int, path: str):
        dec = self.slots.get(slot)
        if dec is None:
            dec = self.slots[slot] = self._new(path)
        elif self.current[slot] != path:
            t = time.perf_counter()
            try:
                dec.reconfigure_decoder(path)
                with self.lock:
                    self.reconfigured += 1
                    self.reconfigure_s += time.perf_counter() - t
            except Exception as e:  # noqa: BLE001 - recorded, and a fresh decoder instead
                with self.lock:
                    self.reconfigure_errors.append(f"{Path(path).name}: {_error(e)}")
                dec = self.slots[slot] = self._new(path)
        self.current[slot] = path
        return dec

    def stats(self) -> dict:
        return {"decoders_created": self.created, "create_s": round(self.create_s, 3),
                "reconfigured": self.reconfigured, "reconfigure_s": round(self.reconfigure_s, 3),
                "reconfigure_errors": self.reconfigure_errors[:5]}


def nvdec_frames(dec, indices: list[int]):
    """NVDEC's frames at ``indices`` as one (n, H, W, 3) CUDA tensor, copied out of the decoder's reused
    buffers before the next call."""
    import torch

    frames = dec.get_batch_frames_by_index(indices)
    if len(frames) != len(indices):  # it drops out-of-range and repeated indices
        raise RuntimeError(f"asked for {len(indices)} frames, got {len(frames)}")
    out = torch.stack([torch.from_dlpack(f) for f in frames])
    if out.is_cuda:  # the copy is done before the decoder writes its buffers again
        torch.cuda.current_stream(out.device).synchronize()
    return out


def compare(gpu: np.ndarray, indices: list[int], cpu: dict[int, np.ndarray]) -> dict:
    """NVDEC's frames (n, H, W, 3) for ``indices`` against the CPU's frames by position."""
    hist = np.zeros(256, np.int64)
    per = []
    for frame, i in zip(gpu, indices):
        diff = np.abs(frame.astype(np.int16) - cpu[i].astype(np.int16)).astype(np.uint8)
        hist += np.bincount(diff.ravel(), minlength=256)
        near = {o: float(np.abs(frame.astype(np.int16) - cpu[i + o].astype(np.int16)).mean())
                for o in range(-NEIGHBOURS, NEIGHBOURS + 1) if i + o in cpu}
        best = min(near, key=near.get)
        per.append({"index": i, "max_abs": int(diff.max()), "mean_abs": round(float(diff.mean()), 3),
                    "best_offset": best, "best_mean_abs": round(near[best], 3)})
    total = int(hist.sum())
    cum = np.cumsum(hist)
    return {"max_abs": max(p["max_abs"] for p in per),
            "mean_abs": round(float((hist * np.arange(256)).sum()) / total, 3),
            "p99_abs": int(np.searchsorted(cum, 0.99 * total)),
            "share_over_16": round(float(hist[17:].sum()) / total, 5),
            "best_offsets": sorted({p["best_offset"] for p in per}),
            "frame_exact": all(p["best_offset"] == 0 for p in per), "frames": per}


def exactness(path: str, size: str, plan_name: str, indices: list[int], decoders: Decoders) -> dict:
    row: dict = {"video": Path(path).name, "size": size, "plan": plan_name, "indices": indices}
    try:
        dec = decoders.get(0, path)
        gpu = nvdec_frames(dec, indices).cpu().numpy()
        row["nvdec_shape"], row["nvdec_dtype"] = list(gpu.shape), str(gpu.dtype)
        n = len(dec)
        near = sorted({i + o for i in indices for o in range(-NEIGHBOURS, NEIGHBOURS + 1) if 0 <= i + o < n})
        cpu = cpu_frames(path, near)
        row["cpu_shape"] = [len(indices), *next(iter(cpu.values())).shape]
        row["nvdec_num_frames"] = n
        if list(gpu.shape[1:]) != row["cpu_shape"][1:]:
            raise RuntimeError(f"NVDEC frames are {list(gpu.shape[1:])}, the CPU's {row['cpu_shape'][1:]}")
        row.update(compare(gpu, indices, cpu))
    except Exception as e:  # noqa: BLE001 - recorded
        row["error"] = _error(e)
    return row


def throughput(paths: list[str], indices: dict[str, list[int]], threads: int, seconds: float,
               decoders: Decoders, device_busy) -> dict:
    """``threads`` threads, each with its own decoder, take the cycled ``paths`` for ``seconds``."""
    lock, cursor, stop = threading.Lock(), [0], 0.0  # stop: set when the clock starts
    done = [[0, 0, 0.0] for _ in range(threads)]  # videos, frames, thread CPU s
    errors: list[str] = []

    def work(slot: int) -> None:
        c0 = time.thread_time()
        try:
            while time.perf_counter() < stop:
                with lock:
                    path = paths[cursor[0] % len(paths)]
                    cursor[0] += 1
                out = nvdec_frames(decoders.get(slot, path), indices[path])
                done[slot][0] += 1
                done[slot][1] += int(out.shape[0])
        except Exception as e:  # noqa: BLE001 - recorded; this thread stops
            errors.append(_error(e))
        done[slot][2] = time.thread_time() - c0

    for slot in range(threads):  # before the clock: each slot's decoder made or moved to these videos, one call
        path = paths[slot % len(paths)]
        nvdec_frames(decoders.get(slot, path), indices[path])
    with device_busy() as busy:  # nvidia-smi started and stopped outside the clock
        b0, p0, t0 = busy_cpu_seconds(), time.process_time(), time.perf_counter()
        stop = t0 + seconds
        pool = [threading.Thread(target=work, args=(s,), daemon=True) for s in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            while t.is_alive():
                t.join(0.2)
        wall = time.perf_counter() - t0
        b1, p1 = busy_cpu_seconds(), time.process_time()
    videos, frames = sum(d[0] for d in done), sum(d[1] for d in done)
    gpu, dec = busy.means()
    return {"threads": threads, "videos": videos, "frames": frames, "seconds": round(wall, 2),
            "videos_per_s": round(videos / wall, 2), "frames_per_s": round(frames / wall, 1),
            "cpu_cores_busy": round((b1 - b0) / wall, 2) if b0 is not None and b1 is not None else None,
            "process_cores": round((p1 - p0) / wall, 2),
            "thread_cpu_share": round(sum(d[2] for d in done) / (wall * threads), 3),
            "cpu_s_per_video": round((p1 - p0) / videos, 4) if videos else None,
            "gpu_busy_pct": gpu, "nvdec_busy_pct": dec, "gpu_busy_samples": len(busy.samples),
            "errors": errors[:5], "error_count": len(errors)}


def run(args, out: dict, path: Path | None) -> None:
    deadline = time.perf_counter() + args.budget_s

    def left(need: float) -> bool:  # time for ``need`` more seconds of work before the budget ends
        return time.perf_counter() + need < deadline

    def save() -> None:
        _write(path, out)

    st, nvc = nvdec_status()
    out["nvdec"] = st
    save()
    corpora = []
    for w, h, n, seconds in parse_corpus(args.corpus):
        paths = corpus(size=(w, h), n=n, seconds=seconds, workers=max(2, (os.cpu_count() or 1) // 2))
        corpora.append((f"{w}x{h}", paths))
        out["corpus"].append({"size": f"{w}x{h}", "videos": len(paths), "seconds": seconds})
    idx: dict[tuple[str, str], list[int]] = {}
    for size, paths in corpora:  # the CPU side: indices, and sample_frames on the exactness videos
        for i, p in enumerate(paths):
            for name, plan in PLANS.items():
                row: dict = {"video": Path(p).name, "size": size, "plan": name}
                try:
                    idx[p, name], row["num_frames"] = plan_indices(p, plan)
                    row["indices"] = idx[p, name]
                    if i < args.exact_videos:
                        got = sample_frames(p, plan=plan)
                        row["sample_frames_same_indices"] = got.indices == idx[p, name]
                        row["cpu_shape"] = list(got.frames.shape)
                except Exception as e:  # noqa: BLE001 - recorded
                    row["error"] = _error(e)
                out["indices"].append(row)
    save()
    if nvc is None:
        out["skipped"] += ["exactness", "throughput"]
        return
    decoders = Decoders(nvc)
    for size, paths in corpora:
        for name in PLANS:
            for p in paths[:args.exact_videos]:
                if (p, name) not in idx:
                    continue
                if not left(2.0):
                    out["skipped"].append(f"exactness {name} {size} {Path(p).name}: budget")
                    continue
                out["running"] = f"exactness {name} {size} {Path(p).name}"
                save()
                out["exactness"].append(exactness(p, size, name, idx[p, name], decoders))
                out["running"] = None
                save()
    from video_assets.compute.gpu_busy import GpuBusy

    # thread counts outermost: a crash in concurrent decoding (one decoder per thread) still leaves every
    # figure of fewer threads; within one count, 360p quality and keyframes, then 1080p
    todo = [(t, s, n) for t in (int(x) for x in args.threads.split(",")) for s, _ in corpora
            for n in args.throughput_plans.split(",")]
    for threads, size, name in todo:
        paths = [p for p in next(ps for s, ps in corpora if s == size) if (p, name) in idx]
        if not left(args.seconds + 1.0) or not paths:
            out["skipped"].append(f"throughput {name} {size} threads={threads}: "
                                  f"{'budget' if paths else 'no indices'}")
            continue
        row = {"plan": name, "size": size}
        out["running"] = f"throughput {name} {size} threads={threads}"  # left in the JSON by a crash
        save()
        try:
            row.update(throughput(paths, {p: idx[p, name] for p in paths}, threads, args.seconds, decoders,
                                  lambda: GpuBusy("cuda:0")))
        except Exception as e:  # noqa: BLE001 - recorded
            row["error"] = _error(e)
        out["throughput"].append(row)
        out["decoders"], out["running"] = decoders.stats(), None
        save()
        print(f"nvdec {name:9s} {size:>9s} threads={threads:<2d} {row.get('videos_per_s', '-')} videos/s "
              f"{row.get('frames_per_s', '-')} frames/s, process cores {row.get('process_cores', '-')}"
              f"{' error: ' + row['error'] if 'error' in row else ''}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=CORPUS, help="WIDTHxHEIGHT:VIDEOS:SECONDS per size, comma-separated")
    ap.add_argument("--exact-videos", type=int, default=2, help="videos per size compared frame by frame")
    ap.add_argument("--seconds", type=float, default=2.0, help="per throughput figure")
    ap.add_argument("--threads", default="1,2,4,7,14", help="concurrent decoders (threads) per figure")
    ap.add_argument("--throughput-plans", default="quality,keyframes", help="plans measured for throughput")
    ap.add_argument("--budget-s", type=float, default=50.0, help="no new exactness or throughput work after this")
    ap.add_argument("--require-nvdec", action="store_true", help="exit 3 when NVDEC is not available")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = {"probe": "nvdec", "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
           "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "plans": {k: dataclasses.asdict(v) for k, v in PLANS.items()},
           "nvdec": None, "corpus": [], "indices": [], "exactness": [], "throughput": [], "decoders": None,
           "skipped": [], "errors": [], "running": None, "complete": False}

    def term(*_):
        raise Stopped("SIGTERM")

    if not faulthandler.is_enabled():  # a crash in native code prints every thread's stack to the log
        faulthandler.enable()
    previous = signal.signal(signal.SIGTERM, term)
    try:
        run(args, out, args.json)
        out["complete"] = True
    except (Exception, Stopped) as e:  # noqa: BLE001 - every failure is a result
        out["errors"].append({"error": _error(e), "traceback": traceback.format_exc(limit=8)})
    finally:
        signal.signal(signal.SIGTERM, previous)
        if args.json:
            _write(args.json, out)
        else:
            print(json.dumps(out, indent=1))
    st = out["nvdec"] or {}
    print(f"nvdec: {'available' if st.get('available') else 'NOT available: ' + str(st.get('reason'))}; "
          f"{len(out['exactness'])} exactness rows, {len(out['throughput'])} throughput rows, "
          f"{len(out['skipped'])} skipped, {len(out['errors'])} errors", file=sys.stderr)
    return 3 if args.require_nvdec and not st.get("available") else 0


if __name__ == "__main__":
    sys.exit(main())
