"""The keyframes operator's settings groups: :class:`KeyframeSelection` (candidates and the AKS rule) and
:class:`KeyframeExport` (the images written). The one definition of these parameters: the operator's LAS
keywords, the pipeline's ``KeyframeSettings`` and the Launchpad's keyframes config are derived from them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from video_assets.fields import setting
from video_assets.keyframes.aks import BUDGETS, aks_select

# image suffix -> PIL format
IMG_TYPES = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
# what the keyframes operator's inputs are (LAS's video_src_type)
SRC_TYPES = ("video_url", "video_base64", "video_binary")


def check_src_type(video_src_type: str) -> None:
    if video_src_type not in SRC_TYPES:
        raise ValueError(f"video_src_type must be one of {', '.join(SRC_TYPES)}; got {video_src_type!r}")


@dataclass(frozen=True)
class KeyframeSelection:
    """Which frames are candidates (``fps``, ``max_candidates``) and which of them AKS keeps (``max_num_frames``,
    ``t1``, ``t2``, ``all_depth``, ``budget``: see :func:`video_assets.keyframes.aks_select`)."""

    fps: float = setting(1.0, "Candidate sampling rate (frames per second).")
    max_num_frames: int = setting(32, "Keyframes per video (AKS budget M).")
    t1: float = setting(0.8, "AKS split threshold t1.")
    t2: float = setting(-100.0, "AKS split threshold t2.")
    all_depth: int = setting(5, "AKS recursion depth.")
    budget: str = setting("exact", "'exact': always min(max_num_frames, candidates).", choices=BUDGETS)
    max_candidates: int | None = setting(None, "Cap on candidates (long videos get a lower fps).")

    def __post_init__(self):
        fps = self.fps
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < math.inf:
            raise ValueError(f"fps must be a finite number > 0, got {fps!r}")
        object.__setattr__(self, "fps", float(fps))
        mc = self.max_candidates
        if mc is not None and (isinstance(mc, bool) or int(mc) < 1):
            raise ValueError(f"max_candidates must be >= 1, got {mc!r}")
        aks_select([0.0], **self.aks)  # validates the AKS parameters, with AKS's own messages

    @property
    def aks(self) -> dict:
        """The keyword arguments of :func:`~video_assets.keyframes.aks_select`."""
        return dict(max_num_frames=self.max_num_frames, t1=self.t1, t2=self.t2, all_depth=self.all_depth,
                    budget=self.budget)


@dataclass(frozen=True)
class KeyframeExport:
    """How the selected frames leave the operator: images under ``output_tos_dir``, arrays in the result."""

    # no choices (not an enum in the Launchpad): any case is taken (".JPG", as LAS did) and lower-cased here
    img_type: str = setting(".jpg", ".jpg, .jpeg or .png (any case).")
    jpeg_quality: int = setting(95, "JPEG quality of the exported keyframes.")
    output_tos_dir: str = setting("", (
        "Where images are written ({output_tos_dir}/{video_id}/{frame_id:06d}-{hash}{img_type}): a local folder, "
        "file://, s3:// or tos://; empty: no images."))
    return_keyframes: bool = setting(True, "Include the keyframes as HxWx3 uint8 arrays in each result.")

    def __post_init__(self):
        if not isinstance(self.img_type, str) or self.img_type.lower() not in IMG_TYPES:
            raise ValueError(f"img_type must be one of {', '.join(IMG_TYPES)}; got {self.img_type!r}")
        object.__setattr__(self, "img_type", self.img_type.lower())
        q = self.jpeg_quality
        if isinstance(q, bool) or not isinstance(q, int) or not 0 <= q <= 100:
            raise ValueError(f"jpeg_quality must be an int in 0..100, got {q!r}")
