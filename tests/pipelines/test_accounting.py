"""The accounting table's bytes depend on its counts only, never on the order a runner delivers them in."""

from __future__ import annotations

import itertools
import json

from pipelines.accounting import build_table, check_accounting


def test_the_table_is_the_same_whatever_order_the_entries_arrive_in() -> None:
    entries = [
        (("in", "grade", "charades_sta", ""), 5),
        (("kept", "grade", "charades_sta", ""), 3),
        (("rejected", "grade", "charades_sta", "all_failed"), 2),
        (("cached", "grade", "charades_sta", ""), 4),
        (("computed", "grade", "charades_sta", ""), 1),
    ]
    tables = {json.dumps(build_table(list(order)), indent=2) for order in itertools.permutations(entries)}
    assert len(tables) == 1
    table = build_table(entries)
    check_accounting(table)
    assert table["stages"][0]["cached"] == 4 and table["stages"][0]["computed"] == 1
