"""The Beam transforms before any model work: read sources -> probe and validate -> dedup -> contamination.

Each transform is a thin wrapper over `mtvr_data` functions (adapters, `normalize.apply_probe`,
`mtvr_data.dedup`), so the Beam pipeline and `mtvr samples` make the same decisions. Every transform
returns a `StageOutput`: it unpacks as `(kept, dead_letters)`, and its `.counts` holds the stage's tallies
of elements in and kept, counted on the PCollections themselves. `pipelines.accounting` joins those tallies
with the dead letters into the table `in = kept + rejected`; a stage that lost an element silently breaks
that sum instead of hiding it.

Every rejection is a `SampleError` on the `dead_letters` tagged output with `stage` set (read, probe,
dedup, contamination), and is counted in Beam metrics under `mtvr.<stage>`: `in`, `kept`,
`rejected_<reason>` (`StageMetrics`).

    samples, dead_letters = pipeline | PrepareSamples(config)
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from mtvr_data.dedup import ContaminationList, load_contamination, normalise_question, video_key
from mtvr_data.normalize import MediaPathError, ProbeCache, apply_probe, resolve_media
from mtvr_data.schema import Sample, SampleError, validate_sample
from pipelines.config import BuildConfig, SourceConfig

log = logging.getLogger(__name__)

DEAD = "dead_letters"
COUNTS = "counts"
#: A tally of one stage: ((stage, source, "in" | "kept"), number of elements).
Tally = tuple[tuple[str, str, str], int]
#: Probe results a worker keeps; the cache is cleared past this, since grouping by video already makes
#: repeats rare and a worker may see millions of videos.
PROBE_CACHE_MAX = 100_000


class StageOutput(tuple):
    """`(kept, dead_letters)` of a stage, so callers unpack a pair; `.counts` is its PCollection of `Tally`."""

    counts: beam.PCollection

    def __new__(cls, kept: beam.PCollection, dead: beam.PCollection, counts: beam.PCollection) -> StageOutput:
        out = super().__new__(cls, (kept, dead))
        out.counts = counts
        return out

    @property
    def kept(self) -> beam.PCollection:
        return self[0]

    @property
    def dead_letters(self) -> beam.PCollection:
        return self[1]


class StageMetrics:
    """The Beam counters of one stage (namespace `mtvr.<stage>`): in, kept and rejected_<reason>.

    Counters are made on first use, on the worker, so the object pickles before it is used.
    """

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.namespace = f"mtvr.{stage}"
        self._counters: dict[str, Any] = {}

    def inc(self, name: str, n: int = 1) -> None:
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = Metrics.counter(self.namespace, name)
        counter.inc(n)

    def rejected(self, error: SampleError) -> beam.pvalue.TaggedOutput:
        """Count `error` and wrap it for the dead-letter output."""
        self.inc(f"rejected_{error.reason}")
        return beam.pvalue.TaggedOutput(DEAD, error)

    def __getstate__(self) -> dict[str, Any]:
        return {"stage": self.stage, "namespace": self.namespace, "_counters": {}}


class CountStage(beam.PTransform):
    """Samples -> `Tally` per source: how many elements `stage` took in (`kind="in"`) or kept."""

    def __init__(self, stage: str, kind: str) -> None:
        super().__init__(label=f"Count{stage.title()}{kind.title()}")
        self.stage, self.kind = stage, kind

    def expand(self, samples: beam.PCollection) -> beam.PCollection:
        stage, kind = self.stage, self.kind
        return samples | "Key" >> beam.Map(lambda s: ((stage, s.source, kind), 1)) | "Sum" >> beam.CombinePerKey(sum)


# --- read -----------------------------------------------------------------------------------------------------------


class _ReadSourceFn(beam.DoFn):
    """One annotation file -> its samples (the first `cap` in file order) and its read errors."""

    def setup(self) -> None:
        self.metrics = StageMetrics("read")

    def process(self, source: SourceConfig) -> Iterator[Any]:
        from mtvr_data.adapters import make_adapter

        kept = 0
        # Elements in, per the source each one names: an adapter such as `samples` passes on other sources' rows,
        # and the accounting adds up per source (in = kept + rejected), so "in" is counted where "kept" will be.
        seen: Counter[str] = Counter()
        try:
            adapter = make_adapter(source.source, source.annotations, **source.adapter_options())
            items: Iterable[Sample | SampleError] = adapter.read()
            # A cap reads the head of the file, like `head -n`: what follows the cap-th sample is not read.
            for item in items if source.cap != 0 else ():
                seen[item.source] += 1
                if isinstance(item, SampleError):
                    yield self.metrics.rejected(item)
                    continue
                kept += 1
                yield item
                if source.cap is not None and kept >= source.cap:
                    break
        except OSError as exc:  # the file went away or cannot be read: one dead letter for the whole file
            seen[source.source] += 1
            err = SampleError(source.source, source.annotations, "annotations_unreadable", str(exc), stage="read")
            yield self.metrics.rejected(err)
        self.metrics.inc("in", sum(seen.values()))
        self.metrics.inc("kept", kept)
        for name in sorted(seen) or [source.source]:
            yield beam.pvalue.TaggedOutput(COUNTS, (("read", name, "in"), seen[name]))


class ReadSources(beam.PTransform[beam.pvalue.PBegin, StageOutput]):
    """PBegin -> `StageOutput` of the config's sources read by their adapters (one element per file).

    One worker reads a whole file; `ProbeAndValidate`'s grouping by media is what spreads the samples
    over workers afterwards (a caller using ReadSources alone may want a `beam.Reshuffle`).
    """

    def __init__(self, config: BuildConfig) -> None:
        super().__init__()
        self.config = config

    def expand(self, pbegin: beam.pvalue.PBegin):
        out = (
            pbegin
            | "Sources" >> beam.Create(self.config.sources)
            | "Read" >> beam.ParDo(_ReadSourceFn()).with_outputs(DEAD, COUNTS, main="samples")
        )
        samples = out["samples"]
        kept = samples | CountStage("read", "kept")
        return StageOutput(samples, out[DEAD], (out[COUNTS], kept) | "Tallies" >> beam.Flatten())


# --- probe and validate ---------------------------------------------------------------------------------------------


class _ProbeFn(beam.DoFn):
    """(media path, samples of that media) -> probed, re-validated samples; one probe per video per worker.

    `fit_windows=False`: the windows are published ground truth (benchmarks), kept as they are (`apply_probe`)."""

    def __init__(self, fit_windows: bool = True) -> None:
        self.fit_windows = fit_windows

    def setup(self) -> None:
        self.cache = ProbeCache()
        self.metrics = StageMetrics("probe")

    def process(self, keyed: tuple[tuple[str, str], Iterable[Sample]]) -> Iterator[Any]:
        (path, modality), samples = keyed
        if len(self.cache.results) > PROBE_CACHE_MAX:
            self.cache.results.clear()
        if path not in self.cache.results:
            self.metrics.inc("probes")
        probe = self.cache.get(path, modality)  # a URL is staged to scratch disk by the probe
        for sample in samples:
            self.metrics.inc("in")
            # a copy: Beam inputs must not be mutated
            out = apply_probe(dataclasses.replace(sample), probe, fit_windows=self.fit_windows)
            if isinstance(out, Sample):
                problems = validate_sample(out, published_spans=not self.fit_windows)
                if problems:
                    out = SampleError.for_sample(out, "probe", problems[0], ", ".join(problems) + " (after probing)")
            if isinstance(out, SampleError):
                yield self.metrics.rejected(out)
            else:
                self.metrics.inc("kept")
                yield out


class _MediaKeyFn(beam.DoFn):
    """A sample -> ((media path, modality), sample), or a `path_outside_root` dead letter when its path leads out of
    its source's video root (`resolve_media` decides; nothing is opened, so such a file is never probed or read)."""

    def __init__(self, video_roots: dict[str, str | None]) -> None:
        self.video_roots = video_roots

    def setup(self) -> None:
        self.metrics = StageMetrics("probe")

    def process(self, s: Sample) -> Iterator[Any]:
        if s.source not in self.video_roots:
            raise KeyError(f"no video root configured for source {s.source!r}")
        try:
            path = resolve_media(self.video_roots[s.source], s.video)
        except MediaPathError as exc:
            self.metrics.inc("in")
            yield self.metrics.rejected(SampleError.for_sample(s, "probe", exc.reason, exc.detail))
            return
        yield (path, s.modality), s


