"""``tables.build_table`` on its own, without video or Dagster: rows in, a table with exactly the schema out."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from video_assets.pipeline.tables import MANIFEST_SCHEMA, SCHEMAS, USER_COLUMN, build_table, embeddings_schema

SMALL = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("score", pa.float64()),
    pa.field("frame_ids", pa.list_(pa.int64())),
    pa.field(USER_COLUMN, pa.string()),
])


@pytest.mark.parametrize("schema", [*SCHEMAS.values(), embeddings_schema(4)],
                         ids=[*SCHEMAS, "video_frame_embeddings"])
def test_the_table_has_exactly_the_schema_whatever_the_rows_hold(schema):
    """Fields in the schema's order with its types and its pandas metadata; keys the schema lacks are dropped,
    fields a row lacks are null."""
    rows = [{"video_id": "a", "not_a_column": 1}, {"video_id": "b", "uri": "/v/b.mp4"}]
    t = build_table(schema, rows)
    assert t.schema.equals(schema, check_metadata=True)
    assert t.num_rows == 2
    got = t.to_pylist()
    assert [r["video_id"] for r in got] == ["a", "b"]  # row order kept
    assert got[0]["uri"] is None and got[1]["uri"] == "/v/b.mp4"
    assert all("not_a_column" not in r for r in got)


def test_no_rows_is_an_empty_table_with_the_schema():
    t = build_table(MANIFEST_SCHEMA, [])
    assert t.num_rows == 0 and t.schema.equals(MANIFEST_SCHEMA, check_metadata=True)


def test_pandas_missing_values_become_nulls_and_real_values_stay():
    """pandas marks a missing value with a float NaN, in string columns too; Arrow stores null. 0.0, "" and
    lists are values."""
    rows = [
        {"video_id": "a", "score": math.nan, "frame_ids": [1, 2]},
        {"video_id": "b", "score": 0.0, "frame_ids": []},
        {"video_id": "c", "score": 0.25, USER_COLUMN: math.nan},
        {"video_id": "", "score": -1.5},
    ]
    got = build_table(SMALL, rows).to_pylist()
    assert [r["score"] for r in got] == [None, 0.0, 0.25, -1.5]
    assert [r["frame_ids"] for r in got] == [[1, 2], [], None, None]
    assert [r[USER_COLUMN] for r in got] == [None, None, None, None]
    assert [r["video_id"] for r in got] == ["a", "b", "c", ""]


def test_user_values_fill_the_user_column_one_per_row():
    rows = [{"video_id": "a", USER_COLUMN: "not this"}, {"video_id": "b"}]
    got = build_table(SMALL, rows, ['{"label": "x"}', None]).to_pylist()
    assert [r[USER_COLUMN] for r in got] == ['{"label": "x"}', None]
    # without user values the rows' own value is used
    assert build_table(SMALL, rows).column(USER_COLUMN).to_pylist() == ["not this", None]


def test_user_values_must_match_the_rows():
    with pytest.raises(ValueError, match="1 user values for 2 rows"):
        build_table(SMALL, [{"video_id": "a"}, {"video_id": "b"}], ['{"k": 1}'])


def test_a_value_of_the_wrong_type_fails_instead_of_being_converted():
    with pytest.raises((pa.ArrowTypeError, pa.ArrowInvalid)):
        build_table(SMALL, [{"video_id": 7}])
    with pytest.raises((pa.ArrowTypeError, pa.ArrowInvalid)):
        build_table(SMALL, [{"video_id": "a", "frame_ids": ["x"]}])


def test_nullable_integer_columns_read_as_pandas_Int64():
    t = build_table(MANIFEST_SCHEMA, [{"video_id": "a", "row": 1, "width": 640}, {"video_id": "b", "row": 2}])
    frame = t.to_pandas()
    assert str(frame["width"].dtype) == "Int64" and frame["width"].tolist()[0] == 640
    assert frame["width"].isna().tolist() == [False, True]
    assert str(frame["row"].dtype) == "int64"  # not nullable: a plain integer column
