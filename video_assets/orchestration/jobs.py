"""The job that sensors and the schedule target: the four assets (and their checks) for one partition."""

import dagster as dg

from video_assets.orchestration.assets import ASSETS, CODE_VERSIONS_TAG, code_versions_fingerprint

video_assets_job = dg.define_asset_job(
    "video_assets_job", selection=dg.AssetSelection.assets(*ASSETS),
    description="video_manifest -> video_quality_scores, video_keyframes (+ checks) for one manifest "
                "partition.",
    tags={CODE_VERSIONS_TAG: code_versions_fingerprint()})
