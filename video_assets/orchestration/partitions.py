"""One dynamic partition per manifest; keys come from the manifest's file name (see
:mod:`video_assets.pipeline.manifests`)."""

import dagster as dg

PARTITIONS_NAME = "video_manifests"
video_manifests = dg.DynamicPartitionsDefinition(name=PARTITIONS_NAME)
