"""The pipeline without Dagster: manifests, probing, tables, the inbox and registry, and the step functions in
:mod:`video_assets.pipeline.runner` that the Dagster assets (and any other backend) call."""

from video_assets.pipeline.manifests import (
                                             Manifest,
                                             ManifestError,
                                             assign_partition_key,
                                             base_partition_key,
                                             read_manifest,
                                             sanitize_partition_key,
)
from video_assets.pipeline.settings import KeyframeSettings, ManifestSettings, ModelSettings, QualitySettings

__all__ = ["KeyframeSettings", "Manifest", "ManifestError", "ManifestSettings", "ModelSettings",
           "QualitySettings", "assign_partition_key", "base_partition_key", "read_manifest",
           "sanitize_partition_key"]
