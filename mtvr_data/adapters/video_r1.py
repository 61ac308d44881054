"""Video-R1-260k (RL) and Video-R1-COT-165k (SFT): a JSON array of R1-style records (or JSONL of the same).

Each record has `problem_id`, `problem` (the question; options are NOT inlined), `data_type` ("video" |
"image"), `problem_type`, `options` (`["A. text", ...]`, `[]` when none), `solution` (`"<answer>X</answer>"`),
`path` (`./<Source>/...mp4|png`, relative to the `Video-R1-data/` root) and `data_source`; the CoT file adds
`process` (`"<think>...</think>"`). Image rows are kept as `modality="image"` (the path is in `video`).

problem_type decides the task and how the answer is scored:
"multiple choice" -> mcq/letter, "numerical" -> open/number, "OCR" -> open/ocr, "free-form" -> open/text,
"regression" -> open/regression; anything else is `bad_value`.

Decisions where the format leaves a choice:
- The answer is the text inside `<answer>...</answer>`. Without the tags the whole stripped solution is the
  answer, exactly as Video-R1's own reward reads its ground truth (`sol_match.group(1).strip() if sol_match
  else sol.strip()`); `meta["answer_tag"] = False` marks those rows. An empty answer is `missing_field`.
- Option prefixes "A. ", "A) " and "(A) " are removed (a third party reports "A)" in some image sources).
  `Sample` letters options by position, so options written out of letter order (the Video-R1-eval copy of
  LongVideo-Reason has CABD, BACD, ... in 18% of its rows) are put back in letter order exactly as
  `longvideo_reason` does (`order_options`, `meta["options_reordered"]`); the answer letter names the option
  as written, so it still holds. A repeated letter is `duplicate_option_letter`; a gap (A, B, D), an empty
  option or an option without a prefix is `bad_value`.
- An option that is the generator's leaked reasoning ("##### Cross-segment analysis:", "REASONS:",
  "**Key Reasoning**: ...") is `generator_text` (`check_generator_text`): the row's options are not four answers.
- A "numerical" or "regression" answer that is not a number (commas allowed, as Video-R1's `normalize_number`
  allows) is `bad_value`: upstream its reward is always 0, so the row cannot teach anything.
- Options given on a non-MC row are not options of the sample; they are kept in `meta["options"]`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from mtvr_data.adapters.base import (
    AdapterError,
    RawRecord,
    SourceAdapter,
    clean_text,
    file_suffix,
    iter_json_items,
    iter_jsonl,
    read_head,
    require,
)
from mtvr_data.adapters.registry import register
from mtvr_data.schema import OPTION_LETTERS, Sample

ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
#: An answer that names one option letter: "B", "(B)", "B.", "B)".
ANSWER_LETTER = re.compile(r"^\(?([A-Z])\)?[.)]?$")
#: A lettered option: "A. text", "A) text", "(A) text".
OPTION_PREFIX = re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])[.)])\s*(.*?)\s*$", re.DOTALL)

#: problem_type -> (task, answer_type).
PROBLEM_TYPES: dict[str, tuple[str, str]] = {
    "multiple choice": ("mcq", "letter"),
    "numerical": ("open", "number"),
    "ocr": ("open", "ocr"),
    "free-form": ("open", "text"),
    "regression": ("open", "regression"),
}


def answer_from_solution(solution: Any) -> tuple[str, bool]:
    """(answer text, whether it was inside `<answer>` tags); an empty answer is `missing_field`."""
    text = clean_text(str(solution))  # before the letter is read: "B\u200f" is B
    match = ANSWER_TAG.search(text)
    answer = (match.group(1) if match else text).strip()
    if not answer:
        raise AdapterError("missing_field", "the solution holds an empty answer")
    return answer, match is not None


def answer_letter(answer: str, n_options: int) -> str:
    """The option letter an answer names, if it is one of the first `n_options` letters, else `unknown_option`."""
    match = ANSWER_LETTER.match(answer.strip())
    if not match or match.group(1) not in OPTION_LETTERS[:n_options]:
        raise AdapterError(
            "unknown_option", f"answer {answer!r} is not one of the option letters A-{OPTION_LETTERS[n_options - 1]}"
        )
    return match.group(1)


#: An option that is a fragment of the question generator's reasoning rather than an answer: a markdown heading
#: ("##### Cross-segment analysis:"), an upper-case label alone ("REASONS:") or a bold label ("**Key Reasoning**:").
#: "#" inside a text ("Car #29") or single-asterisk italics ("*Forever Evil #6, 2014*") are real options.
GENERATOR_TEXT = re.compile(r"^(?:#{1,6}\s|\*\*[^*\n]+\*\*\s*:|[A-Z][A-Z ]{2,}:\s*$)")


def check_generator_text(options: list[str], answer: str | None = None) -> None:
    """`generator_text` when an option (letters by position) is leaked generator text; says if it is the answer."""
    for i, text in enumerate(options):
        if GENERATOR_TEXT.match(text.strip()):
            letter = OPTION_LETTERS[i]
            gold = " (and it is the gold answer)" if answer == letter else ""
            detail = f"option {letter} is generator text, not an answer{gold}: {text[:80]!r}"
            raise AdapterError("generator_text", detail)


def check_letters(letters: list[str]) -> None:
    """Letters of the options as written must be A, B, C, ... (a repeat is `duplicate_option_letter`)."""
    seen = [x for i, x in enumerate(letters) if x in letters[:i]]
    if seen:
        raise AdapterError("duplicate_option_letter", f"option letter {seen[0]} appears more than once")
    if "".join(letters) != OPTION_LETTERS[: len(letters)]:
        raise AdapterError("bad_value", f"option letters run {''.join(letters)}, not A, B, C, ...")


def order_options(lettered: list[tuple[str, str]]) -> tuple[list[str], bool]:
    """(option texts in letter order, whether the letters were written out of order) of (letter, text) pairs.

    The one reordering both `video_r1` (prefixed options) and `longvideo_reason` (inlined option lines) use:
    a repeated letter is `duplicate_option_letter`, a gap (A, B, D) or an option without text `bad_value`.
    """
    letters = [letter for letter, _ in lettered]
    if len(set(letters)) != len(letters):
        check_letters(letters)  # names the repeated letter
    check_letters(sorted(letters))  # then only a gap can be wrong
    ordered = sorted(lettered)
    empty = [letter for letter, text in ordered if not text]
    if empty:
        raise AdapterError("bad_value", f"option {empty[0]} has no text")
    return [text for _, text in ordered], ordered != lettered


def split_prefixes(options: list[Any]) -> list[tuple[str, str]]:
    """(letter, text) of each option "A. text" / "A) text" / "(A) text"; one without a prefix is `bad_value`."""
    out = []
    for i, option in enumerate(options):
        match = OPTION_PREFIX.match(clean_text(str(option)))
        if not match:
            raise AdapterError("bad_value", f"option {i} has no letter prefix: {option!r}")
        out.append((match.group(1) or match.group(2), match.group(3)))
    return out


def strip_prefixes(options: list[Any]) -> list[str]:
    """Option texts without their "A. " / "A) " / "(A) " prefixes, after checking the letters run A, B, ... in order
    (the strict reading; `order_options(split_prefixes(...))` reorders instead)."""
    lettered = split_prefixes(options)
    check_letters([letter for letter, _ in lettered])
    texts, _ = order_options(lettered)
    return texts


def is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


@register
class VideoR1(SourceAdapter):
    name = "video_r1"
    description = "Video-R1-260k / Video-R1-COT-165k (JSON array or JSONL; MC, numerical, OCR, free-form, regression)"

    def records(self) -> Iterator[RawRecord]:
        """Records of the JSON array (`file#index`) or, for `.jsonl` or a file not starting with "[", of JSONL."""
        if file_suffix(self.annotations).lower() == ".jsonl" or not self._is_array():
            yield from iter_jsonl(self.annotations)
            return
        for rec in iter_json_items(self.annotations):
            if rec.error is None:
                rec = RawRecord(rec.location, value=rec.value[1], raw=rec.raw)
            yield rec

    def _is_array(self) -> bool:
        return read_head(self.annotations).startswith(b"[")

    def to_samples(self, record: RawRecord) -> list[Sample]:
        rec = record.value
        if not isinstance(rec, dict):
            raise AdapterError("bad_json", f"record is a {type(rec).__name__}, not a JSON object")
        problem_type = str(require(rec, "problem_type")).strip()
        if problem_type.lower() not in PROBLEM_TYPES:
            raise AdapterError("bad_value", f"unknown problem_type {problem_type!r}")
        task, answer_type = PROBLEM_TYPES[problem_type.lower()]
        data_type = str(require(rec, "data_type")).strip().lower()
        if data_type not in ("video", "image"):
            raise AdapterError("bad_value", f"unknown data_type {data_type!r}")
        question = str(require(rec, "problem"))
        path = str(require(rec, "path")).strip()
        while path.startswith("./"):
            path = path[2:]
        answer, tagged = answer_from_solution(require(rec, "solution"))
        raw_options = rec.get("options") or []
        if not isinstance(raw_options, list):
            raise AdapterError("bad_value", f"options is not a list: {raw_options!r}")
        meta: dict[str, Any] = {
            "problem_id": rec.get("problem_id"),
            "problem_type": problem_type,
            "data_source": rec.get("data_source") or "",
        }
        if rec.get("process"):
            meta["process"] = rec["process"]
        if not tagged:
            meta["answer_tag"] = False
        options: list[str] = []
        if task == "mcq":
            if not raw_options:
                raise AdapterError("missing_options", "a multiple-choice record without options")
            options, reordered = order_options(split_prefixes(raw_options))
            if reordered:
                meta["options_reordered"] = True
            answer = answer_letter(answer, len(options))
            check_generator_text(options, answer)
        else:
            if raw_options:
                meta["options"] = raw_options
            if answer_type in ("number", "regression") and not is_number(answer):
                raise AdapterError("bad_value", f"{problem_type} answer is not a number: {answer!r}")
        return [
            self.make_sample(
                task=task,
                modality=data_type,
                video=path,
                question=question,
                options=options,
                answer=answer,
                answer_type=answer_type,
                meta=meta,
            )
        ]
