"""Beam reads a composite transform's `expand` annotations as type hints: input `PCollection[T]` / `PBegin`, output
`PCollection[T]` / `PDone` / `None`. Anything else (a tuple or a `StageOutput` of PCollections) is dropped with a
logged "This output type hint will be ignored ..." at every application (~170 lines in `mtvr demo`), which buries
real warnings. A multi-output composite states its types as `beam.PTransform[In, Out]` instead."""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import pkgutil
import types
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.typehints.decorators import IOTypeHints

import pipelines
from pipelines.accounting import WriteRejected, read_accounting
from pipelines.config import load_config
from pipelines.transforms import PrepareSamples

IGNORED = "type hint will be ignored"


def _ignored_hints(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if IGNORED in r.getMessage()]


def _composites() -> list[type[beam.PTransform]]:
    """Every PTransform subclass defined in a `pipelines` module."""
    found = []
    for info in pkgutil.iter_modules(pipelines.__path__, "pipelines."):
        module = importlib.import_module(info.name)
        found += [
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, beam.PTransform) and cls.__module__ == module.__name__ and "expand" in vars(cls)
        ]
    return found


def test_the_sweep_finds_the_composites() -> None:
    names = {cls.__name__ for cls in _composites()}
    assert {"PrepareSamples", "WriteRejected", "Grade", "Teach", "CachedInference", "WriteBalancedShards"} <= names


@pytest.mark.parametrize("cls", _composites(), ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_expand_annotations_are_hints_beam_keeps(cls: type[beam.PTransform], caplog) -> None:
    """What `PTransform.default_type_hints` does at each application, without building the transform: Beam's hints
    from the bound `expand` (so `self` is not an input), then `strip_pcoll`, which logs the hints it drops."""
    bound = types.MethodType(cls.expand, cls.__new__(cls))
    with caplog.at_level(logging.WARNING):
        hints = IOTypeHints.from_callable(bound)
        if hints is not None:
            hints.strip_pcoll()
    assert _ignored_hints(caplog) == []


def test_a_real_pipeline_logs_no_ignored_type_hint(demo_corpus: Path, tmp_path: Path, caplog) -> None:
    """PrepareSamples (read, probe, dedup, contamination) and WriteRejected on the demo corpus, DirectRunner."""
    manifest = json.loads((demo_corpus / "manifest.json").read_text())
    videos = str(demo_corpus / "videos")
    sources = [
        {"source": e["source"], "annotations": str(demo_corpus / e["annotations"]), "videos": videos}
        for e in manifest["sources"]
    ]
    config_path = tmp_path / "build.yaml"
    config_path.write_text(json.dumps({"out": "out", "sources": sources}), encoding="utf-8")  # JSON is YAML
    config = load_config(config_path)
    out = tmp_path / "prepared"
    with caplog.at_level(logging.WARNING):
        p = beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"]))
        prepared = p | PrepareSamples(config)
        _ = (prepared.dead_letters, prepared.counts) | WriteRejected(str(out))
        p.run().wait_until_finish()
    assert read_accounting(out)["stages"], "the pipeline ran and wrote its accounting"
    assert _ignored_hints(caplog) == []
