"""Settings of the pipeline's steps: flat dataclasses made of the core's settings groups (:mod:`video_assets.fields`),
from which the Dagster Config and resource classes are generated.

Each settings object has a :meth:`fingerprint`: 12 hex digits over the settings, the model name and
:data:`PIPELINE_VERSION`. The Dagster assets use it (for the default settings) as their ``code_version``, so
changing a default setting, the default model or the scoring code marks every partition stale.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from video_assets.compute.settings import DecodeSettings
from video_assets.fields import composite, names, setting
from video_assets.keyframes.settings import SRC_TYPES, KeyframeExport, KeyframeSelection, check_src_type
from video_assets.models.defaults import (
    DEFAULT_KEYFRAMES_MODEL,
    DEFAULT_QUALITY_MODEL,
    MODEL_ENV,
    default_model_name,
    default_model_path,
)
from video_assets.models.settings import ClipSettings
from video_assets.scoring.prompts import parse_prompts
from video_assets.scoring.reduce import REDUCE_MODES, check_reduce_mode
from video_assets.video.plan import SamplePlan

if TYPE_CHECKING:
    from video_assets.storage.policy import SourcePolicy

# Bump when the code that produces a table changes what it writes (not for refactors).
PIPELINE_VERSION = {"video_manifest": "2", "video_quality_scores": "2", "video_keyframes": "2"}


def _fingerprint(kind: str, payload: dict) -> str:
    blob = json.dumps({"kind": kind, "version": PIPELINE_VERSION[kind], **payload}, sort_keys=True,
                      default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class _ModelMethods:
    quality_model_name: str | None
    keyframes_model_name: str | None
    model_path: str | None

    def check(self) -> None:
        _positive_int("quality_batch_size", self.quality_batch_size)
        _positive_int("keyframes_batch_size", self.keyframes_batch_size)

    @property
    def quality_model(self) -> str:
        return default_model_name(self.quality_model_name, DEFAULT_QUALITY_MODEL)

    @property
    def keyframes_model(self) -> str:
        return default_model_name(self.keyframes_model_name, DEFAULT_KEYFRAMES_MODEL)

    @property
    def resolved_model_path(self) -> str:
        return default_model_path(self.model_path)

    def operator_kwargs(self, which: str) -> dict[str, Any]:
        """The model keywords of the ``which`` ("quality" or "keyframes") operator (None: its defaults)."""
        name, batch = ((self.quality_model, self.quality_batch_size) if which == "quality"
                       else (self.keyframes_model, self.keyframes_batch_size))
        kwargs = dict(model_path=self.model_path, clip_model_name=name, device=self.device, batch_size=batch,
                      decode_workers=self.decode_workers, decode_processes=self.decode_processes)
        if self.dtype:  # else the operator's own default (the same rule: models.settings.effective_dtype)
            kwargs["dtype"] = self.dtype
        return kwargs


ModelSettings = composite("ModelSettings", [
    ClipSettings,
    ("quality_model_name", str | None, setting(None, (
        f"CLIP for quality scores; empty: env {MODEL_ENV}, else {DEFAULT_QUALITY_MODEL}."))),
    ("keyframes_model_name", str | None, setting(None, (
        f"CLIP for keyframes; empty: env {MODEL_ENV}, else {DEFAULT_KEYFRAMES_MODEL}."))),
    ("quality_batch_size", int, setting(32, "Frames per forward pass (quality).")),
    ("keyframes_batch_size", int, setting(16, "Frames per forward pass (keyframes).")),
    DecodeSettings,
], exclude=("clip_model_name", "batch_size"), bases=(_ModelMethods,), module=__name__, doc_text=(
    """Where and how models run (both operators' model settings, and their decode threads). ``None`` means the
    operators' defaults: the ``VIDEO_ASSETS_MODEL_PATH`` / ``VIDEO_ASSETS_CLIP_MODEL`` environment variables,
    then the LAS defaults; device ``cuda`` when a GPU exists, else ``cpu``; dtype float16 on GPU, float32 on
    CPU."""))


@dataclass(frozen=True)
class ManifestSettings:
    """How the manifest step reads and probes the videos."""

    probe: bool = setting(True, "Open every video and record duration, fps, size, codec (a packet scan, no "
                                "decoding).")
    probe_workers: int | None = setting(None, "Parallel probes; empty: min(4, CPUs).")

    def fingerprint(self) -> str:
        return _fingerprint("video_manifest", {"settings": asdict(self)})


class _QualityMethods:
    prompt: str
    reduce_mode: str

    def check(self) -> None:
        # the operator's own checks of these two fields, so a wrong value fails where the settings are built
        # (the Launchpad config, before a run writes anything), not when the operator is constructed
        parse_prompts(self.prompt)
        check_reduce_mode(self.reduce_mode)

    def sample_settings(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in names(SamplePlan)}

    def operator_kwargs(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self, model_name: str) -> str:
        return _fingerprint("video_quality_scores", {"settings": asdict(self), "model": model_name})


QualitySettings = composite("QualitySettings", [
    ("prompt", str, setting("quality", (
        "A named antonym pair (quality, sharpness, brightness, noisiness, contrast, colorfullness, ...) or "
        "'positive text|negative text'."))),
    SamplePlan,
    ("reduce_mode", str, setting("avg", "avg | max | min | median over frames.", choices=REDUCE_MODES)),
    ("default_video_format", str, setting("mp4", "Container hint.")),
], bases=(_QualityMethods,), module=__name__, doc_text=(
    """The VideoQualityScore parameters that change scores (see :class:`VideoQualityScore`): the prompt, the
    sampling plan (:class:`~video_assets.video.plan.SamplePlan`'s fields), the reduction, the container hint."""))


class _KeyframeMethods:
    video_src_type: str

    def check(self) -> None:
        check_src_type(self.video_src_type)  # the operator's check, where the settings are built

    def operator_kwargs(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self, model_name: str) -> str:
        return _fingerprint("video_keyframes", {"settings": asdict(self), "model": model_name})


KeyframeSettings = composite("KeyframeSettings", [
    ("text", str, setting("", "The query; empty: spread keyframes over the video.")),
    KeyframeSelection,
    KeyframeExport,
    ("video_src_type", str, setting("video_url", "video_url (manifests hold URIs).", choices=SRC_TYPES)),
    ("video_format", str, setting("mp4", "Container hint.")),
], exclude=("output_tos_dir", "return_keyframes"), bases=(_KeyframeMethods,), module=__name__, doc_text=(
    """The VideoAdaptiveKeyframesSampling parameters that change the selection or the images: the query, the
    selection (:class:`~video_assets.keyframes.settings.KeyframeSelection`) and the image format
    (:class:`~video_assets.keyframes.settings.KeyframeExport`; the pipeline decides where images go)."""))


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
    if schemes is not None and not schemes:
        # an empty list once meant every scheme; no scheme at all would read no video
        raise ValueError("allowed_schemes is empty: no manifest row could be read; list the schemes to allow "
                         f"(any of {', '.join(ALL_SCHEMES)})")
    return SourcePolicy(schemes=tuple(schemes) if schemes is not None else ALL_SCHEMES, local_roots=tuple(roots),
                        buckets=tuple(dict.fromkeys(buckets)),
                        hosts=tuple(hosts) if hosts is not None else None,
                        allow_private_networks=allow_private_networks)
