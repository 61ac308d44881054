"""What turns a source adapter into a benchmark adapter: every sample is a `test` row tagged with its benchmark.

The training-source adapters already read the native files, check spans and turn bad records into
`SampleError`s; a benchmark adapter is such an adapter (subclassed, never re-parsed) with three differences:

- its `name` is the benchmark's (`"charades-sta"`), so `Sample.source`, the id prefix and error records say
  which test set a row belongs to, and a benchmark row can never be mistaken for a training row;
- `split` is always `"test"` (whatever the upstream file calls its part: ReXTime's public test is `val`);
- spans are kept exactly as published (`clamp_spans = False`): no end is clamped to the video and no window is
  dropped for running past it, since scores are computed against them;
- `meta` gains `"benchmark"` and `"category"`, the benchmark's own grouping for per-category accuracy
  (`category()` picks it; `""` where the benchmark has none).

`contamination_keys()` says what of a sample goes into the contamination list (`contamination.py`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar

from mtvr_data import storage
from mtvr_data.adapters.base import AdapterError, RawRecord, SourceAdapter, StrPath, iter_json_items, location
from mtvr_data.schema import Sample

BENCHMARK_SPLIT = "test"


class BenchmarkAdapter(SourceAdapter):
    """Mixin placed before a source adapter in the bases: `class X(BenchmarkAdapter, CharadesSTA)`.

    `category_key` names the `meta` key holding the benchmark's category (None: the benchmark has none);
    an adapter whose category is not in `meta` overrides `category`.
    """

    category_key: ClassVar[str | None] = None
    #: A benchmark's windows are its published ground truth: never clamped to the video or dropped for running
    #: past it (a published number is computed against the published windows; docs/evaluation.md).
    clamp_spans: ClassVar[bool] = False

    def __init__(self, annotations: str | os.PathLike[str], **options: Any) -> None:
        if options.get("split") not in (None, BENCHMARK_SPLIT):
            raise TypeError(
                f"{self.name}: a benchmark is always read as split {BENCHMARK_SPLIT!r}; got split={options['split']!r}"
            )
        options["split"] = BENCHMARK_SPLIT
        super().__init__(annotations, **options)

    def category(self, sample: Sample, meta: dict[str, Any]) -> str:
        """The benchmark's category of one sample (what per-category accuracy groups by)."""
        if self.category_key is None:
            return ""
        value = meta.get(self.category_key)
        return "" if value is None else str(value)

    def extra_meta(self) -> dict[str, Any]:
        """Adapter-wide facts every sample's `meta` should carry (e.g. which upstream part was read)."""
        return {}

    def to_samples(self, record: RawRecord) -> Iterable[Sample]:
        samples = list(super().to_samples(record))  # type: ignore[safe-super]  # the source adapter's parser
        for sample in samples:
            meta = sample.meta_dict
            meta.update(self.extra_meta())
            meta["benchmark"] = self.name
            meta["category"] = self.category(sample, meta)
            sample.meta = json.dumps(meta, ensure_ascii=False, sort_keys=True)
        return samples

    # --- contamination ------------------------------------------------------------------------------------------

    #: Whether the benchmark's questions go into the contamination list. False where the "question" is a caption
    #: or chapter title (grounding) or a template asked of every video (MVBench, VSI-Bench, MLVU): listed, such a
    #: text would drop every training row that happens to use the same generic sentence.
    list_questions: bool = True

    def contamination_videos(self, sample: Sample) -> list[str]:
        """The names the sample's video is known by (compared by `dedup.video_key`); default: its path."""
        return [sample.video]

    def contamination_records(self) -> Iterator[tuple[list[str], str]]:
        """(video names, question) of every benchmark item, for the contamination list.

        Default: the samples `read()` yields. An adapter whose file names items it cannot make samples of
        (ReXTime's GitHub GT jsonl has no option texts) overrides this to list them anyway.
        """
        for item in self.read():
            if isinstance(item, Sample):
                yield self.contamination_videos(item), item.question


_YOUTUBE_ID = re.compile(r"(?:[?&]v=|youtu\.be/|/shorts/|/embed/)([A-Za-z0-9_-]{11})(?![A-Za-z0-9_-])")


def youtube_id(url: Any) -> str | None:
    """The 11-character id of a YouTube watch / youtu.be URL, else None (MMVU pads some URLs with a space)."""
    if not isinstance(url, str):
        return None
    match = _YOUTUBE_ID.search(url.strip())
    return match.group(1) if match else None


class JsonRows(SourceAdapter):
    """A native file that is a JSON list (or mapping) of row objects: one record per row, its value the row; a
    row that is not an object is a `bad_value` record (LongVideoBench, MMVU)."""

    def records(self) -> Iterator[RawRecord]:
        for rec in iter_json_items(self.annotations):
            if rec.error is not None:
                yield rec
                continue
            row = rec.value[1]
            if not isinstance(row, dict):
                error = AdapterError("bad_value", f"record is a {type(row).__name__}, not an object")
                yield RawRecord(rec.location, raw=rec.raw, error=error)
                continue
            yield RawRecord(rec.location, value=row, raw=rec.raw)


def files_in_folder(path: StrPath, names: Sequence[str]) -> list[str] | None:
    """Those of `names` that exist inside the folder `path`, in that order; None when `path` is not a folder.

    Local: `path` is a folder when it is a directory (the list may then be empty). A URL: object stores have no
    folders, so it is one when no object sits at it and at least one of `names` sits under it; any other URL is
    read as a file, and the adapter's "does not exist" names it when nothing is there.
    """
    path = location(path)
    if not storage.is_url(path):
        if not os.path.isdir(path):
            return None
        return [os.path.join(path, n) for n in names if os.path.exists(os.path.join(path, n))]
    if storage.is_file(path):
        return None
    return [storage.join(path, n) for n in names if storage.exists(storage.join(path, n))] or None
