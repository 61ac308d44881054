"""The one adapter of the derived Video-R1-eval format, on every benchmark copy in the samples."""

from __future__ import annotations

import json

import pytest

from mtvr_data.benchmarks.video_r1_eval import mvbench_task
from tests.benchmarks.conftest import DERIVED, meta, read


def test_mvbench_tasks_from_id_block_and_folder(samples):
    ok, _ = read("mvbench", samples / f"mvbench/{DERIVED}/mvbench.json")
    first = ok[0]  # problem_id 1, ./ssv2_video/166583.mp4, answer text "Piling something up" = C
    assert first.video == "ssv2_video/166583.mp4" and first.answer == "C" and first.options[2] == "Piling something up"
    assert [meta(s)["category"] for s in ok][:4] == [
        "action_antonym",
        "action_count",
        "action_localization",
        "action_prediction",
    ]
    assert meta(ok[2])["start"] == 0.0 and meta(ok[2])["end"] == 15.2


def test_mvbench_task_is_left_empty_when_folder_disagrees():
    assert mvbench_task(401, "sta/sta_video/RPY8D.mp4") == "action_localization"
    assert mvbench_task(401, "clevrer/video_validation/video_1.mp4") == ""
    assert mvbench_task(4001, "FunQA_test/x.mp4") == "" and mvbench_task("1", "ssv2_video/1.mp4") == ""


def test_vsi_bench_regression_and_choice_rows(samples):
    ok, _ = read("vsi-bench", samples / f"vsi-bench/{DERIVED}/vsibench.json")
    counting = ok[0]  # object_counting, "How many table(s) are in this room?", 4
    assert (counting.task, counting.answer_type, counting.answer) == ("open", "regression", "4")
    assert counting.video == "arkitscenes/41069025.mp4" and meta(counting)["category"] == "object_counting"
    hard = ok[4]
    assert hard.task == "mcq" and hard.answer == "A" and meta(hard)["category"] == "object_rel_direction_hard"


def test_mmvu_mlvu_videomme_videommmu_lvb_copies(samples):
    mmvu, _ = read("mmvu", samples / f"mmvu/{DERIVED}/mmvu-all.json")
    assert meta(mmvu[2])["category"] == "Materials Science" and mmvu[3].task == "open"
    assert mmvu[3].answer == "Dolly Zoom" and meta(mmvu[3])["youtube_id"] == "VkqytRr85ao"
    mlvu, _ = read("mlvu", samples / f"mlvu/{DERIVED}/mlvu.json")
    assert [meta(s)["category"] for s in mlvu][:3] == ["surveil", "sports", "order"] and len(mlvu[0].options) == 6
    mme, _ = read("video-mme", samples / f"video-mme/{DERIVED}/videomme.json")  # sniffed as derived
    assert meta(mme[1])["format"] == "video-r1-eval" and meta(mme[1])["category"] == "medium"
    mmmu, _ = read("video-mmmu", samples / f"videommmu/{DERIVED}/videommmu.json")
    assert [meta(s)["category"] for s in mmmu] == ["", "", ""] and mmmu[1].answer_type == "number"
    lvb, _ = read("longvideobench", samples / f"longvideobench/{DERIVED}/longvideobench.json")
    assert lvb[0].answer == "B" and meta(lvb[0])["category"] == ""


def test_grounding_copy_is_refused(samples):
    ok, errors = read(
        "longvideo-reason", samples / f"charades_sta/{DERIVED}/charades_sta.json", format="video-r1-eval"
    )
    assert ok == [] and {e.reason for e in errors} == {"bad_value"} and "re-quantized" in errors[0].detail
    with pytest.raises(ValueError, match="no Video-R1-eval reading"):
        read("charades-sta", samples / f"charades_sta/{DERIVED}/charades_sta.json", format="video-r1-eval")


def test_malformed_derived_rows(tmp_path):
    row = {
        "problem_id": 1,
        "problem": "q?",
        "data_type": "video",
        "problem_type": "multiple choice",
        "options": ["A. x", "B. y"],
        "solution": "<answer>B</answer>",
        "path": "./ssv2_video/1.mp4",
    }
    path = tmp_path / "mvbench.json"
    path.write_text(
        json.dumps(
            [
                row,
                {**row, "solution": "<answer>D</answer>"},
                {**row, "options": ["A. x", "A. y"]},
                {**row, "problem_type": "ranking"},
                {k: v for k, v in row.items() if k != "path"},
            ]
        )
    )
    ok, errors = read("mvbench", path)
    assert len(ok) == 1 and meta(ok[0])["category"] == "action_antonym"
    assert [e.reason for e in errors] == ["unknown_option", "duplicate_option_letter", "bad_value", "missing_field"]
    path.write_text("[{")
    ok, errors = read("mvbench", path)
    assert ok == [] and [e.reason for e in errors] == ["bad_json"]
