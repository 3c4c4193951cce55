"""What the operators return, typed: :class:`QualityResult` and :class:`KeyframesResult` (no torch).

These are what operators, compute backends, the Daft UDFs and the pipeline's tables exchange. Each has a
failure constructor (``QualityResult.failed(video_id, source, error, prompts=...)``) that gives a row with
every field a reader expects, and ``as_dict()``, the operators' public detail dict (``score_details`` /
``details``), built here and only here. The table columns (``quality_score``, ``keyframe_paths``, ...) are
mapped from these in :mod:`video_assets.pipeline.tables`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class QualityResult:
    """One video's CLIP-IQA scores.

    ``scores``: one per prompt (empty when failed); ``frame_scores``: per frame, one value per prompt;
    ``multi_prompt``: the operator was given a list of prompts, so ``score`` is a list.
    """

    video_id: str
    source: str  # a log-safe name of the input
    prompts: tuple[str, ...]
    multi_prompt: bool = False
    scores: tuple[float, ...] = ()
    frame_scores: tuple[tuple[float, ...], ...] = ()
    frame_indices: tuple[int, ...] = ()
    timestamps: tuple[float, ...] = ()
    truncated: bool = False
    warnings: tuple[str, ...] = ()
    error: str | None = None
    scored_at: datetime = field(default_factory=_now)
    device: str | None = None  # where the model ran, when a backend records it (a Ray worker's GPU)

    @classmethod
    def failed(cls, video_id: str, source: str, error: str, *, prompts: tuple[str, ...] | list[str] = (),
               multi_prompt: bool = False, device: str | None = None) -> QualityResult:
        """The row of a video that could not be scored: no score, empty lists, ``error``."""
        return cls(video_id, source, tuple(prompts), multi_prompt, error=error, device=device)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def score(self) -> float | list[float] | None:
        """The reduced score: a float, a list (one per prompt) for a prompt list, None when failed."""
        if not self.scores:
            return None
        return list(self.scores) if self.multi_prompt else self.scores[0]

    @property
    def per_frame(self) -> list:
        """The frame scores as the detail dict and the table hold them: one float per frame, or one list per
        frame for a prompt list."""
        return [list(f) for f in self.frame_scores] if self.multi_prompt else [f[0] for f in self.frame_scores]

    def as_dict(self) -> dict:
        """The operator's detail dict (``score_details``): ``scored_at`` as ISO text."""
        d = {"video_id": self.video_id, "source": self.source, "prompts": list(self.prompts),
             "score": self.score, "frame_scores": self.per_frame, "frame_indices": list(self.frame_indices),
             "timestamps": list(self.timestamps), "error": self.error, "truncated": self.truncated,
             "warnings": list(self.warnings), "scored_at": self.scored_at.isoformat()}
        if self.device is not None:
            d["device"] = self.device
        return d


@dataclass(frozen=True)
class KeyframesResult:
    """One video's keyframes for one query.

    ``keyframes``: the selected frames as HxWx3 uint8 arrays (None unless ``return_keyframes``);
    ``embeddings``: float16, one unit-norm vector per candidate (None unless ``return_embeddings``), with
    ``candidate_frame_ids`` / ``candidate_timestamps``. A failed export keeps the selection and sets ``error``.
    """

    video_id: str
    source: str
    query: str
    error: str | None = None
    tos_paths: tuple[str, ...] = ()
    frame_ids: tuple[int, ...] = ()
    timestamps: tuple[float, ...] = ()
    scores: tuple[float, ...] = ()
    num_candidates: int = 0
    effective_fps: float | None = None
    truncated: bool = False
    warnings: tuple[str, ...] = ()
    keyframes: tuple[np.ndarray, ...] | None = field(default=None, compare=False, repr=False)
    candidate_frame_ids: tuple[int, ...] | None = None
    candidate_timestamps: tuple[float, ...] | None = None
    embeddings: np.ndarray | None = field(default=None, compare=False, repr=False)
    device: str | None = None

    @classmethod
    def failed(cls, video_id: str, source: str, error: str, *, query: str = "",
               device: str | None = None) -> KeyframesResult:
        """The row of a video that could not be read: no keyframes, ``error``."""
        return cls(video_id, source, query, error=error, device=device)

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict:
        """The operator's detail dict (``details``): ``keyframes`` only when the arrays were asked for (and
        exported), the candidates and ``embeddings`` only with ``return_embeddings``."""
        d: dict[str, Any] = {
            "video_id": self.video_id, "source": self.source, "error": self.error,
            "tos_paths": list(self.tos_paths), "frame_ids": list(self.frame_ids),
            "timestamps": list(self.timestamps), "scores": list(self.scores),
            "num_candidates": self.num_candidates, "effective_fps": self.effective_fps,
            "truncated": self.truncated, "warnings": list(self.warnings), "query": self.query}
        if self.keyframes is not None:
            d["keyframes"] = list(self.keyframes)
        if self.embeddings is not None:
            d.update(candidate_frame_ids=list(self.candidate_frame_ids or ()),
                     candidate_timestamps=list(self.candidate_timestamps or ()), embeddings=self.embeddings)
        if self.device is not None:
            d["device"] = self.device
        return d


Result = QualityResult | KeyframesResult


def as_dicts(value: Any) -> Any:
    """A result, or a tuple/list of them (a shared decode's pair, a video's rows for a list of queries), as
    the operators' detail dicts, nested the same way."""
    if isinstance(value, (QualityResult, KeyframesResult)):
        return value.as_dict()
    if isinstance(value, (tuple, list)):
        return type(value)(as_dicts(v) for v in value)
    return value


def with_device(value: Any, device: str | None) -> Any:
    """``value`` (nested as in :func:`as_dicts`) with ``device`` recorded where no device is yet."""
    if not device:
        return value
    if isinstance(value, (QualityResult, KeyframesResult)):
        return value if value.device else replace(value, device=device)
    if isinstance(value, (tuple, list)):
        return type(value)(with_device(v, device) for v in value)
    return value

