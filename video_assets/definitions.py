"""Dagster code location (loaded by workspace.yaml). The pipeline's assets arrive with the Dagster issue."""

import dagster as dg

defs = dg.Definitions(assets=[])
