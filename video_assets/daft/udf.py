"""``las_udf`` / ``operator_udf``: an operator class and its constructor arguments as a Daft 0.7 class UDF.

Each call builds a fresh ``@daft.cls`` class with a fresh ``@daft.method.batch`` method (Daft stores its
settings on the function object, so one configuration must never reuse another's). The class only stores the
operator class and ``construct_args``; Daft runs its ``__init__`` lazily in each worker, which builds the
operator there and loads the model (once per worker process: the core's model cache is process-wide).

Rows are handled one by one by the operators' typed ``results`` (:mod:`video_assets.operators.results`),
which never raise for a bad video, so one bad video is one row with its reason, never a failed or nulled
batch. What does raise is a configuration fault: wrong ``construct_args`` (at ``las_udf`` time, in the
driver), a model that cannot load (in the worker's ``__init__``, which fails the query), a column of the
wrong type.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import daft
from daft import DataType, Expression, Series, col

from video_assets.models.settings import check_device
from video_assets.operators import VideoAdaptiveKeyframesSampling, VideoQualityScore
from video_assets.operators.results import KeyframesResult, QualityResult

log = logging.getLogger(__name__)

# Videos per UDF call when batch_size is not given. The operator overlaps decoding with the model and decodes
# several videos at once only within one call, so a call should hold a few videos; bigger calls only delay
# results and hold more keyframe images in memory.
DEFAULT_BATCH_SIZE = 16
# Workers (processes on the native runner, actors on Ray) when concurrency is not given: one worker, one
# model.
# Without max_concurrency Daft would run the UDF in its own threads with one instance per thread.
DEFAULT_CONCURRENCY = 1

_KEYFRAME_FIELDS = {"tos_paths": DataType.list(DataType.string()),
                    "frame_ids": DataType.list(DataType.int64()),
                    "scores": DataType.list(DataType.float32()),
                    "timestamps": DataType.list(DataType.float64()), "error": DataType.string()}
_IMAGES = DataType.list(DataType.image("RGB"))


def _quality_dtypes(multi_prompt: bool) -> tuple[DataType, DataType]:
    score = DataType.list(DataType.float64()) if multi_prompt else DataType.float64()
    frame_scores = DataType.list(score)  # per frame: one value, or one per prompt
    details = DataType.struct({"score": score, "frame_scores": frame_scores,
                               "frame_indices": DataType.list(DataType.int64()),
                               "timestamps": DataType.list(DataType.float64()), "truncated": DataType.bool(),
                               "warnings": DataType.list(DataType.string()), "error": DataType.string()})
    return score, details


def output_dtype(operator: VideoQualityScore | VideoAdaptiveKeyframesSampling,
                 details: bool = False) -> DataType:
    """The Daft type of the column the UDF makes for this (constructed) operator.

    - quality: Float64, List[Float64] for a prompt list; ``details=True``: a struct with ``score``,
      ``frame_scores``, ``frame_indices``, ``timestamps``, ``truncated``, ``warnings``, ``error``;
    - keyframes: ``Struct[tos_paths, frame_ids, scores: List[Float32], timestamps, error]``, plus
      ``keyframes: List[Image[RGB]]`` when ``return_keyframes`` is true.
    """
    if isinstance(operator, VideoQualityScore):
        score, struct = _quality_dtypes(operator.multi_prompt)
        return struct if details else score
    if isinstance(operator, VideoAdaptiveKeyframesSampling):
        fields = dict(_KEYFRAME_FIELDS)
        if operator.return_keyframes:
            fields["keyframes"] = _IMAGES
        return DataType.struct(fields)
    raise TypeError("expected VideoQualityScore or VideoAdaptiveKeyframesSampling, "
                    f"got {type(operator).__name__}")


def _positive_int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _build(operator_class: type, construct_args: Mapping[str, Any]):
    """The operator, with errors that name the operator and say what was wrong."""
    if not isinstance(operator_class, type) or not issubclass(
            operator_class, (VideoQualityScore, VideoAdaptiveKeyframesSampling)):
        raise TypeError("operator_class must be VideoQualityScore or VideoAdaptiveKeyframesSampling "
                        f"(from video_assets.operators), got {operator_class!r}")
    if not isinstance(construct_args, Mapping):
        raise TypeError(f"construct_args must be a dict, got {type(construct_args).__name__}")
    try:
        return operator_class(**construct_args)
    except TypeError as e:  # an unknown or missing argument name
        raise ValueError(f"construct_args for {operator_class.__name__}: {e}") from None
    except ValueError as e:
        raise ValueError(f"construct_args for {operator_class.__name__}: {e}") from e


def _worker_args(construct_args: Mapping[str, Any]) -> dict[str, Any]:
    """``construct_args`` as the worker builds the operator: in a Ray actor, ``device`` and ``rank`` give way
    to what Ray assigned (an actor with GPUs sees them as cuda:0.. through CUDA_VISIBLE_DEVICES; without, the
    CPU)."""
    import sys

    args = dict(construct_args)
    ray = sys.modules.get("ray")  # a Ray actor has imported Ray; elsewhere this never imports it
    if ray is None or not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:
        return args
    gpu_ids = ray.get_gpu_ids()
    ignored = {k: args.pop(k) for k in ("device", "rank") if k in args}
    args["device"] = "cuda" if gpu_ids else "cpu"
    if ignored:
        log.info("Ray actor with GPUs %s: ignoring %s, running on %s", gpu_ids, ignored, args["device"])
    return args


class OperatorUDF:
    """What :func:`operator_udf` returns: call it on columns to get a Daft expression.

    ``udf(col("video_path"))``; quality on bytes: ``udf(col("video_bytes"), col("video_format"))`` (the second
    column optional, null entries use ``default_video_format``); keyframes: one column as ``video_src_type``
    says (Utf8 for "video_url"/"video_base64", Binary for "video_binary"), optionally a Utf8 column of
    queries, one per row (``udf(col("video"), col("question"))``; null: the constructor's ``text``; the rows of
    one batch that name the same video are answered from one decode of it), and ``formats=`` a formats column.
    """

    def __init__(self, instance: Any, method_name: str, dtype: DataType, operator_name: str):
        self._instance, self._method_name = instance, method_name
        self.return_dtype = dtype
        self.operator_name = operator_name

    def __call__(self, videos: Expression | str, second: Expression | str | None = None, *,
                 formats: Expression | str | None = None, queries: Expression | str | None = None) -> Expression:
        """Quality: ``(videos, formats)``; keyframes: ``(videos, queries)`` and ``formats=``."""
        keyframes = self.operator_name == "VideoAdaptiveKeyframesSampling"
        if second is not None:
            if (queries if keyframes else formats) is not None:
                raise TypeError(f"{self.operator_name} UDF: the second column was given twice")
            queries, formats = (second, formats) if keyframes else (queries, second)
        if queries is not None and not keyframes:
            raise TypeError("queries are for the VideoAdaptiveKeyframesSampling UDF")
        videos, formats, queries = (col(c) if isinstance(c, str) else c for c in (videos, formats, queries))
        if not all(c is None or isinstance(c, Expression) for c in (videos, formats, queries)) or videos is None:
            raise TypeError(f"{self.operator_name} UDF: call it on columns, e.g. udf(col('video_path')); "
                            f"got {type(videos).__name__}")
        method = getattr(self._instance, self._method_name)
        args = [videos, formats if formats is not None else daft.lit(None).cast(DataType.string())]
        if queries is not None:
            args.append(queries)
        elif formats is None:
            args = args[:1]
        return method(*args)

    def __repr__(self) -> str:
        return f"<{self.operator_name} Daft UDF -> {self.return_dtype}>"


def operator_udf(operator_class: type, construct_args: Mapping[str, Any] | None = None, *,
                 num_gpus: float | None = None, batch_size: int | None = None, concurrency: int | None = None,
                 details: bool = False) -> OperatorUDF:
    """``operator_class(**construct_args)`` as a Daft class UDF; call the result on columns.

    - ``num_gpus`` → ``@daft.cls(gpus=...)`` (fractions up to 1; default 0). On Ray each actor gets its GPUs
      from Ray and ``device``/``rank`` in ``construct_args`` are ignored there; the native runner does not
      enforce it and every worker sees every GPU (``device``/``rank`` choose).
    - ``concurrency`` → ``max_concurrency``: the number of workers (processes on the native runner, Ray actors
      on Ray), each with one operator and one model. Default 1.
    - ``batch_size`` → ``@daft.method.batch(batch_size=...)``: videos per call (default
      :data:`DEFAULT_BATCH_SIZE`); the operator's own ``batch_size`` in ``construct_args`` is frames per
      forward pass.
    - ``details`` (quality only): the column is a struct with the score and its reason (``error``).

    ``construct_args`` are checked now, by constructing the operator here (which loads no model); the model
    loads in each worker's start, and a model that cannot load fails the query with the loader's message.
    """
    construct_args = dict(construct_args or {})
    # Checked here, on the CPU: the driver need not have the workers' GPUs (and says nothing about them). The
    # device is checked as written (its syntax: the operators' own check), then replaced by the CPU.
    probe = _build(operator_class, {**construct_args, "device": "cpu"} if "device" in construct_args
                   else construct_args)
    try:
        check_device(construct_args.get("device"))
    except ValueError as e:
        raise ValueError(f"construct_args for {operator_class.__name__}: {e}") from None
    if details and not isinstance(probe, VideoQualityScore):
        raise ValueError("details=True is for VideoQualityScore; the keyframes struct already has `error`")
    from video_assets.models.names import resolve_clip_model_name

    resolve_clip_model_name(probe.clip_model_name)  # a name that cannot mean anything fails now, not later
    batch_size = _positive_int("batch_size", batch_size) or DEFAULT_BATCH_SIZE
    concurrency = _positive_int("concurrency", concurrency) or DEFAULT_CONCURRENCY
    gpus = 0 if num_gpus is None else num_gpus
    if isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or gpus < 0 or (
            gpus > 1 and not float(gpus).is_integer()):
        raise ValueError(f"num_gpus must be a number >= 0 (fractions only up to 1), got {num_gpus!r}")
    dtype = output_dtype(probe, details)
    is_quality = isinstance(probe, VideoQualityScore)
    kind = "quality" if is_quality else "keyframes"
    src_type = None if is_quality else probe.video_src_type
    return_keyframes = False if is_quality else probe.return_keyframes

    class _OperatorWorker:
        # Daft builds this lazily, once per worker; the model loads here so that a model that cannot load
        # fails the query at its first batch instead of turning every row null.
        def __init__(self, op_class: type, args: dict):
            self.op = _build(op_class, _worker_args(args))
            self.model = self.op.model

        def run(self, videos: Series, formats: Series | None = None, queries: Series | None = None) -> Series:
            rows = _run_rows(self.op, kind, src_type, details, return_keyframes, videos, formats, queries)
            return Series.from_pylist(rows, name=videos.name(), dtype=dtype)

    # A fresh function object per configuration (daft.method.batch sets attributes on it).
    _OperatorWorker.run = daft.method.batch(return_dtype=dtype, batch_size=batch_size)(_OperatorWorker.run)
    cls = daft.cls(gpus=gpus, max_concurrency=concurrency,
                   name_override=operator_class.__name__)(_OperatorWorker)
    return OperatorUDF(cls(operator_class, construct_args), "run", dtype, operator_class.__name__)


def las_udf(operator_class: type, construct_args: Mapping[str, Any] | None = None,
            num_gpus: float | None = None, batch_size: int | None = None,
            concurrency: int | None = None) -> OperatorUDF:
    """The LAS SDK's ``las_udf`` signature over :func:`operator_udf`: the same mapping and defaults."""
    return operator_udf(operator_class, construct_args, num_gpus=num_gpus, batch_size=batch_size,
                        concurrency=concurrency)


