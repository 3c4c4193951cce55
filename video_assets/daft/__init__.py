"""The two operators as Daft class UDFs, a drop-in for programs written against the LAS operators.

``pip install 'video_assets[daft]'``; the core never imports this package. See README, "From Daft".

    from video_assets.daft import las_udf
    from video_assets.operators import VideoQualityScore

    ds = ds.with_column("quality_score", las_udf(VideoQualityScore, construct_args={"prompt": "quality"},
                                                 num_gpus=1, batch_size=1, concurrency=1)(col("video_path")))
"""

from video_assets.daft.udf import DEFAULT_BATCH_SIZE, OperatorUDF, las_udf, operator_udf, output_dtype

__all__ = ["DEFAULT_BATCH_SIZE", "OperatorUDF", "las_udf", "operator_udf", "output_dtype"]
