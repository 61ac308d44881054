"""Video-R1-260k / COT-165k: the real records, constructed records of every problem type, malformed records.

The real samples (tests/fixtures/samples/video-r1) hold only `free-form` video rows (9 records of the
260k set's video part) plus the one `multiple choice` record of the COT-165k dataset card. No raw numerical,
OCR, regression or image record was found (FORMATS.md §7), so those types are tested on records constructed
in tmp_path in the published field layout, plus the real VSI-Bench rows of the Video-R1-eval copy (same
fields; regression and MC).
"""

from __future__ import annotations

import json

from mtvr_data.adapters import make_adapter
from tests.adapters.conftest import split_results


def read(path, **kw):
    return split_results(make_adapter("video_r1", path, **kw).read())


def record(**kw) -> dict:
    base = {
        "problem_id": 1,
        "problem": "What is shown?",
        "data_type": "video",
        "problem_type": "free-form",
        "options": [],
        "solution": "<answer>A dog.</answer>",
        "path": "./LLaVA-Video-178K/x/1.mp4",
        "data_source": "LLaVA-Video-178K/0_30_s_academic_v0_1",
    }
    base.update(kw)
    return {k: v for k, v in base.items() if v is not ...}


def write_array(tmp_path, records, name="Video-R1-260k.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records, ensure_ascii=False, indent=2))
    return path


def test_real_free_form_records(samples):
    ok, errors = read(samples / "video-r1" / "Video-R1-Videos.json")
    assert len(ok) == 9 and errors == []
    assert {(s.task, s.answer_type, s.modality, s.split) for s in ok} == {("open", "text", "video", "train")}
    first = ok[0]
    assert first.question == "Is the playground located indoors?" and first.answer == "No."
    assert first.video == "LLaVA-Video-178K/academic_source/NextQA/1021/4747636840.mp4"  # "./" removed
    assert first.options == [] and first.span is None
    assert first.meta_dict == {
        "problem_id": 168546,
        "problem_type": "free-form",
        "origin": "Video-R1-Videos.json#0",
        "data_source": "LLaVA-Video-178K/0_30_s_academic_v0_1",
    }
    assert ok[8].video == "LLaVA-Video-178K/academic_source/Charades/VS2RI.mp4"
    again, _ = read(samples / "video-r1" / "Video-R1-Videos.json")
    assert [s.id for s in ok] == [s.id for s in again] and len({s.id for s in ok}) == 9


def test_real_cot_card_example(samples):
    ok, errors = read(samples / "video-r1" / "Video-R1-COT-165k.card-example.json")
    assert errors == [] and len(ok) == 1
    mc = ok[0]
    assert (mc.task, mc.answer_type, mc.answer) == ("mcq", "letter", "A")
    assert mc.options == [
        "A YouTube subscription notification",
        "A military command",
        "A warning message",
        "A weather update",
    ]
    assert mc.question == "What appears on the screen in Russian during the missile's ascent?"
    assert mc.video == "LLaVA-Video-178K/liwei_youtube_videos/videos/youtube_video_2024/ytb_7nRmsEw7nsE.mp4"
    meta = mc.meta_dict
    assert meta["process"].startswith("<think>Let me think") and meta["process"].endswith("</think>")
    assert meta["problem_id"] == 2 and meta["problem_type"] == "multiple choice"


def test_real_eval_format_regression_and_mc(samples):
    """The Video-R1-eval copy of VSI-Bench has the same fields: regression (options null) and MC rows."""
    ok, errors = read(samples / "vsi-bench" / "video-r1-eval-format_EasyVideoR1" / "vsibench.json")
    assert errors == [] and len(ok) == 10
    reg = [s for s in ok if s.task == "open"]
    assert [s.answer for s in reg] == ["4", "62", "26.4", "2.9"] and {s.answer_type for s in reg} == {"regression"}
    assert reg[0].video == "arkitscenes/41069025.mp4" and reg[0].options == []
    direction = next(s for s in ok if s.meta_dict["problem_id"] == 1100)
    assert direction.options == ["back", "right", "left"] and direction.answer == "C"


def test_constructed_records_of_every_type(tmp_path):
    path = write_array(
        tmp_path,
        [
            record(
                problem_type="multiple choice",
                options=["A. red", "B. blue", "C. green"],
                solution="<answer>B</answer>",
            ),
            record(
                problem_type="multiple choice",
                data_type="image",
                options=["A) 3", "B) 4"],
                solution="<answer>A</answer>",
                path="./Math/geo/1.png",
                data_source="Geometry3K",
            ),
            record(problem_type="multiple choice", options=["(A) left", "(B) right"], solution="<answer>(B)</answer>"),
            # The CLEVR-Math image record as quoted (from Video-R1) in a third-party script.
            {
                "problem_id": 1,
                "problem": "Subtract 0 cyan cubes. How many objects are left?",
                "data_type": "image",
                "problem_type": "numerical",
                "options": [],
                "process": "",
                "solution": "<answer>5</answer>",
                "path": "./Math/CLEVR-Math/images/CLEVR_train_036427.png",
                "data_source": "CLEVR-Math",
            },
            record(problem_type="OCR", data_type="image", solution="<answer>STOP AHEAD</answer>", path="./OCR/a.png"),
            record(problem_type="free-form", solution="<answer>He waves.\nThen he leaves.</answer>"),
            record(problem_type="regression", solution="<answer>1,250.5</answer>", options=None),
            record(problem_type="free-form", solution="  A dog runs.  "),  # no <answer> tags
            record(problem_type="numerical", options=["A. 1", "B. 2"], solution="<answer>2</answer>"),
        ],
    )
    ok, errors = read(path)
    assert errors == [] and len(ok) == 9
    mc, mc_img, mc_paren, num, ocr, free, reg, untagged, num_opts = ok
    assert (mc.task, mc.options, mc.answer, mc.modality) == ("mcq", ["red", "blue", "green"], "B", "video")
    assert (mc_img.modality, mc_img.options, mc_img.answer) == ("image", ["3", "4"], "A")
    assert mc_img.video == "Math/geo/1.png" and mc_img.meta_dict["data_source"] == "Geometry3K"
    assert (mc_paren.options, mc_paren.answer) == (["left", "right"], "B")
    assert (num.task, num.answer_type, num.answer, num.modality) == ("open", "number", "5", "image")
    assert num.video == "Math/CLEVR-Math/images/CLEVR_train_036427.png" and num.span is None
    assert "process" not in num.meta_dict and num.meta_dict["data_source"] == "CLEVR-Math"
    assert (ocr.task, ocr.answer_type, ocr.answer, ocr.modality) == ("open", "ocr", "STOP AHEAD", "image")
    assert (free.answer_type, free.answer) == ("text", "He waves.\nThen he leaves.")
    assert (reg.answer_type, reg.answer, reg.options) == ("regression", "1,250.5", [])
    assert untagged.answer == "A dog runs." and untagged.meta_dict["answer_tag"] is False
    assert "answer_tag" not in free.meta_dict
    assert num_opts.options == [] and num_opts.meta_dict["options"] == ["A. 1", "B. 2"]
    assert len({s.id for s in ok}) == 9


def test_jsonl_file(tmp_path):
    path = tmp_path / "video_r1_train.jsonl"
    good = json.dumps(record(problem_type="OCR", solution="<answer>EXIT</answer>")).encode()
    path.write_bytes(good + b"\n" + b"{not json\n" + b'{"problem": "caf\xe9"}\n' + b"[1, 2]\n\n" + good + b"\n")
    ok, errors = read(path)
    assert [(e.location, e.reason) for e in errors] == [
        ("video_r1_train.jsonl:2", "bad_json"),
        ("video_r1_train.jsonl:3", "non_utf8"),
        ("video_r1_train.jsonl:4", "bad_json"),
    ]
    assert [s.meta_dict["origin"] for s in ok] == ["video_r1_train.jsonl:1", "video_r1_train.jsonl:6"]
    assert ok[0].answer == "EXIT" and ok[0].id == ok[1].id


def test_malformed_records(tmp_path):
    mc = {"problem_type": "multiple choice", "solution": "<answer>A</answer>"}
    path = write_array(
        tmp_path,
        [
            record(),  # 0 ok
            record(problem_type="true/false"),  # 1
            record(**{**mc, "options": []}),  # 2
            record(**{**mc, "options": ["A. x", "A. y"]}),  # 3
            record(**{**mc, "options": ["B. x", "A. y"]}),  # 4 ok: reordered (order_options), answer A = "y"
            record(**{**mc, "options": ["A. x", "C. y"]}),  # 5
            record(**{**mc, "options": ["x", "y"]}),  # 6
            record(**{**mc, "options": ["A. x", "B. y"], "solution": "<answer>C</answer>"}),  # 7
            record(**{**mc, "options": ["A. x", "B. y"], "solution": "<answer>yes</answer>"}),  # 8
            record(**{**mc, "options": ["A. x", "B. "]}),  # 9
            record(solution="<answer>  </answer>"),  # 10
            record(path=...),  # 11
            record(problem_type="numerical", solution="<answer>five</answer>"),  # 12
            record(data_type="audio"),  # 13
            5,  # 14
            record(**{**mc, "options": "A. x"}),  # 15
            record(problem="  "),  # 16
            record(problem_type="regression", solution="<answer>about 3 m</answer>"),  # 17
        ],
    )
    ok, errors = read(path)
    assert {e.location: e.reason for e in errors} == {
        "Video-R1-260k.json#1": "bad_value",
        "Video-R1-260k.json#2": "missing_options",
        "Video-R1-260k.json#3": "duplicate_option_letter",
        "Video-R1-260k.json#5": "bad_value",
        "Video-R1-260k.json#6": "bad_value",
        "Video-R1-260k.json#7": "unknown_option",
        "Video-R1-260k.json#8": "unknown_option",
        "Video-R1-260k.json#9": "bad_value",
        "Video-R1-260k.json#10": "missing_field",
        "Video-R1-260k.json#11": "missing_field",
        "Video-R1-260k.json#12": "bad_value",
        "Video-R1-260k.json#13": "bad_value",
        "Video-R1-260k.json#14": "bad_json",
        "Video-R1-260k.json#15": "bad_value",
        "Video-R1-260k.json#16": "missing_field",
        "Video-R1-260k.json#17": "bad_value",
    }
    assert len(ok) == 2 and {e.source for e in errors} == {"video_r1"}
    assert (ok[1].options, ok[1].answer, ok[1].meta_dict["options_reordered"]) == (["y", "x"], "A", True)
    assert "true/false" in errors[0].detail


def test_non_utf8_record_and_broken_file(tmp_path):
    path = tmp_path / "Video-R1-260k.json"
    good = json.dumps(record()).encode()
    path.write_bytes(b"[" + good + b',{"problem": "caf\xe9", "path": "./a.mp4"}]')
    ok, errors = read(path)
    assert len(ok) == 1 and [(e.location, e.reason) for e in errors] == [("Video-R1-260k.json#1", "non_utf8")]
    path.write_bytes(b"[" + good + b",")
    ok, errors = read(path)
    assert ok == [] and [(e.location, e.reason) for e in errors] == [("Video-R1-260k.json", "bad_json")]
