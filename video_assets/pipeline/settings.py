"""Settings of the pipeline's steps as plain dataclasses (the Dagster Config classes mirror them).

Each settings object has a :meth:`fingerprint`: 12 hex digits over the settings, the model name and
:data:`PIPELINE_VERSION`. The Dagster assets use it (for the default settings) as their ``code_version``, so
changing a default setting, the default model or the scoring code marks every partition stale.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from video_assets.models.defaults import (
    DEFAULT_KEYFRAMES_MODEL,
    DEFAULT_QUALITY_MODEL,
    default_model_name,
    default_model_path,
)

if TYPE_CHECKING:
    from video_assets.storage.policy import SourcePolicy

# Bump when the code that produces a table changes what it writes (not for refactors).
PIPELINE_VERSION = {"video_manifest": "2", "video_quality_scores": "2", "video_keyframes": "2"}


def _fingerprint(kind: str, payload: dict) -> str:
    blob = json.dumps({"kind": kind, "version": PIPELINE_VERSION[kind], **payload}, sort_keys=True,
                      default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ModelSettings:
    """Where and how models run. ``None`` means the operators' defaults: the ``VIDEO_ASSETS_MODEL_PATH`` /
    ``VIDEO_ASSETS_CLIP_MODEL`` environment variables, then the LAS defaults; device ``cuda`` when a GPU
    exists, else ``cpu``; dtype float16 on GPU, float32 on CPU."""

    device: str | None = None
    dtype: str | None = None
    model_path: str | None = None
    quality_model_name: str | None = None
    keyframes_model_name: str | None = None
    quality_batch_size: int = 32
    keyframes_batch_size: int = 16
    decode_workers: int | None = None
    decode_processes: int | None = None  # None: auto, 0: decode threads, N: N decode processes

    @property
    def quality_model(self) -> str:
        return default_model_name(self.quality_model_name, DEFAULT_QUALITY_MODEL)

    @property
    def keyframes_model(self) -> str:
        return default_model_name(self.keyframes_model_name, DEFAULT_KEYFRAMES_MODEL)

    @property
    def resolved_model_path(self) -> str:
        return default_model_path(self.model_path)


@dataclass(frozen=True)
class ManifestSettings:
    """``probe``: open every video and record its metadata (a demux-only scan, no decoding)."""

    probe: bool = True
    probe_workers: int | None = None

    def fingerprint(self) -> str:
        return _fingerprint("video_manifest", {"settings": asdict(self)})


@dataclass(frozen=True)
class QualitySettings:
    """The VideoQualityScore parameters that change scores (see :class:`VideoQualityScore`)."""

    prompt: str = "quality"
    sample_mode: str = "by_count_uniform"
    start_time_sec: float = 0.0
    end_time_sec: float | None = None
    count_k: int | None = 8
    interval_sec: float | None = None
    interval_frames: int | None = None
    target_fps: float | None = None
    timestamps_sec: tuple | None = None
    max_frames: int | None = None
    reduce_mode: str = "avg"
    default_video_format: str = "mp4"

    def sample_settings(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: d[k] for k in ("sample_mode", "start_time_sec", "end_time_sec", "count_k", "interval_sec",
                                  "interval_frames", "target_fps", "timestamps_sec", "max_frames")}

    def operator_kwargs(self) -> dict[str, Any]:
        d = asdict(self)
        if d["timestamps_sec"] is not None:
            d["timestamps_sec"] = list(d["timestamps_sec"])
        return d

    def fingerprint(self, model_name: str) -> str:
        return _fingerprint("video_quality_scores", {"settings": asdict(self), "model": model_name})


@dataclass(frozen=True)
class KeyframeSettings:
    """The VideoAdaptiveKeyframesSampling parameters that change the selection or the images."""

    text: str = ""
    fps: float = 1.0
    max_num_frames: int = 32
    t1: float = 0.8
    t2: float = -100.0
    all_depth: int = 5
    budget: str = "exact"
    max_candidates: int | None = None
    img_type: str = ".jpg"
    jpeg_quality: int = 95
    video_src_type: str = "video_url"
    video_format: str = "mp4"

    def operator_kwargs(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self, model_name: str) -> str:
        return _fingerprint("video_keyframes", {"settings": asdict(self), "model": model_name})


@dataclass
class StepStats:
    """What a step reports besides its table."""

    rows: int = 0
    failed: int = 0
    elapsed_sec: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def videos_per_sec(self) -> float:
        return self.rows / self.elapsed_sec if self.elapsed_sec > 0 else 0.0


def pipeline_source_policy(inbox: str, warehouse: str, *, extra_roots: tuple[str, ...] = (),
                           extra_buckets: tuple[str, ...] = (), hosts: tuple[str, ...] | None = None,
                           schemes: tuple[str, ...] | None = None, allow_private_networks: bool = False,
                           data_dir: str | None = None) -> SourcePolicy:
    """The strict policy the pipeline reads manifests' videos with: local paths only inside the inbox tree,
    ``data_dir`` (default: ``manifests.DATA_DIR``) and ``extra_roots``;
    s3/tos only in the inbox's and the warehouse's buckets and
    ``extra_buckets``; http(s) to ``hosts`` (None: any public host); private networks and cloud metadata
    addresses blocked unless ``allow_private_networks``."""
    from video_assets.pipeline.manifests import DATA_DIR
    from video_assets.storage.policy import ALL_SCHEMES, SourcePolicy, local_roots_from
    from video_assets.storage.uri import bucket_of, scheme_of

    roots = list(local_roots_from([inbox, data_dir or DATA_DIR, *extra_roots]))
    buckets = [b for b in extra_buckets if b]
    for uri in (inbox, warehouse):
        if scheme_of(uri) in ("s3", "s3a", "tos"):
            buckets.append(bucket_of(uri))
    return SourcePolicy(schemes=tuple(schemes) if schemes else ALL_SCHEMES, local_roots=tuple(roots),
                        buckets=tuple(dict.fromkeys(buckets)),
                        hosts=tuple(hosts) if hosts is not None else None,
                        allow_private_networks=allow_private_networks)