class ProbeAndValidate(beam.PTransform[beam.PCollection, StageOutput]):
    """Samples -> `StageOutput` of samples with media facts from the file, spans checked against it.

    Samples are grouped by media file first, so each video is probed once in the whole pipeline (and
    the per-worker `ProbeCache` absorbs retries), however many questions it has. A sample whose media path
    leads outside its source's video root is a `path_outside_root` dead letter before anything is opened.
    """

    def __init__(self, video_roots: dict[str, str | None], *, fit_windows: bool = True) -> None:
        super().__init__()
        self.video_roots = dict(video_roots)
        self.fit_windows = fit_windows

    def expand(self, samples: beam.PCollection):
        keyed = samples | "ByMedia" >> beam.ParDo(_MediaKeyFn(self.video_roots)).with_outputs(DEAD, main="keyed")
        out = (
            keyed.keyed
            | "Group" >> beam.GroupByKey()
            | "Probe" >> beam.ParDo(_ProbeFn(self.fit_windows)).with_outputs(DEAD, main="samples")
        )
        dead = (keyed[DEAD], out[DEAD]) | "DeadLetters" >> beam.Flatten()
        counts = (samples | CountStage("probe", "in"), out["samples"] | CountStage("probe", "kept"))
        return StageOutput(out["samples"], dead, counts | "Tallies" >> beam.Flatten())


