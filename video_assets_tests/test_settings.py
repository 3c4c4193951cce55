"""Each group of settings is defined once, in the core, and everything else is derived from it: the operators'
keywords, the pipeline's flat settings, the Dagster Config/resource classes (fields, defaults, descriptions)."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from video_assets import fields
from video_assets.compute.settings import ComputeSettings, DecodeSettings
from video_assets.keyframes.settings import KeyframeExport, KeyframeSelection
from video_assets.models.settings import ClipSettings, effective_dtype
from video_assets.orchestration.config import KeyframesConfig, ManifestConfig, QualityConfig
from video_assets.orchestration.config_gen import config_class, config_fields
from video_assets.orchestration.resources import ClipModelResource, ComputeResource, WarehouseResource
from video_assets.pipeline.settings import KeyframeSettings, ManifestSettings, ModelSettings, QualitySettings
from video_assets.video import iter_frames, sample_frames
from video_assets.video.limits import GIB, ReadLimits
from video_assets.video.plan import SamplePlan

GROUPS = [SamplePlan, ReadLimits, ClipSettings, KeyframeSelection, KeyframeExport, DecodeSettings, ComputeSettings,
          ManifestSettings, QualitySettings, KeyframeSettings, ModelSettings]

# The Launchpad before the settings were generated (orchestration/assets.py and resources.py at 3890a4d):
# every config path with its default. The generated classes must keep them, in this order.
LAUNCHPAD = {
    ManifestConfig: {"probe": True, "probe_workers": None},
    QualityConfig: {"prompt": "quality", "sample_mode": "by_count_uniform", "start_time_sec": 0.0,
                    "end_time_sec": None, "count_k": 8, "interval_sec": None, "interval_frames": None,
                    "target_fps": None, "timestamps_sec": None, "max_frames": None, "reduce_mode": "avg",
                    "default_video_format": "mp4"},
    KeyframesConfig: {"text": "", "fps": 1.0, "max_num_frames": 32, "t1": 0.8, "t2": -100.0, "all_depth": 5,
                      "budget": "exact", "max_candidates": None, "img_type": ".jpg", "jpeg_quality": 95,
                      "video_src_type": "video_url", "video_format": "mp4"},
    WarehouseResource: {"warehouse": "data/warehouse", "inbox": "data/inbox", "upload_batch_size": 100,
                        "max_manifests_per_tick": 10, "max_runs_per_tick": 50, "lookback_seconds": 600.0,
                        "settle_seconds": 5.0, "allowed_schemes": ["file", "http", "https", "s3", "tos"],
                        "allowed_local_roots": [], "allowed_buckets": [], "allowed_hosts": None,
                        "allow_private_networks": False, "max_video_bytes": 20 * GIB,
                        "max_duration_sec": 21600.0, "max_pixels": 8192 * 8192, "max_decoded_frames": 2_000_000,
                        "video_timeout_sec": 3600.0, "http_connect_timeout_sec": 10.0,
                        "http_read_timeout_sec": 60.0, "max_retries": 3},
    ClipModelResource: {"device": None, "dtype": None, "model_path": None, "quality_model_name": None,
                        "keyframes_model_name": None, "quality_batch_size": 32, "keyframes_batch_size": 16,
                        "decode_workers": None, "decode_processes": None},  # decode_processes: new (issue 18)
    ComputeResource: {"backend": "local", "address": "", "num_workers": 1, "num_gpus_per_worker": 0.0,
                      "batch_size": 8, "num_cpus_per_worker": None, "runtime_env": None},
}


@pytest.mark.parametrize("cls", list(LAUNCHPAD), ids=lambda c: c.__name__)
def test_generated_config_keeps_the_launchpad_paths_and_defaults(cls):
    got = {name: f.get_default(call_default_factory=True) for name, f in cls.model_fields.items()}
    assert list(got) == list(LAUNCHPAD[cls])
    assert got == LAUNCHPAD[cls]
    assert all(f.description for f in cls.model_fields.values())


def test_descriptions_come_from_the_core_docs():
    assert QualityConfig.model_fields["count_k"].description == fields.doc(SamplePlan, "count_k")
    assert KeyframesConfig.model_fields["t1"].description == fields.doc(KeyframeSelection, "t1")
    assert ComputeResource.model_fields["address"].description == fields.doc(ComputeSettings, "address")
    assert ClipModelResource.model_fields["dtype"].description == fields.doc(ClipSettings, "dtype")
    # renamed on the resource (its Launchpad path is older than the one definition), plus the env variable
    desc = WarehouseResource.model_fields["max_video_bytes"].description
    assert desc == f"{fields.doc(ReadLimits, 'max_bytes')} (env VIDEO_ASSETS_MAX_VIDEO_BYTES)"


@pytest.mark.parametrize("cls", GROUPS, ids=lambda c: c.__name__)
def test_every_setting_has_a_doc_and_a_default(cls):
    for f in dataclasses.fields(cls):
        assert f.metadata.get("doc"), f"{cls.__name__}.{f.name} has no doc"
        assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def test_a_new_setting_is_added_in_one_place():
    """A field added to a core group reaches a composite and a generated Config, with its default and doc."""

    @dataclasses.dataclass(frozen=True)
    class Plan(SamplePlan):
        min_gap_sec: float = fields.setting(0.25, "Smallest gap between two sampled frames (seconds).")

    flat = fields.composite("Flat", [Plan], module=__name__, doc_text="test")
    assert flat().min_gap_sec == 0.25 and flat(min_gap_sec=1.0).group(Plan).min_gap_sec == 1.0
    import dagster as dg

    cfg = config_class("PlanConfig", dg.Config, config_fields(flat), module=__name__, doc="test")
    f = cfg.model_fields["min_gap_sec"]
    assert (f.default, f.description) == (0.25, "Smallest gap between two sampled frames (seconds).")
    with pytest.raises(ValueError, match="count_k must be >= 1"):  # the group's own validation still runs
        flat(count_k=0)


def test_launchpad_values_become_validated_settings():
    s = QualityConfig(sample_mode="by_timestamps", timestamps_sec=[2, 0.5]).to_settings()
    assert isinstance(s, QualitySettings) and s.timestamps_sec == (2.0, 0.5)  # a list in, one tuple kept
    assert s.group(SamplePlan) == SamplePlan(sample_mode="by_timestamps", timestamps_sec=(2.0, 0.5))
    with pytest.raises(ValueError, match="target_fps is required"):
        QualityConfig(sample_mode="by_fps").to_settings()
    with pytest.raises(ValueError, match="budget\n  Input should be 'exact' or 'reference'"):
        KeyframesConfig(budget="nope")  # a setting with choices is an enum in the Launchpad
    with pytest.raises(ValueError, match="img_type must be one of .jpg, .jpeg, .png; got '.gif'"):
        KeyframesConfig(img_type=".gif")  # any case is taken (.JPG): the core's check, not an enum
    with pytest.raises(ValueError, match="fps must be a finite number > 0"):  # the others: the core's checks
        KeyframesConfig(fps=0)
    with pytest.raises(ValueError, match="quality_batch_size must be a positive int"):
        ClipModelResource(quality_batch_size=0).settings()
    limits = WarehouseResource(max_video_bytes=10, video_timeout_sec=None).read_limits()
    assert (limits.max_bytes, limits.timeout_sec, limits.max_retries) == (10, None, 3)
    assert ComputeResource(backend="RAY", num_workers=2).settings() == ComputeSettings(backend="ray",
                                                                                       num_workers=2)


def test_fingerprints_did_not_change():
    # the values of the code before the settings were composed (3890a4d): partitions stay fresh
    assert QualitySettings().fingerprint("m") == "8892aa973ffa"
    assert KeyframeSettings().fingerprint("m") == "5d45846f126d"
    assert ManifestSettings().fingerprint() == "470a8b5ba6f7"
    assert QualitySettings(sample_mode="by_timestamps", timestamps_sec=[0.5, 2.0]).fingerprint("m") == "2617bc2a5625"


@pytest.mark.parametrize("kwargs, message", [
    (dict(sample_mode="by_fps"), "target_fps is required for sample_mode='by_fps'"),
    (dict(count_k=0), "count_k must be >= 1"),
    (dict(start_time_sec=5, end_time_sec=5), r"end_time_sec \(5.0\) must be greater than start_time_sec"),
    (dict(sample_mode="by_timestamps", timestamps_sec="1,2"), "timestamps_sec must be a list of numbers"),
])
def test_sample_plan_validates(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplePlan(**kwargs)


@pytest.mark.parametrize("cls, kwargs, message", [
    (KeyframeSelection, dict(fps=0), "fps must be a finite number > 0"),
    (KeyframeSelection, dict(max_candidates=0), "max_candidates must be >= 1"),
    (KeyframeSelection, dict(all_depth=-1), "all_depth"),
    (KeyframeExport, dict(jpeg_quality=101), "jpeg_quality must be an int in 0..100"),
    (ClipSettings, dict(batch_size=0), "batch_size must be a positive int"),
    (DecodeSettings, dict(decode_workers=-1), "decode_workers must be a positive int or None"),
    (ComputeSettings, dict(backend="spark"), "compute backend must be one of local, ray; got 'spark'"),
    (ComputeSettings, dict(num_workers=0), "ray backend: num_workers must be an int >= 1"),
    (ReadLimits, dict(max_pixels=0), "max_pixels must be a positive number or None"),
])
def test_groups_validate(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_the_dtype_default_is_one_rule():
    assert [effective_dtype(None, "cuda:0"), effective_dtype(None, "cpu")] == ["float16", "float32"]
    assert effective_dtype("float16", "cpu") == "float32"  # the keyframes operator's LAS default, on a CPU
    assert effective_dtype("bfloat16", "cpu") == "bfloat16"  # the loader decides whether the CPU can
    assert effective_dtype("float32", "cuda") == "float32"
    c = ClipSettings(batch_size=4).resolved("some/model", "cpu")
    assert (c.dtype, c.device, c.batch_size) == ("float32", "cpu", 4)


def test_the_sampler_keywords_are_the_plan_fields():
    for func in (sample_frames, iter_frames):
        params = inspect.signature(func).parameters
        for f in dataclasses.fields(SamplePlan):
            assert f.name in params and params[f.name].default == f.default
        with pytest.raises(TypeError, match="unexpected keyword argument 'count'"):
            func(b"", count=3)
        with pytest.raises(ValueError, match="count_k must be >= 1"):  # before any I/O
            func("/nonexistent.mp4", count_k=0)


def test_operators_keep_their_las_keywords_and_defaults():
    from video_assets.operators import VideoAdaptiveKeyframesSampling, VideoQualityScore

    q = inspect.signature(VideoQualityScore).parameters
    assert {n: q[n].default for n in fields.names(SamplePlan)} == fields.defaults(SamplePlan)
    assert (q["batch_size"].default, q["dtype"].default, q["reduce_mode"].default) == (32, None, "avg")
    k = inspect.signature(VideoAdaptiveKeyframesSampling).parameters
    expected = {**fields.defaults(KeyframeSelection), **fields.defaults(KeyframeExport)}
    assert {n: k[n].default for n in expected} == expected
    assert (k["batch_size"].default, k["dtype"].default, k["fps"].default) == (16, "float16", 1.0)
    op = VideoQualityScore(device="cpu", sample_mode="by_fps", target_fps=2, batch_size=3)
    assert op.plan == SamplePlan(sample_mode="by_fps", target_fps=2.0)
    assert (op.dtype, op.batch_size, op.clip_settings.batch_size) == ("float32", 3, 3)


def test_decode_processes_resolve_and_describe_the_decoder():
    """The auto rule and the text a run's metadata shows (``decoder``), from the one DecodeSettings."""
    assert DecodeSettings(decode_processes=3).processes_for("cpu", cores=2) == 3  # the setting wins
    assert DecodeSettings().processes_for("cpu", cores=2) == 0  # auto on a small machine: threads
    assert DecodeSettings().processes_for("cuda:0", cores=16) == 15
    assert DecodeSettings().processes_for("cpu", cores=16) == 8
    assert DecodeSettings(decode_processes=3).describe("cpu") == "3 decode processes"
    assert DecodeSettings(decode_processes=1).describe("cpu") == "1 decode process"
    assert DecodeSettings(decode_workers=2, decode_processes=0).describe("cuda") == "2 decode threads"
    with pytest.raises(ValueError, match="decode_processes"):
        DecodeSettings(decode_processes=-1)

