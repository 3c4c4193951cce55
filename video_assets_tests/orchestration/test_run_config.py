"""A run config with the right types but a wrong value never writes anything: a value outside a setting's
choices (sample_mode, reduce_mode, budget, video_src_type) is refused by Dagster's config validation before the
run starts (what the Launchpad does), and any other wrong value (fps 0, img_type .gif, clip device tpu, an
unknown prompt) by the run's first step before it writes. Either way video_manifest's earlier materialisation
stays the latest one (and its table the same file)."""

import dagster as dg
import pytest
from pydantic import ValidationError

from video_assets import fields
from video_assets.orchestration.assets import ASSETS, MODEL_STEP
from video_assets.orchestration.config import KeyframesConfig, QualityKeyframesConfig
from video_assets.orchestration.resources import ClipModelResource, WarehouseResource, default_resources
from video_assets.pipeline.settings import KeyframeSettings, QualitySettings
from video_assets.pipeline.tables import MANIFEST_ASSET
from video_assets_tests.pipeline_helpers import make_videos, materialize_partition

M = dg.AssetKey(MANIFEST_ASSET)


def _step(**config) -> dict:
    return {"ops": {MODEL_STEP: {"config": config}}}


# (run config, clip resource overrides, what the refusal must name)
LAUNCH_REFUSED = {
    "sample_mode": (_step(quality={"sample_mode": "by_magic"}), ("quality:sample_mode", "got by_magic")),
    "reduce_mode": (_step(quality={"reduce_mode": "mean"}), ("quality:reduce_mode", "got mean")),
    "video_src_type": (_step(keyframes={"video_src_type": "video_magic"}),
                       ("keyframes:video_src_type", "got video_magic")),
}
STEP_REFUSED = {
    "fps": (_step(keyframes={"fps": 0}), {}, ("keyframes: fps", "got 0")),
    # not an enum: the core takes it in any case (.JPG), so only the core can refuse it
    "img_type": (_step(keyframes={"img_type": ".gif"}), {}, ("keyframes: img_type", "got '.gif'")),
    "prompt": (_step(quality={"prompt": "nope"}), {}, ("quality: prompt", "'nope'")),
    "device": (None, {"device": "tpu"}, ("device", "'tpu'")),
    # the compute resource set in the Launchpad: the model step's too
    "compute": ({"resources": {"compute": {"config": {"num_workers": 0}}}}, {}, ("num_workers", "got 0")),
}


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    """A partition whose video_manifest is materialised (the healthy state the bad runs must not touch)."""
    root = tmp_path_factory.mktemp("runconfig")
    make_videos(root / "videos", names=("a.mp4",))
    (root / "one.csv").write_text("uri\nvideos/a.mp4\n")
    warehouse = WarehouseResource(warehouse=str(root / "wh"), inbox=str(root / "inbox"))
    with dg.instance_for_test() as instance:
        key, result = materialize_partition(warehouse, str(root / "one.csv"), instance, selection=[M])
        assert result.success
        yield instance, warehouse, key, result.run_id


def _latest_manifest_run(instance, key) -> str:
    rec = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=M, asset_partitions=[key]), limit=1,
                                          ascending=False).records[0]
    return rec.run_id


def _materialize(instance, warehouse, key, run_config, **clip):
    return dg.materialize(ASSETS, partition_key=key, instance=instance, raise_on_error=False, run_config=run_config,
                          resources=default_resources(warehouse=warehouse,
                                                      clip=ClipModelResource(decode_workers=2, **clip)))


@pytest.mark.parametrize("case", sorted(LAUNCH_REFUSED))
def test_a_value_outside_the_choices_is_refused_before_the_run_starts(healthy, case):
    instance, warehouse, key, first_run = healthy
    run_config, named = LAUNCH_REFUSED[case]
    table = warehouse.table_uri(MANIFEST_ASSET, key)
    before, runs = open(table, "rb").read(), instance.get_runs_count()
    with pytest.raises(dg.DagsterInvalidConfigError) as refused:
        _materialize(instance, warehouse, key, run_config)
    assert all(n in str(refused.value) for n in named), str(refused.value)
    assert instance.get_runs_count() == runs  # no run at all
    assert _latest_manifest_run(instance, key) == first_run
    assert open(table, "rb").read() == before


@pytest.mark.parametrize("case", sorted(STEP_REFUSED))
def test_a_wrong_value_fails_the_run_before_anything_is_written(healthy, case):
    instance, warehouse, key, first_run = healthy
    run_config, clip, named = STEP_REFUSED[case]
    table = warehouse.table_uri(MANIFEST_ASSET, key)
    before = open(table, "rb").read()
    result = _materialize(instance, warehouse, key, run_config, **clip)
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert [e.step_key for e in failures] == [MANIFEST_ASSET]  # the first step, not the model step
    message = failures[0].event_specific_data.error.message
    assert "run config refused, nothing written" in message and all(n in message for n in named), message
    assert not result.get_asset_materialization_events()
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert _latest_manifest_run(instance, key) == first_run
    assert open(table, "rb").read() == before


def test_the_generated_config_rejects_a_wrong_value_itself():
    with pytest.raises(ValidationError, match="fps must be a finite number > 0, got 0"):
        QualityKeyframesConfig(keyframes={"fps": 0})
    with pytest.raises(ValidationError, match="reduce_mode"):
        QualityKeyframesConfig(quality={"reduce_mode": "mean"})
    assert QualityKeyframesConfig().quality.to_settings().reduce_mode == "avg"


def test_the_launchpad_accepts_what_the_operators_accept():
    """The operators take img_type in any case (".JPG", as cameras name files; LAS did too): the Launchpad takes
    it as well and it becomes the same settings as ".jpg" (normalised once, by the core), and the same for
    every setting the core normalises. An enum (a setting with choices) is only for exact values: the core
    refuses another spelling of each of them, so the Launchpad refuses nothing the operators accept."""
    from dagster._config import process_config

    from video_assets.definitions import defs

    schema = defs.resolve_job_def("video_assets_job").run_config_schema.config_type
    for value in (".JPG", ".Png", ".jpeg"):
        launched = process_config(schema, _step(keyframes={"img_type": value}))
        assert launched.success, launched.errors
        assert KeyframesConfig(img_type=value).to_settings() == KeyframeSettings(img_type=value.lower())
    assert KeyframesConfig(img_type=".JPG").to_settings() == KeyframeSettings()
    for cls in (QualitySettings, KeyframeSettings):
        for name in fields.names(cls):
            for choice in fields.choices(cls, name) or ():
                for other in {choice.upper(), choice.capitalize()} - {choice}:
                    with pytest.raises(ValueError):  # the core refuses it too: the enum is exact
                        cls(**{name: other})