# --- dedup ----------------------------------------------------------------------------------------------------------


def _canonical(sample: Sample) -> str:
    return json.dumps(sample.to_dict(), sort_keys=True, ensure_ascii=False)


def _content(sample: Sample) -> dict[str, Any]:
    """What a sample says, without where it was read (`meta["origin"]`): two copies of one record are equal."""
    row = sample.to_dict()
    meta = sample.meta_dict
    meta.pop("origin", None)
    row["meta"] = meta
    return row


def differing_fields(a: Sample, b: Sample) -> list[str]:
    """The fields (and `meta.<key>`s) whose content differs between two samples, origin left aside."""
    ca, cb = _content(a), _content(b)
    fields = [k for k in ca if k != "meta" and ca[k] != cb[k]]
    meta_a, meta_b = ca["meta"], cb["meta"]
    fields += [f"meta.{k}" for k in sorted(set(meta_a) | set(meta_b)) if meta_a.get(k) != meta_b.get(k)]
    return fields


class _PickWinnerFn(beam.DoFn):
    """A group of samples sharing a key -> the one with the smallest id (ties: smallest content); the rest
    are dead letters with `reason`, never merged: the detail says whether a loser's content is identical to the
    winner's or differs (and in which fields), so two distinct records that share an id are visible as such.
    Dedup runs two of these in a row: the first counts the stage's `in` metric, the last its `kept`, so the
    stage's metrics add up like its table row."""

    def __init__(self, reason: str, what: str, *, first: bool, last: bool) -> None:
        self.reason, self.what, self.first, self.last = reason, what, first, last

    def setup(self) -> None:
        self.metrics = StageMetrics("dedup")

    def process(self, keyed: tuple[Any, Iterable[Sample]]) -> Iterator[Any]:
        group = sorted(keyed[1], key=lambda s: (s.id, _canonical(s)))
        winner = group[0]
        if self.first:
            self.metrics.inc("in", len(group))
        for loser in group[1:]:
            detail = f"{self.what} as kept row {winner.id} ({winner.meta_dict.get('origin', '')})"
            differ = differing_fields(loser, winner)
            detail += f"; content differs: {', '.join(differ)}" if differ else "; identical content"
            yield self.metrics.rejected(SampleError.for_sample(loser, "dedup", self.reason, detail))
        if self.last:
            self.metrics.inc("kept")
        yield winner


