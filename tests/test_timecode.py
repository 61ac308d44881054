"""Native time formats become float seconds, and what cannot be read is refused."""

from __future__ import annotations

import pytest

from mtvr_data.timecode import TimeFormatError, parse_seconds


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
