"""Robustness of the shared reading (base.py) on the vendored records: negative starts, float noise, BOMs, empty
files, control characters, over-long questions, generator text and out-of-order option letters."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from mtvr_data.adapters import make_adapter
from mtvr_data.adapters.base import (
    MAX_QUESTION_CHARS,
    AdapterError,
    clean_text,
    fit_span,
    iter_csv,
    iter_jsonl,
    iter_lines,
    load_json,
    span_meta,
)
from mtvr_data.adapters.longvideo_reason import parse_problem
from mtvr_data.adapters.video_r1 import check_generator_text, order_options, split_prefixes
from mtvr_data.benchmarks.video_r1_eval import VideoR1Eval
from mtvr_data.normalize import NormalizeSummary, normalize
from tests.adapters.conftest import split_results

BOM = b"\xef\xbb\xbf"

# Records of EasyVideoR1 `7ab338b` eval/data/valid_data/longvideoreason.json (the Video-R1-eval copy of the
# LongVideo-Reason test split), copied verbatim.
DERIVED_142 = {
    "data_type": "video",
    "data_source": "LongVideo-Reason",
    "problem_type": "multiple choice",
    "problem_id": 142,
    "options": [
        "A. To exclusively promote all-wheel drive vehicles as the ultimate solution for winter driving.",
        "B. To emphasize the inherent dangers of winter driving without offering practical solutions.",
        "C. To compare the effectiveness of all-wheel drive systems with winter tires.",
        "D. ##### Cross-segment analysis:",
    ],
    "solution": "<answer>D</answer>",
}
DERIVED_64_OPTIONS = [
    "A. To promote the Amazon Fire Phone as a standalone product launch.",
    "B. REASONS:",
    "C. To document a single Amazon Device Event focused on smart home appliances like the Echo Dot and Smart Oven.",
    "D. To review third-party products unrelated to Amazon’s ecosystem.",
]
# Real options that only look like markup: "#" inside the text (342) and single-asterisk titles (840).
DERIVED_342_OPTIONS = [
    "A. Kevin Harvick (Car #29) – Outside Row 1",
    "B. Dale Earnhardt Jr. (Car #88) – Inside Row 6",
    "C. Kyle Busch (Car #18) – Inside Row 9",
    "D. Derrike Cope (Car #75) – Outside Row 9",
]
DERIVED_840_OPTIONS = [
    "A. *Forever Evil #6, 2014*",
    "B. *The Flash #113, 1962*",
    "C. *Blackest Night: The Flash #3, 2010*",
    "D. *Final Crisis: Rogue's Revenge #2, 2008*",
]


def derived(problem_id: int, options: list[str], answer: str, **kw) -> dict:
    row = {
        "data_type": "video",
        "data_source": "LongVideo-Reason",
        "problem_type": "multiple choice",
        "path": f"./vid{problem_id}.mp4",
        "problem": f"Question {problem_id}?",
        "problem_id": problem_id,
        "options": options,
        "solution": f"<answer>{answer}</answer>",
    }
    row.update(kw)
    return row


def read_eval(path, benchmark="longvideo-reason"):
    return split_results(VideoR1Eval(path, benchmark=benchmark).read())


def lvr_row(problem: str, answer: str = "B") -> dict:
    return {
        "problem_id": 7,
        "problem": problem,
        "data_type": "video",
        "problem_type": "goal",
        "reasoning": "Because.",
        "videos": "longvila_videos/abc.mp4",
        "answer": f"<answer>{answer}</answer>",
    }


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# --- 1. starts slightly before 0 ----------------------------------------------------------------------------------


def test_fit_span_clamps_a_start_just_before_zero():
    assert fit_span(-0.1, 11.0, 35.0) == [0.0, 11.0]
    assert fit_span(-0.2, 11.0, None) == [0.0, 11.0]
    assert span_meta(-0.1, 11.0, [0.0, 11.0]) == {"original_start": -0.1}
    with pytest.raises(AdapterError) as info:
        fit_span(-0.31, 11.0, 35.0)
    assert info.value.code == "span_outside_video"


def test_nextgqa_negative_start_window_is_kept(samples, tmp_path):
    # The vendored test split with video 10109006686's qid 0 window moved to start at -0.1 s, as upstream writes
    # some test windows ([[-0.1, 11.0]]).
    for name in ("test.csv", "map_vid_vidorID.json"):
        shutil.copy(samples / "nextgqa" / name, tmp_path / name)
    gsub = json.loads((samples / "nextgqa" / "gsub_test.json").read_text())
    gsub["10109006686"]["location"]["0"] = [[-0.1, 11.0]]
    (tmp_path / "gsub_test.json").write_text(json.dumps(gsub))
    ok, errors = split_results(make_adapter("nextgqa", tmp_path / "test.csv").read())
    assert errors == [] and len(ok) == 38
    shifted = [s for s in ok if s.meta_dict["video_id"] == "10109006686" and str(s.meta_dict["qid"]) == "0"]
    assert len(shifted) == 1 and shifted[0].span == [0.0, 11.0] and shifted[0].windows == [[0.0, 11.0]]
    assert "-0.1" in shifted[0].meta  # the published window is kept


def test_charades_negative_start_records_the_original(samples, tmp_path):
    shutil.copy(samples / "charades_sta" / "Charades_v1_test.csv", tmp_path / "Charades_v1_test.csv")
    (tmp_path / "charades_sta_test.txt").write_text("3MSZA -0.2 6.4##person turn a light on.\n")
    ok, errors = split_results(make_adapter("charades_sta", tmp_path / "charades_sta_test.txt").read())
    assert errors == [] and ok[0].span == [0.0, 6.4] and ok[0].meta_dict["original_start"] == -0.2


# --- 4. float noise -----------------------------------------------------------------------------------------------


def test_activitynet_float_noise_is_not_a_clamp(tmp_path):
    # 2D-TAN writes durations such as 70.28999999999999: an end of 70.29 is 1e-14 s past it.
    entry = {"duration": 70.28999999999999, "timestamps": [[0.0, 70.29], [10.0, 71.5]], "sentences": ["a", " b"]}
    path = tmp_path / "test.json"
    path.write_text(json.dumps({"v_x": entry}))
    ok, errors = split_results(make_adapter("activitynet_captions", path).read())
    assert errors == [] and len(ok) == 2
    assert "original_end" not in ok[0].meta_dict and ok[0].span == [0.0, 70.29]
    assert ok[1].meta_dict["original_end"] == 71.5 and ok[1].span == [10.0, 70.28999999999999]  # a real clamp


def test_activitynet_real_files_record_no_noise_clamps(samples):
    for name in ("train.json", "val.json", "test.json"):
        ok, _ = split_results(make_adapter("activitynet_captions", samples / "activitynet_captions" / name).read())
        for s in ok:
            original = s.meta_dict.get("original_end")
            assert original is None or original - s.span[1] > 1e-6


# --- 5. a BOM is stripped by every reader -------------------------------------------------------------------------


def test_bom_charades_txt_first_video_name(samples, tmp_path):
    shutil.copy(samples / "charades_sta" / "Charades_v1_test.csv", tmp_path / "Charades_v1_test.csv")
    txt = tmp_path / "charades_sta_test.txt"
    txt.write_bytes(BOM + (samples / "charades_sta" / "charades_sta_test.txt").read_bytes())
    ok, errors = split_results(make_adapter("charades_sta", txt).read())
    plain, _ = split_results(make_adapter("charades_sta", samples / "charades_sta" / "charades_sta_test.txt").read())
    assert errors == [] and ok[0].video == "3MSZA.mp4" and ok[0].duration is not None
    assert [s.id for s in ok] == [s.id for s in plain]


def test_bom_video_r1_json_is_read(samples, tmp_path):
    source = samples / "video-r1" / "Video-R1-COT-165k.card-example.json"
    path = tmp_path / source.name
    path.write_bytes(BOM + source.read_bytes())
    ok, errors = split_results(make_adapter("video_r1", path).read())
    plain, plain_errors = split_results(make_adapter("video_r1", source).read())
    assert len(ok) == len(plain) > 0 and len(errors) == len(plain_errors)
    assert [s.id for s in ok] == [s.id for s in plain]


def test_bom_every_reader(tmp_path):
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_bytes(BOM + b'{"a": 1}\n{"a": 2}\n')
    assert [r.value for r in iter_jsonl(jsonl)] == [{"a": 1}, {"a": 2}]
    assert [r.value for r in iter_lines(jsonl)][0] == '{"a": 1}'
    whole = tmp_path / "a.json"
    whole.write_bytes(BOM + b'[{"a": 1}]')
    assert load_json(whole) == [{"a": 1}]
    table = tmp_path / "a.csv"
    table.write_bytes(BOM + b"id,length\nX,1.5\n")
    assert [r.value for r in iter_csv(table)] == [{"id": "X", "length": "1.5"}]


# --- 6. empty annotation files ------------------------------------------------------------------------------------


def test_empty_file_warns_and_is_counted(tmp_path, caplog):
    path = tmp_path / "charades_sta_test.txt"
    path.write_bytes(b"")
    adapter = make_adapter("charades_sta", path)
    summary = NormalizeSummary("charades_sta")
    with caplog.at_level(logging.WARNING, logger="mtvr_data.adapters.base"):
        assert list(normalize(adapter, None, probe=False, summary=summary)) == []
    assert "holds no records" in caplog.text and str(path) in caplog.text
    assert (summary.records, summary.empty_files) == (0, 1)
    assert summary.to_dict()["empty_files"] == 1 and "WARNING: 1 empty annotation file" in summary.render()


def test_non_empty_file_is_not_counted_empty(samples):
    adapter = make_adapter("charades_sta", samples / "charades_sta" / "charades_sta_test.txt")
    summary = NormalizeSummary("charades_sta")
    list(normalize(adapter, None, probe=False, summary=summary))
    assert summary.empty_files == 0 and "WARNING" not in summary.render() and summary.to_dict()["empty_files"] == 0


# --- 7. control and bidi characters -------------------------------------------------------------------------------


def test_clean_text():
    assert clean_text("a\x00b\u202ec\u2066d\u2069e\u200ff\u061cg\x1b\x7f\ufeff") == "abcdefg"
    assert clean_text("tab\tnew\nline\r\n é ü 日本 👍🏽") == "tab\tnew\nline\r\n é ü 日本 👍🏽"  # text stays


def test_control_characters_are_removed_from_question_options_answer(tmp_path):
    problem = "What is\u202e shown?\x00  \nA. a\u2066 cat\u2069  \nB. a\x00 dog  \n"
    dirty = write_jsonl(tmp_path / "dirty.jsonl", [lvr_row(problem)])
    clean = write_jsonl(tmp_path / "clean.jsonl", [lvr_row("What is shown?  \nA. a cat  \nB. a dog  \n")])
    (got,), errors = split_results(make_adapter("longvideo_reason", dirty).read())
    (want,), _ = split_results(make_adapter("longvideo_reason", clean).read())
    assert errors == [] and (got.question, got.options) == ("What is shown?", ["a cat", "a dog"])
    assert got.id == want.id
    path = tmp_path / "Video-R1-260k.json"
    row = derived(5, ["A. x", "B. y"], "B\u200f")
    path.write_text(json.dumps([{**row, "problem": "Count\x00 it?"}]))
    (r1,), _ = split_results(make_adapter("video_r1", path).read())
    assert (r1.question, r1.answer) == ("Count it?", "B")


def test_option_emptied_by_cleaning_is_bad_value(tmp_path):
    path = tmp_path / "Video-R1-260k.json"
    path.write_text(json.dumps([derived(5, ["A. x", "B. \u202e\x00"], "A")]))
    ok, errors = split_results(make_adapter("video_r1", path).read())
    assert ok == [] and [e.reason for e in errors] == ["bad_value"]


# --- 8. question length cap ---------------------------------------------------------------------------------------


def test_question_too_long(tmp_path):
    path = tmp_path / "Video-R1-260k.json"
    longest = "x" * (MAX_QUESTION_CHARS - 1) + "?"
    rows = [
        derived(1, ["A. x", "B. y"], "A", problem=longest),
        derived(2, ["A. x", "B. y"], "A", problem=longest + "y"),
    ]
    path.write_text(json.dumps(rows))
    ok, errors = split_results(make_adapter("video_r1", path).read())
    assert len(ok) == 1 and len(ok[0].question) == MAX_QUESTION_CHARS
    assert [(e.location, e.reason) for e in errors] == [("Video-R1-260k.json#1", "question_too_long")]
    assert len(errors[0].raw) < 1000 and "8,001 characters" in errors[0].detail


# --- 2. generator text --------------------------------------------------------------------------------------------


def test_check_generator_text():
    texts = [t[3:] for t in DERIVED_142["options"]]
    with pytest.raises(AdapterError) as info:
        check_generator_text(texts, "D")
    assert info.value.code == "generator_text" and "gold answer" in info.value.detail
    for options in (DERIVED_342_OPTIONS, DERIVED_840_OPTIONS):
        check_generator_text([t[3:] for t in options], "A")  # no error
    for text in ("REASONS:", "##### Overall:", "**Key Reasoning**: The question requires ..."):
        with pytest.raises(AdapterError):
            check_generator_text(["a real option", text])


def test_generator_text_native_longvideo_reason(tmp_path):
    # problem_id 142's published options (as the derived copy splits them), inlined the native way.
    question = "What is the primary intention of the video?"
    lines = [question] + DERIVED_142["options"] + [""]
    path = write_jsonl(
        tmp_path / "test.jsonl",
        [lvr_row("  \n".join(lines), answer="D"), lvr_row("  \n".join([question, *DERIVED_64_OPTIONS, ""]))],
    )
    ok, errors = split_results(make_adapter("longvideo_reason", path).read())
    assert ok == [] and [e.reason for e in errors] == ["generator_text", "generator_text"]
    assert "gold answer" in errors[0].detail and "REASONS:" in errors[1].detail


def test_generator_text_derived_copy(tmp_path):
    rows = [
        derived(142, DERIVED_142["options"], "D"),
        derived(64, DERIVED_64_OPTIONS, "B"),
        derived(342, DERIVED_342_OPTIONS, "A"),
        derived(840, DERIVED_840_OPTIONS, "D"),
    ]
    path = tmp_path / "longvideoreason.json"
    path.write_text(json.dumps(rows, ensure_ascii=False))
    ok, errors = read_eval(path)
    assert [e.reason for e in errors] == ["generator_text", "generator_text"]
    assert [s.meta_dict["problem_id"] for s in ok] == [342, 840]


# --- 3. out-of-order letters: one reordering for every reader -----------------------------------------------------


# EasyVideoR1 longvideoreason.json problem_id 11, verbatim: letters written C, A, B, D; the answer is D.
DERIVED_11 = {
    "data_type": "video",
    "data_source": "LongVideo-Reason",
    "problem_type": "multiple choice",
    "path": "./mdj9LBPkEhQ.mp4",
    "problem": "What is the most likely underlying intention or goal of the video creators, as inferred from the "
    "progression of scenes and logos?",
    "problem_id": 11,
    "options": [
        "C. To provide a satirical critique of media sensationalism in disaster reporting",
        "A. To document environmental damage caused by underwater nuclear testing",
        "B. To celebrate international cooperation in space exploration technology",
        "D. To report on North Korea’s military advancements and nuclear capabilities with corroborating visual "
        "evidence",
    ],
    "solution": "<answer>D</answer>",
}


def test_order_options_shared():
    texts, reordered = order_options(split_prefixes(["B. x", "A. y", "C. z"]))
    assert (texts, reordered) == (["y", "x", "z"], True)
    assert order_options(split_prefixes(["A. y", "B. x"])) == (["y", "x"], False)
    assert parse_problem("Q?\nB. x\nA. y\nC. z\n") == ("Q?", ["y", "x", "z"], True)
    for options, code in ((["A. x", "A. y"], "duplicate_option_letter"), (["B. x", "D. y"], "bad_value")):
        with pytest.raises(AdapterError) as info:
            order_options(split_prefixes(options))
        assert info.value.code == code


def test_derived_copy_out_of_order_letters_are_reordered(tmp_path):
    path = tmp_path / "longvideoreason.json"
    path.write_text(json.dumps([DERIVED_11], ensure_ascii=False))
    (sample,), errors = read_eval(path)  # was bad_value ("option letters run CABD")
    assert errors == [] and sample.answer == "D" and sample.meta_dict["options_reordered"] is True
    assert [o[:20] for o in sample.options] == [
        "To document environm",
        "To celebrate interna",
        "To provide a satiric",
        "To report on North K",
    ]
    assert sample.meta_dict["benchmark"] == "longvideo-reason" and sample.split == "test"
    # The training reader of the same record (Video-R1 format) reorders it the same way.
    (same,), _ = split_results(make_adapter("video_r1", path).read())
    assert (same.options, same.answer, same.meta_dict["options_reordered"]) == (sample.options, "D", True)


def test_real_derived_fixture_unchanged(samples):
    ok, errors = read_eval(samples / "longvideo-reason/video-r1-eval-format_EasyVideoR1/longvideoreason.json")
    assert errors == [] and len(ok) == 5 and not any(s.meta_dict.get("options_reordered") for s in ok)
