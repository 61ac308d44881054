"""Native time formats become float seconds, and what cannot be read is refused."""

from __future__ import annotations

import pytest

from mtvr_data.timecode import TimeFormatError, chunks_to_seconds, frames_to_seconds, parse_seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (12, 12.0),
        (3.5, 3.5),
        ("24.3", 24.3),
        ("7s", 7.0),
        ("7.25 seconds", 7.25),
        ("01:30", 90.0),
        ("1:02:03.5", 3723.5),
        ("00:00:09.04", 9.04),
    ],
)
def test_parse_seconds(value, seconds):
    assert parse_seconds(value) == pytest.approx(seconds)


def test_percentages_need_a_duration():
    assert parse_seconds("25%", duration=200.0) == 50.0
    with pytest.raises(TimeFormatError, match="needs the video duration"):
        parse_seconds("25%")


@pytest.mark.parametrize("value", ["", "abc", "1:75", "1:2:3:4", None, True, float("inf"), "nan", [1]])
def test_unreadable_times(value):
    with pytest.raises(TimeFormatError):
        parse_seconds(value)


def test_frames_and_chunks():
    assert frames_to_seconds(75, 25) == 3.0
    assert frames_to_seconds(1021, 29.97) == pytest.approx(34.0674, abs=1e-3)
    with pytest.raises(TimeFormatError):
        frames_to_seconds(10, 0)
    assert chunks_to_seconds(1, 2, 5.0) == (5.0, 15.0)
    assert chunks_to_seconds(5, 5, 5.0, duration=27.5) == (25.0, 27.5)
    with pytest.raises(TimeFormatError):
        chunks_to_seconds(3, 2, 5.0)
