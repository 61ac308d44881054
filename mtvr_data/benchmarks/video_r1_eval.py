"""The derived "Video-R1-eval" format (EasyVideoR1 `eval/data/valid_data/*.json`): one adapter, any benchmark.

MVBench, MLVU and VSI-Bench exist here only in this re-packaging (no native file was found; FORMATS.md
sections 13, 15, 16), and VITAL's `data/{mmvu,videomme,videommmu,vsibench}` folders probably hold it too, so
every benchmark accepts it (`read_benchmark(name, path, format="video-r1-eval")`, or detected from the first
record). The record is Video-R1's (`problem, data_type, problem_type, options ["A. ..."], solution
"<answer>X</answer>", path`), so parsing is `adapters.video_r1.VideoR1`'s; this class adds the problem types
Video-R1 training data lacks ("open-ended", MMVU) and the category each benchmark's copy still carries:

| benchmark      | category (derived copy)                                   | confidence            |
|----------------|-----------------------------------------------------------|-----------------------|
| video-mme      | native `duration` kept in the row (short / medium / long) | as published          |
| vsi-bench      | `original_question_type` (object_counting, ...)           | as published          |
| mmvu           | the subject folder of `path` (`Materials_Science` -> "Materials Science") | path layout |
| mlvu           | the group in the file stem `test_<group>_<n>` (surveil, sports, order, ...) | path layout |
| mvbench        | the task: `(problem_id - 1) // 200` in the 20 tasks sorted by name, kept only when the   |
|                | video folder is that task's (STAR, CLEVRER, ...); else "" | INFERRED (see below)  |
| video-mmmu, longvideobench, longvideo-reason | "" (the copy keeps no track / group) |       |

MVBench: the copy has 3,586 of the 4,000 rows and its problem_ids keep gaps at the missing ones; each of
the ten sampled rows sits in the 200-id block of its task in alphabetical order, and its folder agrees.
Nothing upstream states this numbering, so a row whose folder disagrees gets category "" (counted as
`mvbench_task_unverified` in `meta`) rather than a guessed task.

Options whose letters are written out of order (18% of the LongVideo-Reason copy: CABD, BACD, ...) are put back
in letter order by `VideoR1`'s reading (`video_r1.order_options`, the native adapter's rule; `meta.options_reordered`),
and an option that is leaked generator text is `generator_text`.

"temporal grounding" rows (EasyVideoR1's Charades-STA copy) are refused (`bad_value`): their times are
re-quantized and must not be used as ground truth; read the native `charades_sta_test.txt` instead.
"""

from __future__ import annotations

import os
import re
from pathlib import PurePosixPath
from typing import Any

from mtvr_data.adapters.base import AdapterError, RawRecord
from mtvr_data.adapters.video_r1 import VideoR1
from mtvr_data.benchmarks.base import BenchmarkAdapter, youtube_id
from mtvr_data.schema import Sample

#: Problem types of the eval copies that Video-R1's training data does not use, as the Video-R1 type they mean.
PROBLEM_TYPE_ALIASES: dict[str, str] = {"open-ended": "free-form"}

#: MVBench's 20 tasks in name order, each with the first folder of its videos in the derived `path`.
MVBENCH_TASKS: tuple[tuple[str, str], ...] = (
    ("action_antonym", "ssv2_video"),
    ("action_count", "perception"),
    ("action_localization", "sta"),
    ("action_prediction", "star"),
    ("action_sequence", "star"),
    ("character_order", "perception"),
    ("counterfactual_inference", "clevrer"),
    ("egocentric_navigation", "vlnqa"),
    ("episodic_reasoning", "tvqa"),
    ("fine_grained_action", "Moments_in_Time_Raw"),
    ("fine_grained_pose", "nturgbd"),
    ("moving_attribute", "clevrer"),
    ("moving_count", "clevrer"),
    ("moving_direction", "clevrer"),
    ("object_existence", "clevrer"),
    ("object_interaction", "star"),
    ("object_shuffle", "perception"),
    ("scene_transition", "scene_qa"),
    ("state_change", "perception"),
    ("unexpected_action", "FunQA_test"),
)
MVBENCH_TASK_SIZE = 200
_MLVU_STEM = re.compile(r"^test_(.+)_\d+$")

#: Benchmarks whose derived copy may be read; the registry passes its own name.
DERIVED_BENCHMARKS = frozenset(
    {"video-mme", "video-mmmu", "mmvu", "mvbench", "mlvu", "vsi-bench", "longvideobench", "longvideo-reason"}
)


