"""The deployment knobs' parser: a bad value falls back to the default and says so, naming the variable."""

import logging

import pytest

from video_assets.orchestration.checks import max_failed_share
from video_assets.orchestration.env import env_number
from video_assets.orchestration.schedules import SCHEDULE_MAX_FAILURES_ENV, max_failures
from video_assets.orchestration.sensors import SENSOR_INTERVAL_ENV, sensor_interval


def test_values_parse_and_unset_or_blank_is_the_default(monkeypatch):
    monkeypatch.delenv("VIDEO_ASSETS_X", raising=False)
    assert env_number("VIDEO_ASSETS_X", 3, int) == 3
    monkeypatch.setenv("VIDEO_ASSETS_X", "  ")
    assert env_number("VIDEO_ASSETS_X", 3, int) == 3
    monkeypatch.setenv("VIDEO_ASSETS_X", " 7 ")
    assert env_number("VIDEO_ASSETS_X", 3, int) == 7 and isinstance(env_number("VIDEO_ASSETS_X", 3, int), int)
    monkeypatch.setenv("VIDEO_ASSETS_X", "0.25")
    assert env_number("VIDEO_ASSETS_X", 0.1) == 0.25


def test_a_bad_value_is_logged_with_the_variable_and_gives_the_default(monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="video_assets.orchestration.env")
    monkeypatch.setenv(SCHEDULE_MAX_FAILURES_ENV, "three")
    assert max_failures() == 3
    monkeypatch.setenv(SENSOR_INTERVAL_ENV, "0")  # below the minimum of 1 s
    assert sensor_interval() == 30
    monkeypatch.setenv("VIDEO_ASSETS_MAX_FAILED_SHARE", "10%")
    assert max_failed_share() == 0.1
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [f"${SCHEDULE_MAX_FAILURES_ENV}='three' is not an integer; using the default, 3",
                        f"${SENSOR_INTERVAL_ENV}='0' is not an integer >= 1; using the default, 30",
                        "$VIDEO_ASSETS_MAX_FAILED_SHARE='10%' is not a number >= 0; using the default, 0.1"]


def test_a_bad_limit_variable_is_refused_by_name():
    """The source policy's limits are not knobs to fall back on: a typo there stops the code location's load
    with the variable's name, not with int()'s message."""
    from video_assets.orchestration.resources import source_settings_from_env

    assert source_settings_from_env({"VIDEO_ASSETS_MAX_PIXELS": " 8294400 "}) == {"max_pixels": 8294400}
    assert source_settings_from_env({"VIDEO_ASSETS_MAX_PIXELS": "none"}) == {"max_pixels": None}
    with pytest.raises(ValueError, match=r"^\$VIDEO_ASSETS_MAX_PIXELS='8k' is not an integer \(or 'none' for no "
                                         r"limit\)$"):
        source_settings_from_env({"VIDEO_ASSETS_MAX_PIXELS": "8k"})
    # max_retries cannot be switched off: 0 is no retry, and 'none' is refused as what it is
    with pytest.raises(ValueError, match=r"^\$VIDEO_ASSETS_MAX_RETRIES='none' is not an integer$"):
        source_settings_from_env({"VIDEO_ASSETS_MAX_RETRIES": "none"})
