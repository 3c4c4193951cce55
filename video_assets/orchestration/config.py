"""Run configuration of the assets (the Launchpad's ``ops`` section) and the assets' code versions.

The Config classes are generated from the pipeline's settings (:mod:`video_assets.pipeline.settings`, made of
the core's settings groups), so their fields, defaults and descriptions are those of the core; each has
``to_settings()``, the settings object the runner takes.
"""

from collections.abc import Mapping
from typing import Any, ClassVar

import dagster as dg
from pydantic import Field, ValidationError, model_validator

from video_assets.orchestration.config_gen import config_class, config_fields
from video_assets.pipeline.settings import KeyframeSettings, ManifestSettings, ModelSettings, QualitySettings


class _ToSettings(dg.Config):
    """Base of the generated step configs: ``to_settings()`` builds (and so validates) the settings.

    The settings' own checks run as a pydantic validator, so a value of the right type but wrong
    (``sample_mode: by_magic``, ``fps: 0``) is a ValidationError naming the field and the value wherever the
    config is built: by :func:`check_step_config` in a run's first step, before anything is written."""

    _settings_class: ClassVar[type | None] = None  # set on each generated class

    def to_settings(self):
        return type(self)._settings_class(**self.model_dump())

    @model_validator(mode="after")
    def _settings_are_valid(self):
        self.to_settings()  # a ValueError here becomes a ValidationError
        return self


def _step_config(name: str, settings_cls: type, doc: str) -> type:
    cls = config_class(name, _ToSettings, config_fields(settings_cls), module=__name__, doc=doc)
    cls._settings_class = settings_cls
    return cls


ManifestConfig = _step_config("ManifestConfig", ManifestSettings, "video_manifest: how videos are probed.")
QualityConfig = _step_config("QualityConfig", QualitySettings, "VideoQualityScore (CLIP-IQA) parameters.")
KeyframesConfig = _step_config("KeyframesConfig", KeyframeSettings,
                               "VideoAdaptiveKeyframesSampling (AKS) parameters.")


class QualityKeyframesConfig(dg.Config):
    """Run config of the step that materialises video_quality_scores and/or video_keyframes."""

    quality: QualityConfig = Field(default_factory=QualityConfig,
                                   description="video_quality_scores: VideoQualityScore (CLIP-IQA) parameters.")
    keyframes: KeyframesConfig = Field(default_factory=KeyframesConfig,
                                       description="video_keyframes: VideoAdaptiveKeyframesSampling (AKS) "
                                                   "parameters.")


def validation_message(error: ValidationError, where: str) -> str:
    """One line per wrong field: ``{where}.{path}: {the core's message}``."""
    lines = []
    for e in error.errors():
        path = ".".join([where, *(str(p) for p in e["loc"])])
        lines.append(f"{path}: {e['msg'].removeprefix('Value error, ')}")
    return "; ".join(lines)


def check_step_config(config_cls: type[dg.Config], run_config: Mapping[str, Any], step: str) -> None:
    """Build ``config_cls`` from the run config of ``step`` (its defaults where the run sets nothing): a
    ValueError naming each wrong field, its value and the step. Lets the run's first step refuse a run whose
    later step would fail on its config, before any asset of the run is written."""
    raw = ((run_config.get("ops") or {}).get(step) or {}).get("config") or {}
    try:
        config_cls(**raw)
    except ValidationError as e:
        raise ValueError(validation_message(e, f"ops.{step}.config")) from None


# code_version: default settings + default model (from the environment) + the pipeline version; changing
# any of them marks materialised partitions stale in the UI and for the refresh schedule.
_DEFAULT_MODELS = ModelSettings()
MANIFEST_CODE_VERSION = ManifestSettings().fingerprint()
QUALITY_CODE_VERSION = QualitySettings().fingerprint(_DEFAULT_MODELS.quality_model)
KEYFRAMES_CODE_VERSION = KeyframeSettings().fingerprint(_DEFAULT_MODELS.keyframes_model)
# the embeddings are the keyframes pass's candidates: the same settings and model decide them
EMBEDDINGS_CODE_VERSION = KEYFRAMES_CODE_VERSION
