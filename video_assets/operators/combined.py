"""QualityAndKeyframes: quality scores and keyframes from one decode of each video.

Run separately, VideoQualityScore and VideoAdaptiveKeyframesSampling each open and decode every video. Here
each video is opened once, the union of both operators' frame positions (the quality plan's frames and the
keyframe candidates) is decoded in one ascending pass, and every frame goes to the model(s) that need it: the
two models run on their own cross-video batches (they usually differ: ViT-L/14 and ViT-B/32). It is the two
operators' stages (:meth:`VideoQualityScore.stage`, :meth:`VideoAdaptiveKeyframesSampling.stage`) composed
by :class:`~video_assets.operators.stage.SharedDecode`, so the results are those of two separate passes. Both
sides stream: each gets its frames in chunks as the pass decodes them, so memory does not grow with the
frames either plan chooses. A third model on the same decode is one more stage in the list.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from video_assets.compute.settings import DecodeSettings
from video_assets.operators.batching import RunStats
from video_assets.operators.common import VideoInput, make_inputs
from video_assets.operators.decode_processes import DecodeProcessOwner
from video_assets.operators.keyframes import VideoAdaptiveKeyframesSampling
from video_assets.operators.keyframes_stage import check_texts
from video_assets.operators.quality import VideoQualityScore
from video_assets.operators.results import KeyframesResult, QualityResult, as_dicts
from video_assets.operators.stage import SharedDecode
from video_assets.progress import ProgressArg, resolve_progress

# Settings that decide how a video is opened: both operators must agree on them to share one decode.
_READ_SETTINGS = ("storage_options", "source_policy", "limits", "stream_index", "apply_rotation")


def shared_decode_mismatch(quality: VideoQualityScore, keyframes: VideoAdaptiveKeyframesSampling) -> str | None:
    """Why the two operators cannot share a decode (they would read the videos differently), or None."""
    if keyframes.video_src_type != "video_url":
        return f"keyframes video_src_type is {keyframes.video_src_type!r}; a shared decode takes paths/URIs"
    if quality.default_video_format != keyframes.video_format:
        return (f"container hints differ (quality default_video_format={quality.default_video_format!r}, "
                f"keyframes video_format={keyframes.video_format!r})")
    for name in _READ_SETTINGS:
        if getattr(quality, name, None) != getattr(keyframes, name, None):
            return f"{name} differs between the two operators"
    return None


class QualityAndKeyframes(DecodeProcessOwner):
    """Both operators over the same videos, each video decoded once.

    ``quality`` / ``keyframes``: a :class:`VideoQualityScore` / :class:`VideoAdaptiveKeyframesSampling`, or a
    dict of its constructor arguments (so ``functools.partial(QualityAndKeyframes, quality={...},
    keyframes={...})`` is a picklable factory for compute backends). Both must read videos the same way (same
    container hint, storage options; keyframes ``video_src_type="video_url"``), else ValueError.

    :meth:`details` returns per input, in order, the pair (quality detail dict, keyframes detail dict): what
    ``quality.details`` and ``keyframes.details`` return for that video; :meth:`iter_details` yields the pairs
    one by one as videos finish. ``progress``: the default for every call (see :mod:`video_assets.progress`;
    the two operators' own ``progress`` settings are not used here). ``decode_processes``: as in the operators
    (None: the operators' settings, the larger if both are set; both None: auto); :meth:`close` stops them.
    """

    def __init__(self, quality: VideoQualityScore | dict, keyframes: VideoAdaptiveKeyframesSampling | dict,
                 progress: ProgressArg = None, decode_processes: int | None = None):
        self.quality = quality if isinstance(quality, VideoQualityScore) else VideoQualityScore(**quality)
        self.keyframes = (keyframes if isinstance(keyframes, VideoAdaptiveKeyframesSampling)
                          else VideoAdaptiveKeyframesSampling(**keyframes))
        why = shared_decode_mismatch(self.quality, self.keyframes)
        if why:
            raise ValueError(f"quality and keyframes cannot share one decode: {why}")
        self.decode_workers = max(self.quality.decode_workers, self.keyframes.decode_workers)
        given = [n for n in (self.quality.decode_processes, self.keyframes.decode_processes) if n is not None]
        self.decode_processes = (DecodeSettings(decode_processes=decode_processes).decode_processes
                                 if decode_processes is not None else max(given) if given else None)
        resolve_progress(progress, 0, "quality+keyframes")  # validates it
        self.progress = progress
        self.last_run_stats = RunStats()

    def details(self, videos: Sequence[Any], video_formats: Sequence[str | None] | None = None,
                progress: ProgressArg = None, texts=None) -> list[tuple[dict, dict | list[dict]]]:
        """``texts``: the keyframes side's queries per video, as in
        :meth:`VideoAdaptiveKeyframesSampling.details` (a list of queries gives a list of keyframe rows)."""
        return as_dicts(self.results(videos, video_formats, progress, texts))

    def results(self, videos: Sequence[Any], video_formats: Sequence[str | None] | None = None,
                progress: ProgressArg = None, texts=None) -> list[tuple[QualityResult, Any]]:
        """:meth:`details` as typed results: per input, (QualityResult, KeyframesResult or a list of them)."""
        inputs = make_inputs(videos, video_formats, self.quality.default_video_format, "video_url",
                             bytes_go="to each operator on its own: this one takes paths and URIs")
        with ThreadPoolExecutor(max_workers=self.keyframes.decode_workers, thread_name_prefix="export") as pool:
            decode, loop = self._decode(inputs, progress, pool, texts, listing=True)
            return decode.run(inputs, **loop)

    def iter_details(self, videos: Sequence[Any], video_formats: Sequence[str | None] | None = None,
                     progress: ProgressArg = None, *, ordered: bool = True, window: int | None = None,
                     texts=None) -> Iterator[tuple[dict, dict]] | Iterator[tuple[int, tuple]]:
        """The pairs of :meth:`details`, yielded one by one as videos finish; ``ordered`` and ``window`` as in
        :meth:`VideoQualityScore.iter_details`, ``texts`` as in :meth:`details`."""
        pairs = self.iter_results(videos, video_formats, progress, ordered=ordered, window=window, texts=texts)
        return (as_dicts(p) for p in pairs) if ordered else ((pos, as_dicts(p)) for pos, p in pairs)

    def iter_results(self, videos: Sequence[Any], video_formats: Sequence[str | None] | None = None,
                     progress: ProgressArg = None, *, ordered: bool = True, window: int | None = None,
                     texts=None) -> Iterator:
        """:meth:`iter_details` as typed results."""
        inputs = make_inputs(videos, video_formats, self.quality.default_video_format, "video_url",
                             bytes_go="to each operator on its own: this one takes paths and URIs")
        check_texts(texts, len(inputs))
        return self._iter_results(inputs, progress, ordered, window, texts)

    def close(self) -> None:
        """Stop the decode processes of this operator and of the two it composes."""
        super().close()
        self.quality.close()
        self.keyframes.close()

    def failed_result(self, video: Any, error: str) -> tuple[QualityResult, KeyframesResult]:
        """Both sides' results of ``video`` when it could not be run at all."""
        return self.quality.failed_result(video, error), self.keyframes.failed_result(video, error)

    def _iter_results(self, inputs: list[VideoInput], progress: ProgressArg, ordered: bool, window: int | None,
                      texts=None):
        with ThreadPoolExecutor(max_workers=self.keyframes.decode_workers, thread_name_prefix="export") as pool:
            decode, loop = self._decode(inputs, progress, pool, texts)
            for pos, pair in decode.iter(inputs, **loop, ordered=ordered, window=window):
                yield pair if ordered else (pos, pair)

    def _decode(self, inputs: list[VideoInput], progress: ProgressArg, export_pool: ThreadPoolExecutor, texts,
                listing: bool = False) -> tuple[SharedDecode, dict]:
        """The two operators' stages over one decode, and the loop's arguments."""
        q, k = self.quality, self.keyframes
        q_model, k_model = q.model, k.model
        stages = [q.stage(q_model), k.stage(k_model, inputs, texts, export_pool, listing=listing)]
        self.last_run_stats = RunStats()
        # the same opener and limits on both sides (shared_decode_mismatch)
        decode = SharedDecode(k.opener, stages)
        return decode, self.in_processes(decode, [q_model, k_model], dict(
            embeds=[q_model.encode_pixels, k_model.encode_pixels], batch_sizes=[q.batch_size, k.batch_size],
            decode_workers=self.decode_workers, item_timeout_sec=k.limits.timeout_sec, stats=self.last_run_stats,
            progress=resolve_progress(self.progress if progress is None else progress, len(inputs),
                                      "quality+keyframes")))
