"""Annotation files of the demo corpus, in each source's NATIVE published format, true of the demo videos.

The adapters are the part of the project that meets upstream files, so the demo must feed them the
upstream formats byte for byte (CRLF Charades CSV, inlined LongVideo-Reason options with their trailing
spaces, ActivityNet's leading-space sentences, ...), not a convenient re-packaging; see
tests/fixtures/samples/FORMATS.md. Every valid record states a fact of a script in `demo_media`, with times
taken from the `Event`s themselves so the two cannot drift apart.

A few records are malformed on purpose, one fault each, so that every error path of the pipeline runs in
every demo; each is returned as a `Malformed` with the reason code the adapter (or the probe stage, for
records naming broken or missing videos) emits and the location it reports (`file:line`, `file#key`,
`file#key[i]` for one sentence or chapter of a keyed record, `file#index` for a JSON array).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from mtvr_data import demo_media as m


@dataclass(frozen=True, slots=True)
class Malformed:
    source: str
    location: str
    reason: str
    detail: str


@dataclass(slots=True)
class SourceFiles:
    """What one writer produced: paths relative to the corpus root, and what the pipeline should make of them."""

    source: str
    annotations: str
    aux: list[str] = field(default_factory=list)
    expected_samples: int = 0
    malformed: list[Malformed] = field(default_factory=list)


def write_all(root: Path) -> list[SourceFiles]:
    """Write every source's files under root/annotations; the order is the manifest's."""
    return [
        write_charades(root),
        write_nextgqa(root),
        write_video_r1(root),
        write_activitynet(root),
        write_longvideo_reason(root),
        write_vidchapters(root),
    ]


def _span(event: m.Event) -> list[float]:
    return [event.start, event.end]


def _write(root: Path, rel: str, data: str | bytes) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return rel


def _stem(spec: m.VideoSpec) -> str:
    return Path(spec.file).stem


# --- Charades-STA ---------------------------------------------------------------------------------------------


def write_charades(root: Path) -> SourceFiles:
    """charades_sta_train.txt ("VID start end##sentence", LF) and Charades_v1_train.csv (lengths, CRLF)."""
    a, b, c = m.CHARADES_A, m.CHARADES_B, m.CHARADES_C
    (red, blue), (green, yellow), (magenta, cyan) = a.events, b.events, c.events
    good = [
        f"DM0A1 {red.start} {red.end}##a red square appears on the left.",
        f"DM0A1 {blue.start} {blue.end}##a blue square appears on the right.",
        f"DM0A1 {blue.start} {blue.end}##the blue square is shown on the right side.",  # upstream: repeated windows
        f"DM0B2 {green.start} {green.end}##a green square appears in the middle.",
        f"DM0B2 {yellow.start} {yellow.end}##a yellow square appears in the top left corner.",
        f"DM0C3 {magenta.start} {magenta.end}##a magenta square appears over the moving pattern.",
        # upstream quirk: the end overshoots the CSV length by < 2 s, and is clamped
        f"DM0C3 {cyan.start} {cyan.end + 1.0}##a cyan square appears at the end.",
    ]
    bad: list[tuple[bytes, str, str]] = [
        (f"DM0A1 {red.start} {red.end} a red square appears on the left.".encode(), "bad_line", 'no "##"'),
        (
            f"DM0B2 {green.end} {green.start}##a green square appears in the middle.".encode(),
            "end_not_after_start",
            "start and end swapped",
        ),
        (
            f"DM0A1 {red.start} {red.end}##a red square appears on the ".encode() + b"\xff\xfe left.",
            "non_utf8",
            "bytes 0xff 0xfe in the sentence",
        ),
        (b"DM0C3 4.0 ten##a magenta square appears.", "bad_value", "end time is not a number"),
        (
            f"DM0B2 {yellow.start} 45.0##a yellow square appears in the top left corner.".encode(),
            "span_outside_video",
            "ends 15 s after the 30.03 s video",
        ),
        (b"broken_empty 0.0 5.0##a person opens a door.", "video_empty", "broken_empty.mp4 has 0 bytes"),
        (b"ZZ9ZZ 1.0 4.0##a person closes a door.", "video_missing", f"{m.MISSING_VIDEO} does not exist"),
    ]
    name = "charades_sta_train.txt"
    lines = [g.encode() for g in good] + [raw for raw, _, _ in bad]
    malformed = [
        Malformed("charades_sta", f"{name}:{len(good) + i + 1}", reason, detail)
        for i, (_, reason, detail) in enumerate(bad)
    ]
    rel = _write(root, f"annotations/charades_sta/{name}", b"".join(line + b"\n" for line in lines))

    rows = [
        ("DM0A1", "A person watches coloured squares appear on a dark screen.", a, [good[0], good[1]]),
        ("DM0B2", "A green square appears, then a yellow one, while a grey square slides by.", b, [good[3], good[4]]),
        ("DM0C3", "Squares appear over a moving test pattern.", c, [good[5], good[6]]),
        ("broken_empty", "A person opens a door.", None, ["broken_empty 0.0 5.0##a person opens a door."]),
        ("ZZ9ZZ", "A person closes a door.", None, ["ZZ9ZZ 1.0 4.0##a person closes a door."]),
    ]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(
        [
            "id",
            "subject",
            "scene",
            "quality",
            "relevance",
            "verified",
            "script",
            "objects",
            "descriptions",
            "actions",
            "length",
        ]
    )
    for vid, script, spec, lines_of in rows:
        length = spec.true_duration if spec is not None else 10.0
        descriptions = ";".join(line.split("##", 1)[1].capitalize() for line in lines_of)
        writer.writerow(
            [vid, "MTVR", "Studio", 7, 7, "Yes", script, "square;screen", descriptions, "", f"{length:.2f}"]
        )
    csv_rel = _write(root, "annotations/charades_sta/Charades_v1_train.csv", buf.getvalue())
    return SourceFiles("charades_sta", rel, [csv_rel], expected_samples=len(good), malformed=malformed)


# --- NExT-GQA -------------------------------------------------------------------------------------------------


def write_nextgqa(root: Path) -> SourceFiles:
    """train.csv (answer = option text) and gsub_train.json (windows in seconds per video and qid)."""
    a, b = m.NEXT_A, m.NEXT_B
    red, blue, green1, green2 = a.events
    yellow, cyan = b.events
    colours = ["red", "blue", "green", "yellow", "white"]
    # (spec, qid, type, question, answer, options, windows, malformed reason, detail)
    rows = [
        (
            a,
            0,
            "TN",
            "what appears after the red square disappears",
            "a blue square",
            ["a green circle", "a blue square", "a white triangle", "nothing", "a yellow star"],
            [_span(blue)],
            None,
            "",
        ),
        (
            a,
            1,
            "TP",
            "what appears before the blue square",
            "a red square",
            ["a green square", "a purple circle", "a red square", "a white line", "nothing"],
            [_span(red)],
            None,
            "",
        ),
        (
            a,
            2,
            "TC",
            "what colour is the square that appears two times",
            "green",
            colours,
            [_span(green1), _span(green2)],
            None,
            "",
        ),
        (
            a,
            3,
            "TC",
            "what colour is the last square",
            "green",
            colours,
            [[38.0, 55.0]],
            "span_outside_video",
            "gsub window [38.0, 55.0] ends 15 s after the 40 s video",
        ),
        (
            b,
            0,
            "TC",
            "what colour is the square at the beginning of the video",
            "yellow",
            ["cyan", "yellow", "red", "blue", "white"],
            [_span(yellow)],
            None,
            "",
        ),
        (
            b,
            1,
            "TN",
            "what colour is the square shown after the yellow one",
            "cyan",
            ["green", "magenta", "cyan", "yellow", "red"],
            [_span(cyan)],
            None,
            "",
        ),
        (
            b,
            2,
            "TC",
            "what colour is the square on the right",
            "purple",
            ["yellow", "cyan", "red", "green", "blue"],
            [_span(cyan)],
            "answer_not_in_options",
            "answer 'purple' is none of a0..a4",
        ),
    ]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        [
            "video_id",
            "frame_count",
            "width",
            "height",
            "question",
            "answer",
            "qid",
            "type",
            "a0",
            "a1",
            "a2",
            "a3",
            "a4",
        ]
    )
    gsub: dict[str, dict] = {}
    malformed = []
    for line, (spec, qid, qtype, question, answer, options, windows, reason, detail) in enumerate(rows, start=2):
        vid = _stem(spec)
        writer.writerow([vid, spec.num_frames, *spec.size, question, answer, qid, qtype, *options])
        entry = gsub.setdefault(vid, {"duration": round(spec.true_duration), "location": {}, "fps": float(spec.fps)})
        entry["location"][str(qid)] = windows
        if reason:
            malformed.append(Malformed("nextgqa", f"train.csv:{line}", reason, detail))
    rel = _write(root, "annotations/nextgqa/train.csv", buf.getvalue())
    gsub_rel = _write(root, "annotations/nextgqa/gsub_train.json", json.dumps(gsub))
    return SourceFiles("nextgqa", rel, [gsub_rel], expected_samples=len(rows) - len(malformed), malformed=malformed)


# --- Video-R1 -------------------------------------------------------------------------------------------------


def write_video_r1(root: Path) -> SourceFiles:
    """Video-R1-demo.json: a JSON array (indent 2) of R1 records; paths "./demo/..." under videos/."""

    def rec(
        pid: int, problem: str, data_type: str, problem_type: str, options: list[str], answer: str, path: str
    ) -> dict:
        return {
            "problem_id": pid,
            "problem": problem,
            "data_type": data_type,
            "problem_type": problem_type,
            "options": options,
            "solution": f"<answer>{answer}</answer>",
            "path": f"./{path}",
            "data_source": "MTVR-demo/synthetic",
        }

    colours = ["A. Red", "B. Blue", "C. Green", "D. Yellow"]
    blue = m.R1_MPEG4.events[0]
    records = [
        rec(
            1,
            "How many times does the red square appear in the video?",
            "video",
            "numerical",
            [],
            str(len(m.R1_FLASH.events)),
            m.R1_FLASH.file,
        ),
        rec(
            2,
            "What colour is the square that appears in the video?",
            "video",
            "multiple choice",
            colours,
            "B",
            m.R1_MPEG4.file,
        ),
        rec(
            3,
            "At what second does the blue square first appear?",
            "video",
            "regression",
            [],
            f"{blue.start}",
            m.R1_MPEG4.file,
        ),
        rec(
            4,
            "What happens in the video?",
            "video",
            "free-form",
            [],
            "A green square appears on the right and later disappears.",
            m.R1_VP8.file,
        ),
        rec(
            5,
            "In which corner of the frame does the yellow square appear?",
            "video",
            "multiple choice",
            ["A. Top left", "B. Top right", "C. Bottom left", "D. Bottom right"],
            "A",
            m.R1_AV1.file,
        ),
        rec(
            6,
            "How many red squares are in the image?",
            "image",
            "numerical",
            [],
            str(m.SQUARES_COUNT),
            m.SQUARES_IMAGE,
        ),
        rec(7, "What text is written in the image?", "image", "OCR", [], m.OCR_TEXT, m.OCR_IMAGE),
        rec(
            8,
            "What colour are the squares in the image?",
            "image",
            "multiple choice",
            ["A. Green", "B. Red", "C. Blue"],
            "B",
            m.SQUARES_IMAGE,
        ),
    ]
    bad = [
        (
            rec(
                9,
                "What colour is the square that appears in the video?",
                "video",
                "multiple choice",
                colours,
                "F",
                m.R1_MPEG4.file,
            ),
            "unknown_option",
            "answer F with options A-D",
        ),
        (
            rec(
                10,
                "What colour is the square that appears in the video?",
                "video",
                "multiple choice",
                [],
                "B",
                m.R1_MPEG4.file,
            ),
            "missing_options",
            "multiple choice with options []",
        ),
        (
            {
                k: v
                for k, v in rec(
                    11, "How many times does the red square appear?", "video", "numerical", [], "3", m.R1_FLASH.file
                ).items()
                if k != "solution"
            },
            "missing_field",
            "no 'solution'",
        ),
        (
            rec(
                12,
                "What happens in the video?",
                "video",
                "free-form",
                [],
                "A red square appears.",
                "broken_truncated.mp4",
            ),
            "video_truncated",
            "broken_truncated.mp4 lacks its moov atom",
        ),
    ]
    name = "Video-R1-demo.json"
    malformed = [
        Malformed("video_r1", f"{name}#{len(records) + i}", reason, detail)
        for i, (_, reason, detail) in enumerate(bad)
    ]
    data = records + [r for r, _, _ in bad]
    rel = _write(root, f"annotations/video_r1/{name}", json.dumps(data, indent=2) + "\n")
    return SourceFiles("video_r1", rel, expected_samples=len(records), malformed=malformed)


# --- ActivityNet Captions -------------------------------------------------------------------------------------


def write_activitynet(root: Path) -> SourceFiles:
    """train.json: {"v_<id>": {duration, timestamps, sentences}}, one line, sentences after the first with a space."""
    vfr, b = m.ANET_VFR, m.ANET_B
    red, green, blue = vfr.events
    white, orange, purple = b.events
    teal = b.scenes[0]
    data = {
        _stem(vfr): {
            "duration": round(vfr.true_duration, 2),
            "timestamps": [_span(red), _span(green), _span(blue)],
            "sentences": [
                "A red square appears on the left of a dark screen.",
                " A green square appears in the middle.",
                " A blue square appears on the right.",
            ],
        },
        _stem(b): {
            "duration": round(b.true_duration, 2),
            "timestamps": [
                _span(white),
                _span(orange),
                _span(purple),
                [teal.start, teal.end + 0.5],
                [50.0, 44.0],
                [58.0, 70.0],
            ],
            "sentences": [
                "A white square is shown on the left.",
                " An orange square appears on the right.",
                " A purple square appears in the middle while the orange one is still visible.",
                " The background turns dark teal.",  # end overshoots by 0.5 s: clamped
                " The purple square disappears.",
                " The screen goes dark.",
            ],
        },
    }
    key = _stem(b)
    malformed = [
        Malformed("activitynet_captions", f"train.json#{key}[4]", "end_not_after_start", "span [50.0, 44.0]"),
        Malformed(
            "activitynet_captions",
            f"train.json#{key}[5]",
            "span_outside_video",
            "span [58.0, 70.0] ends 10 s after the 60 s video",
        ),
    ]
    rel = _write(root, "annotations/activitynet/train.json", json.dumps(data))
    return SourceFiles("activitynet_captions", rel, expected_samples=7, malformed=malformed)


# --- LongVideo-Reason -----------------------------------------------------------------------------------------


def _inline(question: str, options: list[str], *, letters: str = "ABCDEFGH", sep: str = "  \n") -> str:
    """LongVideo-Reason's problem text: the question, then "A. text  " lines, ending with a newline."""
    return question + sep + "".join(f"{letter}. {text}{sep}" for letter, text in zip(letters, options, strict=False))