# -- rows -----------------------------------------------------------------------------------------------
def _check_column(kind: str, src_type: str | None, videos: Series, formats: Series | None) -> bool:
    """Whether the videos column holds bytes; a column of the wrong type fails the query, naming both."""
    dt = videos.datatype()
    is_str, is_bin = dt == DataType.string(), dt == DataType.binary()
    if kind == "quality":
        if not (is_str or is_bin):
            raise TypeError(f"VideoQualityScore UDF: the videos column {videos.name()!r} is {dt}; expected "
                            "Utf8 (paths/URIs) or Binary (video bytes)")
    else:
        want_bin = src_type == "video_binary"
        if (want_bin and not is_bin) or (not want_bin and not is_str):
            want = "Binary" if want_bin else "Utf8"
            raise TypeError(f"VideoAdaptiveKeyframesSampling UDF with video_src_type={src_type!r}: the videos "
                            f"column {videos.name()!r} is {dt}; expected {want}")
    if formats is not None and formats.datatype() not in (DataType.string(), DataType.null()):
        raise TypeError(f"the formats column {formats.name()!r} is {formats.datatype()}; expected Utf8")
    return is_bin


def _check_queries(queries: Series | None) -> list | None:
    if queries is None:
        return None
    if queries.datatype() not in (DataType.string(), DataType.null()):
        raise TypeError(f"VideoAdaptiveKeyframesSampling UDF: the queries column {queries.name()!r} is "
                        f"{queries.datatype()}; expected Utf8 (one query per row)")
    return queries.to_pylist()