class Dedup(beam.PTransform[beam.PCollection, StageOutput]):
    """Samples -> `StageOutput` without repeats: first by id, then by (video key, normalised question).

    The winner of each group is deterministic (smallest id), so reruns and runners keep the same rows.
    The second key uses `mtvr_data.dedup`, the normalisation the contamination filter reads too.
    """

    def expand(self, samples: beam.PCollection):
        by_id = (
            samples
            | "KeyById" >> beam.Map(lambda s: (s.id, s))
            | "GroupById" >> beam.GroupByKey()
            | "PickById"
            >> beam.ParDo(_PickWinnerFn("duplicate_id", "same id", first=True, last=False)).with_outputs(
                DEAD, main="samples"
            )
        )
        by_question = (
            by_id["samples"]
            | "KeyByQuestion" >> beam.Map(lambda s: ((video_key(s.video), normalise_question(s.question)), s))
            | "GroupByQuestion" >> beam.GroupByKey()
            | "PickByQuestion"
            >> beam.ParDo(
                _PickWinnerFn("duplicate_question", "same video and question", first=False, last=True)
            ).with_outputs(DEAD, main="samples")
        )
        kept = by_question["samples"]
        dead = (by_id[DEAD], by_question[DEAD]) | "DeadLetters" >> beam.Flatten()
        counts = (samples | CountStage("dedup", "in"), kept | CountStage("dedup", "kept"))
        return StageOutput(kept, dead, counts | "Tallies" >> beam.Flatten())


# --- contamination --------------------------------------------------------------------------------------------------


class _ContaminationFn(beam.DoFn):
    def __init__(self, lists: ContaminationList) -> None:
        self.lists = lists

    def setup(self) -> None:
        self.metrics = StageMetrics("contamination")

    def process(self, sample: Sample) -> Iterator[Any]:
        self.metrics.inc("in")
        why = self.lists.match(sample.video, sample.question)
        if why is not None:
            yield self.metrics.rejected(
                SampleError.for_sample(sample, "contamination", "benchmark_contamination", why)
            )
        else:
            self.metrics.inc("kept")
            yield sample


class ContaminationFilter(beam.PTransform[beam.PCollection, StageOutput]):
    """Samples -> `StageOutput` without rows whose video or normalised question is in a benchmark list.

    The lists are read when the pipeline is built (a missing or malformed list fails before any work)
    and travel with the DoFn, so workers need no access to the files.
    """

    def __init__(self, lists: Iterable[str | Path] | ContaminationList) -> None:
        super().__init__()
        self.lists = lists if isinstance(lists, ContaminationList) else load_contamination(lists)

    def expand(self, samples: beam.PCollection):
        out = samples | "Filter" >> beam.ParDo(_ContaminationFn(self.lists)).with_outputs(DEAD, main="samples")
        counts = (samples | CountStage("contamination", "in"), out["samples"] | CountStage("contamination", "kept"))
        return StageOutput(out["samples"], out[DEAD], counts | "Tallies" >> beam.Flatten())


# --- all of it ------------------------------------------------------------------------------------------------------


class PrepareSamples(beam.PTransform[beam.pvalue.PBegin, StageOutput]):
    """PBegin -> `StageOutput(samples, dead_letters)`: read -> probe/validate -> dedup -> contamination.

    What the build pipelines call: `prepared = p | PrepareSamples(cfg)`; `samples, dead = prepared`. At the
    end, `(dead letters, tallies) | WriteRejected(cfg.out)`, each flattened with the later stages' own, where
    the tallies start from `prepared.counts`.
    """

    def __init__(self, config: BuildConfig) -> None:
        super().__init__()
        self.config = config

    def expand(self, pbegin: beam.pvalue.PBegin):
        read = pbegin | "ReadSources" >> ReadSources(self.config)
        probed = read.kept | "ProbeAndValidate" >> ProbeAndValidate(self.config.video_roots)
        deduped = probed.kept | "Dedup" >> Dedup()
        contamination = ContaminationFilter(self.config.contamination)
        log.info(
            "contamination filter: %s (%d videos, %d questions)%s",
            ", ".join(self.config.contamination) or "no list",
            len(contamination.lists.videos),
            len(contamination.lists.questions),
            " [default list; set `contamination: []` to turn it off]" if self.config.contamination_default else "",
        )
        clean = deduped.kept | "Contamination" >> contamination
        stages = (read, probed, deduped, clean)
        dead = tuple(s.dead_letters for s in stages) | "DeadLetters" >> beam.Flatten()
        counts = tuple(s.counts for s in stages) | "Tallies" >> beam.Flatten()
        return StageOutput(clean.kept, dead, counts)
