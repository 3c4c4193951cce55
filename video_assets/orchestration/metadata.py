"""Metadata builders: what each materialisation shows in the UI (row counts, schema, failures and their common
cause, previews, histograms, contact sheets, settings). Pure functions of the written table and its frame."""

import json
from dataclasses import asdict

import dagster as dg
import pandas as pd
import pyarrow as pa

from video_assets.pipeline import report
from video_assets.pipeline.settings import KeyframeSettings, QualitySettings
from video_assets.storage.fs import is_remote_uri


def path_value(uri: str) -> dg.MetadataValue:
    return dg.MetadataValue.url(uri) if is_remote_uri(uri) else dg.MetadataValue.path(uri)


def column_schema(table: pa.Table) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name=f.name, type=str(f.type)) for f in table.schema])


def preview(frame: pd.DataFrame, columns: list[str], limit: int = 10) -> dg.MetadataValue:
    """The first rows as a table the UI renders inline."""
    records = report.preview_records(frame, columns, limit)
    cols = [c for c in columns if c in frame.columns]

    def kind(c: str) -> str:
        vals = [r[c] for r in records if r[c] is not None]
        if vals and all(isinstance(v, bool) for v in vals):
            return "bool"
        if vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            return "int"
        if vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            return "float"
        return "string"

    return dg.MetadataValue.table(
        records=[dg.TableRecord(r) for r in records],
        schema=dg.TableSchema(columns=[dg.TableColumn(name=c, type=kind(c)) for c in cols]))


def common_metadata(table: pa.Table, frame: pd.DataFrame, uri: str, elapsed: float, failed: int,
                     preview_cols: list[str], model_load_s: float | None = None) -> dict:
    """``elapsed``: the step's wall time for this table; ``model_load_s``: the part of it spent loading models
    (None: none, or not measured here). Throughput is over the rest, the processing time: with the load in it,
    3 tiny videos showed 0.53 videos/s, which said nothing about the videos."""
    rows = table.num_rows
    cause = report.common_cause(frame)
    processing = max(elapsed - (model_load_s or 0.0), 0.0)
    loaded = {} if model_load_s is None else {"model_load_s": dg.MetadataValue.float(round(model_load_s, 3))}
    return {
        "dagster/row_count": dg.MetadataValue.int(rows),
        "dagster/column_schema": column_schema(table),
        "failed": dg.MetadataValue.int(failed),
        "failed_share": dg.MetadataValue.float(round(failed / rows, 4) if rows else 0.0),
        "top_errors": dg.MetadataValue.md(report.errors_markdown(frame)),
        "preview": preview(frame, preview_cols),
        "path": path_value(uri),
        "elapsed_s": dg.MetadataValue.float(round(elapsed, 3)),
        **loaded,
        "processing_s": dg.MetadataValue.float(round(processing, 3)),
        "throughput_videos_per_s": dg.MetadataValue.float(round(rows / processing, 3) if processing > 0 else 0.0),
        **({"common_cause": dg.MetadataValue.text(cause)} if cause else {}),
    }


def log_common_cause(context: dg.AssetExecutionContext, asset: str, md: dict) -> None:
    """The one line that says why most videos failed, and the fix, in the run log too."""
    if "common_cause" in md:
        context.log.warning(f"{asset}: {md['common_cause'].value}")


def quality_metadata(table: pa.Table, frame: pd.DataFrame, uri: str, elapsed: float,
                      settings: QualitySettings, model_load_s: float | None = None) -> dict:
    scores = frame["quality_score"].dropna()
    failed = int(frame["quality_score"].isna().sum())
    md = common_metadata(table, frame, uri, elapsed, failed,
                          ["video_id", "quality_score", "frame_indices", "truncated", "error"], model_load_s)
    md.update({
        "score_histogram": dg.MetadataValue.md(report.inline_histogram_markdown(list(scores))),
        "score_histogram_large": dg.MetadataValue.md(report.markdown_image(
            report.histogram_png(list(scores), title="quality_score"), "quality score histogram")),
        "model": str(frame["model"].iloc[0]) if len(frame) else "",
        "device": str(frame["device"].iloc[0]) if len(frame) else "",
        "settings": dg.MetadataValue.json(json.loads(json.dumps(asdict(settings), default=list))),
        "settings_hash": str(frame["settings_hash"].iloc[0]) if len(frame) else "",
    })
    if len(scores):
        md.update({f"score_{k}": dg.MetadataValue.float(round(float(getattr(scores, k)()), 4))
                   for k in ("mean", "median", "min", "max")})
    return md


def keyframes_metadata(table: pa.Table, frame: pd.DataFrame, uri: str, elapsed: float,
                       settings: KeyframeSettings, keyframes_dir: str, model_load_s: float | None = None) -> dict:
    failed = int(frame["error"].notna().sum())
    md = common_metadata(table, frame, uri, elapsed, failed,
                          ["video_id", "num_keyframes", "num_candidates", "timestamps", "error"], model_load_s)
    ok = frame[frame["error"].isna()]
    sheet = report.contact_sheet_png(
        [(vid, list(paths), list(ts)) for vid, paths, ts in zip(ok["video_id"], ok["keyframe_paths"],
                                                                ok["timestamps"]) if paths is not None])
    md.update({
        "contact_sheet": dg.MetadataValue.md(report.markdown_image(sheet, "keyframes") if sheet
                                             else "no keyframes to show"),
        "keyframes_total": dg.MetadataValue.int(int(frame["num_keyframes"].fillna(0).sum())),
        "keyframes_dir": path_value(keyframes_dir),
        "model": str(frame["model"].iloc[0]) if len(frame) else "",
        "device": str(frame["device"].iloc[0]) if len(frame) else "",
        "settings": dg.MetadataValue.json(asdict(settings)),
        "settings_hash": str(frame["settings_hash"].iloc[0]) if len(frame) else "",
    })
    return md
