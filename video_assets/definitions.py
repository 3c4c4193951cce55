"""Dagster code location (loaded by workspace.yaml): ``defs``.

Runs use the in-process executor: the GPU steps are serialised by the ``gpu`` pool anyway, and one process per
run imports torch and loads each model once instead of once per step.
"""

import dagster as dg

from video_assets.orchestration.assets import ASSETS
from video_assets.orchestration.jobs import video_assets_job
from video_assets.orchestration.resources import default_resources
from video_assets.orchestration.schedules import SCHEDULES
from video_assets.orchestration.sensors import SENSORS

defs = dg.Definitions(
    assets=ASSETS,
    jobs=[video_assets_job],
    sensors=SENSORS,
    schedules=SCHEDULES,
    resources=default_resources(),
    executor=dg.in_process_executor,
)