def mvbench_task(problem_id: Any, path: str) -> str:
    """The MVBench task of a derived row, or "" when the id block and the video folder disagree."""
    if isinstance(problem_id, bool) or not isinstance(problem_id, int) or problem_id < 1:
        return ""
    block = (problem_id - 1) // MVBENCH_TASK_SIZE
    if block >= len(MVBENCH_TASKS):
        return ""
    task, folder = MVBENCH_TASKS[block]
    return task if PurePosixPath(path).parts[:1] == (folder,) else ""


class VideoR1Eval(BenchmarkAdapter, VideoR1):
    """A benchmark's Video-R1-eval copy; `benchmark` names which one (source name and category rule)."""

    name = "video-r1-eval"
    description = "any benchmark's derived Video-R1-eval copy (EasyVideoR1 valid_data json)"

    def __init__(self, annotations: str | os.PathLike[str], *, benchmark: str, **options: Any) -> None:
        if benchmark not in DERIVED_BENCHMARKS:
            raise ValueError(
                f"no Video-R1-eval reading for benchmark {benchmark!r}; known: {', '.join(sorted(DERIVED_BENCHMARKS))}"
            )
        self.name = benchmark  # the samples' source is the benchmark, never "video-r1-eval"
        # Template questions (MVBench, MLVU, VSI-Bench ask one sentence of many videos) are not listed.
        self.list_questions = benchmark not in ("mvbench", "mlvu", "vsi-bench")
        self._current: dict[str, Any] = {}
        super().__init__(annotations, **options)

    def to_samples(self, record: RawRecord) -> list[Sample]:
        rec = record.value
        if isinstance(rec, dict):
            problem_type = str(rec.get("problem_type") or "").strip().lower()
            if problem_type == "temporal grounding":
                raise AdapterError(
                    "bad_value", "Video-R1-eval grounding rows carry re-quantized times; read the native file"
                )
            if problem_type in PROBLEM_TYPE_ALIASES:
                rec = {**rec, "problem_type": PROBLEM_TYPE_ALIASES[problem_type]}
                record = RawRecord(record.location, value=rec, raw=record.raw)
        self._current = rec if isinstance(rec, dict) else {}
        return list(super().to_samples(record))

    def make_sample(self, **fields: Any) -> Sample:
        """The base sample, keyed also by the copy's `problem_id` for MMVU, whose copy (like the native file) holds
        distinct questions that agree on everything else (problem_ids 967 and 968)."""
        if self.name == "mmvu" and self._current.get("problem_id") not in (None, ""):
            fields.setdefault("upstream_id", self._current["problem_id"])
        return super().make_sample(**fields)

    def extra_meta(self) -> dict[str, Any]:
        rec = self._current
        meta: dict[str, Any] = {"format": "video-r1-eval"}
        if rec.get("original_question_type") not in (None, ""):
            meta["original_question_type"] = rec["original_question_type"]
        ytid = youtube_id(rec.get("data_source")) or youtube_id(rec.get("url"))
        if ytid:
            meta["youtube_id"] = ytid
        for key in ("task_type", "domain", "sub_category", "question_id", "start", "end"):
            if rec.get(key) not in (None, ""):
                meta[key] = rec[key]
        if self.name == "mvbench" and not self._mvbench_category(rec):
            meta["mvbench_task_unverified"] = True
        return meta

    def _mvbench_category(self, rec: dict[str, Any]) -> str:
        return mvbench_task(rec.get("problem_id"), str(rec.get("path") or "").removeprefix("./"))

    def category(self, sample: Sample, meta: dict[str, Any]) -> str:
        rec = self._current
        path = PurePosixPath(sample.video)
        if self.name == "video-mme":
            return str(rec.get("duration") or "")
        if self.name == "vsi-bench":
            return str(rec.get("original_question_type") or "")
        if self.name == "mmvu":
            return path.parent.name.replace("_", " ") if len(path.parts) >= 2 else ""
        if self.name == "mlvu":
            match = _MLVU_STEM.match(path.stem)
            return match.group(1) if match else ""
        if self.name == "mvbench":
            return self._mvbench_category(rec)
        return ""

    def contamination_videos(self, sample: Sample) -> list[str]:
        """The video path, plus the YouTube id where the row names one; MMVU's `<subject>/<n>.mp4` is not an id."""
        ytid = sample.meta_dict.get("youtube_id")
        names = [] if self.name == "mmvu" else [sample.video]
        return names + ([ytid] if ytid else [])
