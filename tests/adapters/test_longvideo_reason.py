"""LongVideo-Reason: real rows (JSONL dumps of the HF splits), the parquet form, inlined options, defects."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from mtvr_data.adapters import make_adapter
from mtvr_data.adapters.longvideo_reason import parse_problem
from tests.adapters.conftest import split_results

# `problem` texts of upstream test rows (HF test split, as dumped in lwpyh/answer-entropy-zoom@e00fa4b
# longvideo-reason/test.jsonl), copied verbatim: the defects the adapter must catch or repair.
LEAKED_147 = (
    "What is the creator's primary intention in this video, as inferred from the sequence of scenes and "
    "video frames?\nA. But this requires the test-taker to weigh the content versus the promotional "
    'elements. Another angle: the presence of the channel\'s branding ("My Virgin Kitchen") and calls to '
    "action are part of the video's structure to build the channel's audience, which is a primary "
    "intention for content creators. However, the main content is the recipe. So the answer is A. But "
    "maybe the video's inclusion of multiple elements (two recipes?) complicates this. \n"
)
EMPTY_B_148 = (
    "Based on the interactions and settings depicted across the timestamps, what is Gru’s **primary "
    "underlying intention** that connects his actions in the bedroom, submarine, and laboratory scenes, "
    "and how do these scenes contribute to a larger goal?  \nC. To protect his family from an external "
    "threat by scouting locations (suburban chase), securing resources (lab), and strategizing "
    "(bedroom).  \nB. \nA. To reconcile with Lucy after a disagreement, using quiet moments and "
    "collaborative missions to rebuild trust.  \nD. To test experimental technology (green lamp, "
    "submarine, lab tools) for a future invention with Lucy’s assistance.  \n"
)
OUT_OF_ORDER_155 = "  \n".join(
    [
        "What is the primary intention behind juxtaposing basketball game scenes with classroom activities and SEN "
        "statistics in this video?",
        "C. To highlight systemic educational inequalities and promote inclusive initiatives for disadvantaged/SEN "
        "students",
        "A. To emphasize the importance of physical fitness for academic success",
        "B. To advocate for separate educational facilities for SEN students",
        "D. To demonstrate how sports can replace traditional teaching methods for disengaged learners",
        "",
    ]
)


def read(path, **kw):
    return split_results(make_adapter("longvideo_reason", path, **kw).read())


def row(problem: str, answer: str = "<answer>B</answer>", **kw) -> dict:
    base = {
        "problem_id": 7,
        "problem": problem,
        "data_type": "video",
        "problem_type": "goal",
        "reasoning": "Because.",
        "videos": "longvila_videos/abc.mp4",
        "answer": answer,
    }
    base.update(kw)
    return base


def test_real_test_rows(samples):
    ok, errors = read(samples / "longvideo-reason" / "test.jsonl")
    assert len(ok) == 2 and errors == [] and {s.split for s in ok} == {"test"}
    first = ok[0]
    assert (first.task, first.answer_type, first.answer) == ("mcq", "letter", "B")
    assert first.question.startswith("What is the primary intention behind the video's sequence")
    assert first.question.endswith("and a cheetah (0:08:00-0:08:50)?")  # trailing "  " stripped
    assert first.options[0] == "To document the hunting strategies of predators across species."
    assert first.options[3] == "To demonstrate interspecies communication methods in the wild."
    assert len(first.options) == 4 and first.video == "longvila_videos/I_Q3ajyOrcI.mp4"
    meta = first.meta_dict
    assert (meta["problem_id"], meta["problem_type"]) == (0, "goal") and "options_reordered" not in meta
    assert meta["reasoning"].startswith("The sequence begins by showcasing the African elephant")
    plot = ok[1]  # problem_id 503: "?\nA." (no two spaces before the first option line)
    assert plot.question == (
        "Which myth about the MacBook is directly contradicted by footage demonstrating its "
        "capability through connected devices and peripherals?"
    )
    assert plot.options[1] == '"The MacBook sucks because it only has a single port."' and plot.answer == "B"
    assert plot.meta_dict["problem_type"] == "plot"
    again, _ = read(samples / "longvideo-reason" / "test.jsonl")
    assert [s.id for s in ok] == [s.id for s in again] and ok[0].id != ok[1].id


def test_real_validation_row_letters_out_of_order(samples):
    ok, errors = read(samples / "longvideo-reason" / "val.jsonl")
    assert errors == [] and len(ok) == 1
    s = ok[0]  # published order B, A, C, D; the answer B is "Greenhouse → Warehouse → Flower Shop"
    assert s.split == "val" and s.answer == "B"
    assert s.options == [
        "Greenhouse → Laboratory → Flower Shop → Warehouse",
        "Greenhouse → Warehouse → Flower Shop",
        "Warehouse → Greenhouse → Delivery Truck → Laboratory",
        "Flower Shop → Greenhouse → Warehouse → Laboratory",
    ]
    assert s.meta_dict["options_reordered"] is True and s.meta_dict["problem_type"] == "general"
    assert s.meta_dict["origin"] == "val.jsonl:1"


def test_parse_problem_upstream_out_of_order_row():
    question, options, reordered = parse_problem(OUT_OF_ORDER_155)
    assert question.endswith("SEN statistics in this video?") and reordered
    assert options[2].startswith("To highlight systemic educational inequalities") and len(options) == 4


def write_jsonl(path, rows):
    path.write_bytes(
        b"".join((r if isinstance(r, bytes) else json.dumps(r, ensure_ascii=False).encode()) + b"\n" for r in rows)
    )
    return path


def test_malformed_rows(tmp_path):
    opts = "Q?  \nA. one  \nB. two  \nC. three  \n"
    path = write_jsonl(
        tmp_path / "test.jsonl",
        [
            row(opts),  # 1 ok
            row(LEAKED_147, answer="<answer>A</answer>", problem_id=147),  # 2 one leaked "option"
            row(EMPTY_B_148, problem_id=148),  # 3 option B has no text
            row("What happens in the video?", problem_id=379),  # 4 no options
            row("Q?  \nA. one  \nB. two  \nA. three  \n"),  # 5 repeated letter
            row("Q?  \nA. one  \nB. two  \nD. four  \n"),  # 6 gap
            row(opts, answer="<answer>D</answer>"),  # 7 letter not among options
            row("Q?  \nA. one  \nB. two  \nsomething else  \n"),  # 8 stray text after options
            row("A. one  \nB. two  \n"),  # 9 no question
            row(opts, videos=""),  # 10 no video
            row(opts, answer=None),  # 11 no answer
            row(opts, answer="<answer>two</answer>"),  # 12 answer is not a letter
            b"{broken",  # 13
            b'{"problem": "caf\xe9"}',  # 14
            row(opts, answer=" C "),  # 15 no tags: the whole text
            row(opts, problem_id=148),  # 16 same content, other id: same sample id
        ],
    )
    ok, errors = read(path)
    assert {e.location: e.reason for e in errors} == {
        "test.jsonl:2": "missing_options",
        "test.jsonl:3": "bad_value",
        "test.jsonl:4": "missing_options",
        "test.jsonl:5": "duplicate_option_letter",
        "test.jsonl:6": "bad_value",
        "test.jsonl:7": "unknown_option",
        "test.jsonl:8": "bad_value",
        "test.jsonl:9": "missing_field",
        "test.jsonl:10": "missing_field",
        "test.jsonl:11": "missing_field",
        "test.jsonl:12": "unknown_option",
        "test.jsonl:13": "bad_json",
        "test.jsonl:14": "non_utf8",
    }
    assert "option B has no text" in next(e.detail for e in errors if e.location == "test.jsonl:3")
    assert "only 1 option" in next(e.detail for e in errors if e.location == "test.jsonl:2")
    good, untagged, same = ok
    assert (good.question, good.options, good.answer) == ("Q?", ["one", "two", "three"], "B")
    assert untagged.answer == "C" and untagged.meta_dict["answer_tag"] is False
    assert same.id == good.id  # the id hashes the question, not the row number


def test_parquet_rows_match_jsonl(tmp_path, samples):
    jsonl = samples / "longvideo-reason" / "test.jsonl"
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    rows.append(row("What happens?", problem_id=379))  # no options
    schema = pa.schema(
        [
            ("problem_id", pa.int64()),
            ("problem", pa.string()),
            ("data_type", pa.string()),
            ("problem_type", pa.string()),
            ("reasoning", pa.string()),
            ("videos", pa.string()),
            ("answer", pa.string()),
        ]
    )
    path = tmp_path / "test-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=2)
    ok, errors = read(path)
    assert [(e.location, e.reason) for e in errors] == [("test-00000-of-00001.parquet#2", "missing_options")]
    from_jsonl, _ = read(jsonl)
    assert [s.id for s in ok] == [s.id for s in from_jsonl] and ok[0].split == "test"
    assert [s.meta_dict["origin"] for s in ok] == ["test-00000-of-00001.parquet#0", "test-00000-of-00001.parquet#1"]
    assert ok[0].meta_dict["problem_id"] == 0


def test_unreadable_parquet(tmp_path):
    path = tmp_path / "validation-00000-of-00001.parquet"
    path.write_bytes(b"not a parquet file at all")
    ok, errors = read(path)
    assert ok == [] and [(e.location, e.reason) for e in errors] == [(path.name, "bad_value")]