def write_longvideo_reason(root: Path) -> SourceFiles:
    """train.jsonl on the two longest videos; options inlined in `problem`, answer "<answer>X</answer>"."""
    a, b = m.LONG_A, m.LONG_B

    def rec(pid: int, problem: str, ptype: str, reasoning: str, spec: m.VideoSpec, answer: str) -> str:
        value = {
            "problem_id": pid,
            "problem": problem,
            "data_type": "video",
            "problem_type": ptype,
            "reasoning": reasoning,
            "videos": spec.file,
            "answer": f"<answer>{answer}</answer>",
        }
        return json.dumps(value, ensure_ascii=False)

    order = [
        "yellow, red, cyan, white",
        "red, yellow, white, cyan",
        "red, white, yellow, cyan",
        "cyan, white, yellow, red",
    ]
    backgrounds = ["Blue", "Green", "Purple", "Brown"]
    lines = [
        rec(
            0,
            _inline("In which order do the coloured squares appear in the video?", order),
            "temporal",
            "The video shows four squares one after another. A red square appears first, around 0:20, on a blue "
            "background. A yellow square follows at 1:20, a white square at 2:30 and a cyan square at 3:20. So the "
            "order is red, yellow, white, cyan.",
            a,
            "B",
        ),
        rec(
            1,
            _inline("What is the background colour while the white square is visible?", backgrounds),
            "spatial",
            "The white square is visible from 2:30 to 2:50. The background changes every minute: blue, green, "
            "purple, then brown. Between 2:00 and 3:00 it is purple.",
            a,
            "C",
        ),
        # validation quirk: letters out of order, no trailing spaces
        rec(
            2,
            "Which square appears last in the video?\nB. The red square\nA. The green square\nC. The blue "
            "square\nD. The white square\n",
            "general",
            "Three squares appear: green near the start, red in the middle, blue near the end. The last one is "
            "the blue square.",
            b,
            "C",
        ),
        rec(
            3,
            _inline(
                "How long is the red square visible?",
                ["About 5 seconds", "About 20 seconds", "About 60 seconds", "About 2 minutes"],
            ),
            "temporal",
            "The red square appears at 1:00 and disappears at 1:20, so it is visible for about 20 seconds.",
            b,
            "B",
        ),
    ]
    bad = [
        (
            '{"problem_id": 4, "problem": "Which square appears first?  \\nA. Red  \\nB. Green',
            "bad_json",
            "the line is cut inside a string",
        ),
        (
            rec(
                5,
                _inline(
                    "Which square appears first in the video?",
                    ["The red square", "The green square", "The blue square", "The white square"],
                ),
                "temporal",
                "The green square appears first.",
                b,
                "E",
            ),
            "unknown_option",
            "answer E with options A-D",
        ),
        (
            rec(6, "What colour is the first square in the video?", "temporal", "It is red.", a, "A"),
            "missing_options",
            "no option lines in the problem",
        ),
    ]
    name = "train.jsonl"
    malformed = [
        Malformed("longvideo_reason", f"{name}:{len(lines) + i + 1}", reason, detail)
        for i, (_, reason, detail) in enumerate(bad)
    ]
    text = "".join(line + "\n" for line in lines + [raw for raw, _, _ in bad])
    rel = _write(root, f"annotations/longvideo_reason/{name}", text)
    return SourceFiles("longvideo_reason", rel, expected_samples=len(lines), malformed=malformed)


