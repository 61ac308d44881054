"""Dedup by id never merges silently: every repeat of an id is a `duplicate_id` dead letter that says whether its
content is the kept row's or differs from it (two distinct records under one id), and in = kept + rejected."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import apache_beam as beam

from mtvr_data.schema import Sample, SampleError, sample_id
from pipelines.transforms import Dedup, differing_fields


def make(origin: str, question: str, answer: str = "A", *, sid: str | None = None, video: str = "v.mp4") -> Sample:
    options = ["walk", "run"]
    return Sample(
        id=sid or sample_id("src", video, question, options, answer, None),
        source="src",
        task="mcq",
        modality="video",
        video=video,
        question=question,
        options=options,
        answer=answer,
        meta=json.dumps({"origin": origin}),
    )


def run_dedup(samples: list[Sample], out: Path) -> tuple[list[Sample], list[SampleError]]:
    """Dedup on the DirectRunner; the kept samples and dead letters come back through two JSON-lines files."""
    with beam.Pipeline(runner="DirectRunner") as p:
        kept, dead = p | beam.Create(samples) | Dedup()
        for name, pcoll in (("kept", kept), ("dead", dead)):
            _ = (
                pcoll
                | f"Json{name}" >> beam.Map(lambda x: json.dumps(dataclasses.asdict(x)))
                | f"Write{name}" >> beam.io.WriteToText(str(out / name), shard_name_template="")
            )
    lines = {name: (out / name).read_text().splitlines() for name in ("kept", "dead")}
    return [Sample(**json.loads(x)) for x in lines["kept"]], [SampleError(**json.loads(x)) for x in lines["dead"]]


def test_repeated_id_with_different_content_is_a_dead_letter_saying_so(tmp_path):
    a = make("a.jsonl:1", "what does the boy do")
    copy = dataclasses.replace(a, meta=json.dumps({"origin": "a.jsonl:7"}))  # the same record read twice
    clash = make("a.jsonl:9", "what does the boy do", "B", sid=a.id)  # another record under the same id
    other = make("a.jsonl:3", "what does the girl do")
    samples = [a, copy, clash, other]
    kept, dead = run_dedup(samples, tmp_path)
    assert sorted(s.meta_dict["origin"] for s in kept) == ["a.jsonl:1", "a.jsonl:3"]
    assert len(samples) == len(kept) + len(dead)  # in = kept + rejected
    by_origin = {e.location: e for e in dead}
    assert sorted(by_origin) == ["a.jsonl:7", "a.jsonl:9"]
    assert {e.reason for e in dead} == {"duplicate_id"} and {e.stage for e in dead} == {"dedup"}
    assert by_origin["a.jsonl:9"].detail.endswith("content differs: answer")
    assert f"kept row {a.id} (a.jsonl:1)" in by_origin["a.jsonl:9"].detail
    assert by_origin["a.jsonl:7"].detail.endswith("identical content")
    assert by_origin["a.jsonl:9"].raw == a.id


def test_differing_fields_ignores_origin_and_names_meta_keys():
    a = make("x:1", "q")
    assert differing_fields(a, dataclasses.replace(a, meta=json.dumps({"origin": "x:2"}))) == []
    b = dataclasses.replace(a, question="q2", meta=json.dumps({"origin": "x:3", "qid": 9}))
    assert differing_fields(a, b) == ["question", "meta.qid"]