def _run_rows(op, kind: str, src_type: str | None, details: bool, return_keyframes: bool, videos: Series,
              formats: Series | None, queries: Series | None = None) -> list:
    is_bin = _check_column(kind, src_type, videos, formats)
    asked = _check_queries(queries)
    values = videos.to_pylist()
    fmts = formats.to_pylist() if formats is not None else None
    # Null inputs are null outputs: they never reach the operator (which would call them bad videos).
    keep = [i for i, v in enumerate(values) if v is not None]
    out: list = [None] * len(values)
    if not keep:
        return out
    srcs = [values[i] for i in keep]
    kept_fmts = [fmts[i] for i in keep] if fmts is not None else None
    if kind == "quality":
        found = (op.results(video_binaries=srcs, video_formats=kept_fmts) if is_bin
                 else op.results(video_paths=srcs, video_formats=kept_fmts))
        for i, r in zip(keep, found):
            out[i] = _quality_struct(r) if details else r.score
        return out
    found = (_per_row_queries(op, srcs, kept_fmts, [asked[i] for i in keep]) if asked is not None
             else op.results(srcs, video_formats=kept_fmts))
    for i, r in zip(keep, found):
        out[i] = _keyframes_struct(r, return_keyframes)
    return out


def _per_row_queries(op, srcs: list, fmts: list | None, asked: list) -> list[KeyframesResult]:
    """One keyframes result per row: rows naming the same video (and format) are one video with a list of
    queries, so it is decoded and embedded once for all of them."""
    videos: dict[tuple, int] = {}
    order: list[tuple[int, int]] = []  # row -> (video, position in that video's queries)
    texts: list[list] = []
    for i, src in enumerate(srcs):
        key = (src, fmts[i] if fmts is not None else None)
        v = videos.setdefault(key, len(videos))
        if v == len(texts):
            texts.append([])
        order.append((v, len(texts[v])))
        texts[v].append(asked[i])
    keys = list(videos)
    found = op.results([k[0] for k in keys], video_formats=[k[1] for k in keys] if fmts is not None else None,
                       texts=texts)
    return [found[v][j] for v, j in order]


def _quality_struct(r: QualityResult) -> dict:
    """The ``details=True`` struct of a quality result; a failed one has every field null but the reason."""
    if r.error:
        return {"score": None, "frame_scores": None, "frame_indices": None, "timestamps": None,
                "truncated": None, "warnings": None, "error": r.error}
    return {"score": r.score, "frame_scores": r.per_frame, "frame_indices": list(r.frame_indices),
            "timestamps": list(r.timestamps), "truncated": r.truncated, "warnings": list(r.warnings), "error": None}


def _keyframes_struct(r: KeyframesResult, return_keyframes: bool) -> dict:
    """The keyframes struct of a result; a failed one has every field null but the reason."""
    keys = list(_KEYFRAME_FIELDS) + (["keyframes"] if return_keyframes else [])
    if r.error:
        return {k: r.error if k == "error" else None for k in keys}
    d = r.as_dict()
    return {k: d.get(k) for k in keys}
