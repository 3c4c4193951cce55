"""The Dagster layer: resources, partitions, assets, checks, sensors, schedule. Thin: it resolves
configuration, calls :mod:`video_assets.pipeline.runner`, writes tables and reports metadata."""