# --- VidChapters ----------------------------------------------------------------------------------------------


def write_vidchapters(root: Path) -> SourceFiles:
    """chapters_train.json: {vid: {duration, title, description, channel_id, view_count, chapters{"<s>": label}}}."""
    spec = m.CHAPTERS_A
    labels = [
        "Introduction on a dark blue background",
        "Green scene with a white square",
        "Red scene with a yellow square",
        "Grey outro",
    ]
    chapters = {str(int(scene.start)): label for scene, label in zip(spec.scenes, labels, strict=True)}

    def entry(duration: float | None, title: str, chapter_map: dict[str, str]) -> dict:
        value: dict = {"duration": duration} if duration is not None else {}
        value.update(
            {
                "title": title,
                "description": "A synthetic video of the MTVR demo corpus.",
                "channel_id": "UCmtvrDemoChannel00000",
                "view_count": 0,
                "chapters": chapter_map,
            }
        )
        return value

    data = {
        _stem(spec): entry(round(spec.true_duration, 3), "Four coloured scenes (MTVR demo)", chapters),
        "mtvrChapt02": entry(120.0, "Bad chapter time", {"0": "Intro", "1:30": "Part two"}),
        "mtvrChapt03": entry(None, "No duration", {"0": "Intro", "60": "Outro"}),
    }
    name = "chapters_train.json"
    malformed = [
        Malformed("vidchapters", f"{name}#mtvrChapt02", "bad_value", 'chapter time "1:30" is not whole seconds'),
        Malformed("vidchapters", f"{name}#mtvrChapt03", "missing_field", "no 'duration'"),
    ]
    rel = _write(root, f"annotations/vidchapters/{name}", json.dumps(data, indent=2) + "\n")
    return SourceFiles("vidchapters", rel, expected_samples=len(chapters), malformed=malformed)


