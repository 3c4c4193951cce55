"""Run configuration of the assets (the Launchpad's ``ops`` section) and the assets' code versions.

The Config classes are generated from the pipeline's settings (:mod:`video_assets.pipeline.settings`, made of
the core's settings groups), so their fields, defaults and descriptions are those of the core; each has
``to_settings()``, the settings object the runner takes.
"""

from typing import ClassVar

import dagster as dg
from pydantic import Field

from video_assets.orchestration.config_gen import config_class, config_fields
from video_assets.pipeline.settings import KeyframeSettings, ManifestSettings, ModelSettings, QualitySettings


class _ToSettings(dg.Config):
    """Base of the generated step configs: ``to_settings()`` builds (and so validates) the settings."""

    _settings_class: ClassVar[type | None] = None  # set on each generated class

    def to_settings(self):
        return type(self)._settings_class(**self.model_dump())


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


# code_version: default settings + default model (from the environment) + the pipeline version; changing
# any of them marks materialised partitions stale in the UI and for the refresh schedule.
_DEFAULT_MODELS = ModelSettings()
MANIFEST_CODE_VERSION = ManifestSettings().fingerprint()
QUALITY_CODE_VERSION = QualitySettings().fingerprint(_DEFAULT_MODELS.quality_model)
KEYFRAMES_CODE_VERSION = KeyframeSettings().fingerprint(_DEFAULT_MODELS.keyframes_model)
# the embeddings are the keyframes pass's candidates: the same settings and model decide them
EMBEDDINGS_CODE_VERSION = KEYFRAMES_CODE_VERSION
