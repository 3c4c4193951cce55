"""Probe video metadata: open each video and scan its packets with the project's VideoReader (one frame is
decoded, for its display rotation)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from video_assets.compute.settings import default_decode_workers
from video_assets.errors import VideoAssetsError
from video_assets.progress import Progress
from video_assets.storage import describe_uri, redact_text
from video_assets.storage.policy import SourcePolicy
from video_assets.video import VideoReader, open_source
from video_assets.video.limits import ReadLimits

log = logging.getLogger(__name__)

PROBE_FIELDS = ("duration_sec", "fps", "width", "height", "rotation", "stream_index", "num_frames", "codec",
                "size_bytes", "readable", "warnings", "error", "probed_at")


def probe_video(uri: str, storage_options: dict | None = None, *, policy: SourcePolicy | None = None,
                limits: ReadLimits | None = None, stream_index: int | None = None,
                apply_rotation: bool = True) -> dict:
    """``duration_sec``, ``fps``, ``width``, ``height`` (displayed: after the display rotation), ``rotation``
    (clockwise degrees), ``stream_index`` (the video stream read: FFmpeg's best one unless given),
    ``num_frames``, ``codec``, ``size_bytes``, ``readable``, ``warnings`` (what the reader noticed in a readable
    video, e.g. that it is cut short), ``error`` (None when readable), ``probed_at``.
    Never raises for a bad video: the error is on the row. The rotation is read from the first frame (the only
    frame decoded)."""
    row: dict = {k: None for k in PROBE_FIELDS}
    row["readable"] = False
    try:
        with open_source(uri, None, storage_options, policy=policy, limits=limits) as opened:
            row["size_bytes"] = opened.size
            with VideoReader(opened, stream_index=stream_index, apply_rotation=apply_rotation) as reader:
                row.update(duration_sec=float(reader.duration), fps=float(reader.fps), width=reader.width,
                           height=reader.height, rotation=reader.rotation, stream_index=reader.stream_index,
                           num_frames=len(reader.index), codec=reader.codec, readable=True,
                           warnings=list(reader.warnings))
    except VideoAssetsError as e:
        row["error"] = str(e)
    except Exception as e:  # noqa: BLE001 - one bad video never fails the table
        row["error"] = f"{describe_uri(uri)}: {type(e).__name__}: {redact_text(str(e))}"
    row["probed_at"] = datetime.now(timezone.utc)
    return row


def probe_videos(uris: Sequence[str], workers: int | None = None, storage_options: dict | None = None,
                 progress: Progress | None = None, *, policy: SourcePolicy | None = None,
                 limits: ReadLimits | None = None, stream_index: int | None = None,
                 apply_rotation: bool = True) -> list[dict]:
    """Probe in a thread pool (PyAV releases the GIL); results in input order. ``policy`` (default permissive)
    and ``limits`` (default limits) as in :func:`video_assets.video.open_source`; ``stream_index`` and
    ``apply_rotation`` as in :func:`probe_video`."""
    progress = progress or Progress(len(uris), "probe")
    lock = threading.Lock()

    def one(u: str) -> dict:
        r = probe_video(u, storage_options, policy=policy, limits=limits, stream_index=stream_index,
                        apply_rotation=apply_rotation)
        with lock:
            progress.step()
        return r

    with ThreadPoolExecutor(max_workers=max(1, workers or default_decode_workers()),
                            thread_name_prefix="probe") as pool:
        return list(pool.map(one, uris))