# --- Sources outside the demo's mix: QVHighlights and NExT-QA ---------------------------------------------------
#
# Neither is in the paper's mixes, so the demo corpus (`write_all`) leaves them out and its builds stay the paper's
# sources. They are written on request (`write_extra`), into the same corpus, about the same videos, for builds
# that choose their own mix (`balance.mix: none` or a mapping; docs/settings.md).


def write_qvhighlights(root: Path) -> SourceFiles:
    """highlight_train_release.jsonl: one query per line, `relevant_windows` in whole seconds (moment_detr)."""
    a, b = m.CHARADES_A, m.CHARADES_B
    (red, blue), (green, _) = a.events, b.events

    def window(event: m.Event, spec: m.VideoSpec) -> list[int]:
        return [int(event.start), min(round(spec.true_duration), int(event.end + 0.999))]

    queries = [
        (0, "A red square shows up on the left side.", a, [window(red, a)]),
        (1, "A blue square shows up on the right side.", a, [window(blue, a)]),
        (2, "A green square sits in the middle of the screen.", b, [window(green, b)]),
    ]
    lines = [
        json.dumps(
            {
                "qid": qid,
                "query": query,
                "duration": round(spec.true_duration),
                "vid": _stem(spec),
                "relevant_windows": windows,
                "relevant_clip_ids": list(range(windows[0][0] // 2, windows[0][1] // 2)),
                "saliency_scores": [[2, 3, 2]] * (windows[0][1] // 2 - windows[0][0] // 2),
            }
        )
        for qid, query, spec, windows in queries
    ]
    rel = _write(root, "annotations/qvhighlights/highlight_train_release.jsonl", "".join(x + "\n" for x in lines))
    return SourceFiles("qvhighlights", rel, expected_samples=len(queries))


def write_nextqa(root: Path) -> SourceFiles:
    """train.csv of NExT-QA (answer = 0-based option index); no VidOR map, so videos are `<video>.mp4`."""
    a, b = m.NEXT_A, m.NEXT_B
    rows = [
        (a, 10, "TN", "which square comes right after the red one", 3, ["green", "yellow", "white", "blue", "none"]),
        (a, 11, "DC", "how many times does a green square appear", 1, ["one", "two", "three", "four", "five"]),
        (b, 10, "TP", "which square comes before the cyan one", 0, ["yellow", "red", "blue", "green", "white"]),
    ]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["video", "frame_count", "width", "height", "question", "answer", "qid", "type"] + [f"a{i}" for i in range(5)]
    )
    for spec, qid, qtype, question, answer, options in rows:
        writer.writerow([_stem(spec), spec.num_frames, *spec.size, question, answer, qid, qtype, *options])
    rel = _write(root, "annotations/nextqa/train.csv", buf.getvalue())
    return SourceFiles("nextqa", rel, expected_samples=len(rows))


def write_extra(root: Path) -> list[SourceFiles]:
    """The sources outside the paper's mixes (QVHighlights, NExT-QA), about the demo corpus's videos under `root`."""
    return [write_qvhighlights(root), write_nextqa(root)]


# --- practice questions: hundreds of generated, deterministic questions for the demo's warm-up SFT and its eval ---

#: Every PRACTICE_HELDOUT_EVERY-th generated question (by a stable hash of its text) is held out for evaluation.
PRACTICE_HELDOUT_EVERY = 6
_COLOURS = ("red", "blue", "green", "yellow", "magenta", "cyan", "white", "orange", "purple")
_ORDINALS = ("first", "second", "third", "fourth")
_GROUNDING = (
    "a {c} square appears.",
    "the {c} square is shown.",
    "a {c} square is visible on the screen.",
    "the {c} square appears on a dark screen.",
    "someone shows a {c} square.",
    "a {c} square can be seen.",
    "the {c} box appears in the frame.",
    "a {c} coloured square is on screen.",
    "the screen shows a {c} square.",
    "a {c} block appears.",
)
_WHICH = (
    "What colour is the {o} square that appears in the video?",
    "Which colour does the {o} square in the video have?",
    "The {o} square to appear is which colour?",
)
_HOW_MANY = (
    "How many squares appear in the video?",
    "How many coloured squares are shown in the video?",
)


#: The practice questions' own words, which the demo's warm-up gives whole tokens in its tiny tokenizer
#: (`model.tiny_checkpoint.build_tiny_checkpoint(words=...)`): colours, as options write them too, and the nouns.
PRACTICE_WORDS: tuple[str, ...] = (
    *_COLOURS,
    *(c.capitalize() for c in _COLOURS),
    *_ORDINALS,
    "square",
    "squares",
    "appears",
    "colour",
    "coloured",
    "shown",
)


@dataclass(slots=True)
class Practice:
    """The practice files: `train` (the warm-up SFT's sources) and `heldout` (the learning demo's eval sets)."""

    train: list[SourceFiles]
    heldout: list[SourceFiles]


def _heldout(text: str) -> bool:
    import zlib

    return zlib.crc32(text.encode("utf-8")) % PRACTICE_HELDOUT_EVERY == 0


def _colour(event: m.Event) -> str:
    return event.label.split()[0]


def practice_questions() -> tuple[list[tuple[str, m.VideoSpec, m.Event]], list[dict]]:
    """(grounding lines, multiple-choice records) over every scripted video; a pure function of the scripts.

    Grounding: one line per (event, phrasing) for videos whose colour is unique in that video, so the window is
    the one event. Multiple choice: the colour of the n-th square and the number of squares, with options in a
    few rotations (the letter of the right answer moves), so the model cannot learn one letter.
    """
    import random

    rng = random.Random(0)
    grounding: list[tuple[str, m.VideoSpec, m.Event]] = []
    mcq: list[dict] = []
    for spec in m.VIDEOS:
        colours = [_colour(e) for e in spec.events]
        if "/" not in spec.file:  # Charades-STA names videos by id, at the top of the video root
            for event in spec.events:
                if colours.count(_colour(event)) == 1:
                    grounding.extend((t.format(c=_colour(event)), spec, event) for t in _GROUNDING)
        for n, event in enumerate(spec.events[: len(_ORDINALS)]):
            for template in _WHICH:
                wrong = [c for c in _COLOURS if c != _colour(event)]
                for rotation in range(3):
                    options = [_colour(event), *rng.sample(wrong, 3)]
                    rng.shuffle(options)
                    question = template.format(o=_ORDINALS[n])
                    mcq.append(_mcq(spec, question, options, options.index(_colour(event)), rotation))
        count = len(spec.events)
        for template in _HOW_MANY:
            for rotation in range(3):
                options = sorted(
                    {str(count), *(str(x) for x in rng.sample([c for c in range(1, 7) if c != count], 3))}
                )
                rng.shuffle(options)
                mcq.append(_mcq(spec, template, options, options.index(str(count)), rotation))
    return grounding, mcq


def _mcq(spec: m.VideoSpec, question: str, options: list[str], right: int, rotation: int) -> dict:
    letters = "ABCD"
    return {
        "problem": question if rotation == 0 else f"{question} (Variant {rotation}.)",
        "data_type": "video",
        "problem_type": "multiple choice",
        "options": [f"{letters[i]}. {o.capitalize()}" for i, o in enumerate(options)],
        "solution": f"<answer>{letters[right]}</answer>",
        "path": f"./{spec.file}",
        "data_source": "MTVR-demo/practice",
    }


def write_practice(root: Path) -> Practice:
    """Write the practice questions under root/annotations/practice/{train,heldout}/ in the sources' native formats.

    Charades-STA lines (temporal grounding) and a Video-R1 JSON array (multiple choice), split by a stable hash of
    the question so the held-out part is never trained on.
    """
    grounding, mcq = practice_questions()
    parts: dict[str, list[SourceFiles]] = {}
    for part in ("train", "heldout"):
        held = part == "heldout"
        lines = [
            f"{_stem(spec)} {e.start} {e.end}##{text}"
            for text, spec, e in grounding
            if _heldout(f"{spec.file}|{text}") == held
        ]
        base = f"annotations/practice/{part}"
        rel = _write(root, f"{base}/charades_sta/charades_sta_train.txt", "".join(f"{x}\n" for x in lines))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow(["id", "length"])
        for spec in m.VIDEOS:
            if "/" not in spec.file:
                writer.writerow([_stem(spec), f"{spec.true_duration:.2f}"])
        csv_rel = _write(root, f"{base}/charades_sta/Charades_v1_train.csv", buf.getvalue())
        records = [
            {"problem_id": i, **r}
            for i, r in enumerate(mcq)
            if _heldout(f"{r['path']}|{r['problem']}|{r['options']}") == held
        ]
        r1_rel = _write(root, f"{base}/video_r1/Video-R1-practice.json", json.dumps(records, indent=2))
        parts[part] = [
            SourceFiles("charades_sta", rel, [csv_rel], expected_samples=len(lines)),
            SourceFiles("video_r1", r1_rel, expected_samples=len(records)),
        ]
    return Practice(train=parts["train"], heldout=parts["heldout"])
