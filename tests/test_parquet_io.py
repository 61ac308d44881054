"""Records round-trip through Parquet (pyarrow and `datasets`) and bad files are refused by column."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtvr_data.parquet_io import SchemaMismatch, read_parquet, read_table, to_table, write_parquet
from mtvr_data.schema import COT_SCHEMA, Clip, CotRow, Message, RlRow, Sample, SampleError, ToolCall, sample_id


def make_sample(i: int = 0, **kw) -> Sample:
    base = dict(
        source="charades_sta",
        task="tg",
        modality="video",
        video=f"v{i}.mp4",
        question=f"person opens door {i}",
        answer="",
        answer_type="span",
        span=[1.5, 4.25],
        windows=[[1.5, 4.25]],
        duration=30.0,
        fps=25.0,
        width=320,
        height=240,
        meta='{"origin": "x.txt:1"}',
    )
    base.update(kw)
    return Sample(
        id=sample_id(base["source"], base["video"], base["question"], [], base["answer"], base["span"]), **base
    )


def samples() -> list[Sample]:
    return [
        make_sample(0),
        make_sample(1, task="mcq", answer="B", answer_type="letter", options=["red", "blue"], span=None, windows=[]),
        make_sample(
            2,
            modality="image",
            task="open",
            answer="3",
            answer_type="number",
            span=None,
            windows=[],
            duration=None,
            fps=None,
        ),
        make_sample(3, task="gqa", answer="A", options=["x", "y"], windows=[[1.5, 4.25], [6.0, 8.0]]),
    ]


def test_samples_roundtrip_pyarrow(tmp_path):
    path = write_parquet(tmp_path / "s.parquet", samples())
    assert read_parquet(path, "sample") == samples()
    assert pq.read_schema(path).names == [f.name for f in dataclasses.fields(Sample)]


def test_samples_roundtrip_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    from datasets import load_dataset

    path = write_parquet(tmp_path / "data" / "train.parquet", samples())
    ds = load_dataset("parquet", data_files={"train": str(path)}, split="train")
    assert [Sample.from_dict(row) for row in ds] == samples()


def cot_row() -> CotRow:
    msgs = [
        Message("system", "tools..."),
        Message("user", "This is a video with duration 30.0 seconds. When does the person open the door?"),
        Message(
            "assistant",
            "<think>look</think>",
            tool_calls=[ToolCall("get_video_clip_frame", '{"start_time": 1, "end_time": 5}')],
        ),
        Message("tool", "Video clip from 1.00 to 5.00 seconds.", clip=Clip(1.0, 5.0, [1.0, 1.5, 2.0])),
        Message("assistant", "<think>seen</think><answer>1.5 - 4.25 seconds</answer>"),
    ]
    return CotRow(
        sample=make_sample(0),
        messages=msgs,
        teacher="teacher-x",
        config_hash="abc",
        reward=2.5,
        num_tool_calls=1,
        answer_conditioned=True,
        tools=True,
    )


def test_cot_and_rl_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    from datasets import load_dataset

    rl = RlRow(
        sample=make_sample(1),
        num_rollouts=8,
        pass_rate=0.375,
        mean_reward=1.1,
        difficulty=0.625,
        bucket="medium",
        policy="tiny",
        tools=False,
    )
    cot_path = write_parquet(tmp_path / "cot.parquet", [cot_row()])
    rl_path = write_parquet(tmp_path / "rl.parquet", [rl])
    assert read_parquet(cot_path, "cot") == [cot_row()]
    assert read_parquet(rl_path, "rl") == [rl]
    ds = load_dataset("parquet", data_files=str(cot_path), split="train")
    assert ds[0]["messages"][3]["clip"] == {"start": 1.0, "end": 5.0, "frame_times": [1.0, 1.5, 2.0]}
    assert ds[0]["messages"][0]["clip"] is None


def test_errors_roundtrip(tmp_path):
    err = SampleError("nextgqa", "val.csv:7", "answer_not_in_options", "no option equals 'x'", "read", "raw,row")
    assert read_parquet(write_parquet(tmp_path / "e.parquet", [err]), "error") == [err]


def test_missing_column_is_named(tmp_path):
    table = to_table(samples()).drop_columns(["span"])
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(SchemaMismatch) as info:
        read_table(tmp_path / "bad.parquet", "sample")
    assert info.value.column == "span" and "missing" in str(info.value)


def test_wrong_type_is_named(tmp_path):
    table = to_table(samples())
    idx = table.schema.get_field_index("duration")
    table = table.set_column(idx, "duration", pa.array(["long"] * table.num_rows))
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(SchemaMismatch) as info:
        read_parquet(tmp_path / "bad.parquet", "sample")
    assert info.value.column == "duration" and "expected double" in str(info.value)


def test_null_in_required_column_is_named(tmp_path):
    table = to_table(samples())
    idx = table.schema.get_field_index("question")
    loose = table.schema.set(idx, pa.field("question", pa.string(), nullable=True))
    table = table.cast(loose).set_column(idx, pa.field("question", pa.string()), pa.array(["q", None, "q", "q"]))
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(SchemaMismatch) as info:
        read_parquet(tmp_path / "bad.parquet", "sample")
    assert info.value.column == "question" and "row 1" in str(info.value)


def test_extra_column_and_wrong_kind(tmp_path):
    path = write_parquet(tmp_path / "s.parquet", samples())
    with pytest.raises(SchemaMismatch) as info:
        read_parquet(path, "cot")
    assert info.value.column == "messages"
    rl_path = write_parquet(tmp_path / "rl.parquet", [RlRow(make_sample(0), 8, 0.5, 1.0, 0.5, "medium", "p", False)])
    with pytest.raises(SchemaMismatch) as info:
        read_parquet(rl_path, "sample")
    assert info.value.column == "num_rollouts"


def test_compatible_physical_types_are_cast(tmp_path):
    table = to_table(samples())
    idx = table.schema.get_field_index("width")
    table = table.set_column(idx, "width", table.column("width").cast(pa.int32()))
    idx = table.schema.get_field_index("question")
    table = table.set_column(idx, "question", table.column("question").cast(pa.large_string()))
    pq.write_table(table, tmp_path / "compat.parquet")
    assert read_parquet(tmp_path / "compat.parquet", "sample") == samples()


def test_not_a_parquet_file(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(SchemaMismatch, match="not a readable Parquet file"):
        read_parquet(bad, "sample")


def test_cot_schema_fields_are_the_sample_fields_plus_extras():
    names = COT_SCHEMA.names
    assert names[: len(dataclasses.fields(Sample))] == [f.name for f in dataclasses.fields(Sample)]
    assert {"messages", "teacher", "config_hash", "reward", "num_tool_calls", "answer_conditioned"} <= set(names)
