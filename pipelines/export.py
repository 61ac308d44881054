"""`mtvr export FOLDER --to FORMAT --out DIR`: a built dataset in the layout of a trainer people already run.

Formats (docs/export.md has every field and deviation):

| format     | reads   | writes                                                                  | for               |
|------------|---------|-------------------------------------------------------------------------|-------------------|
| `vital`    | cot, rl | `MTVR_CoT.json`, `MTVR_Tool_CoT.json`, `MTVR_RL.json`, `MTVR_Tool_RL.json` | VITAL's scripts |
| `verl`     | rl      | `train.parquet`, `validation.parquet`                                   | verl's `main_ppo` |
| `sharegpt` | cot     | `mtvr_cot.json`, `mtvr_cot_validation.json`, `dataset_info.json`        | LLaMA-Factory     |

Every run also writes `export.json`: the format, the source folder, rows written per file, and every row the format
could not express with its reason (counted, never dropped silently). Everything goes through `mtvr_data.storage`,
so FOLDER and DIR may be bucket URLs.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from model.config_error import ConfigError
from mtvr_data import storage
from pipelines.export_rows import Skipped, built_configs
from pipelines.export_sharegpt import export_sharegpt
from pipelines.export_verl import export_verl
from pipelines.export_vital import export_vital

Exporter = Callable[[str, str, list[str], str | None], tuple[dict[str, int], list[Skipped], list[str]]]
#: format -> (the configs it needs, at least one of; its writer).
FORMATS: dict[str, tuple[tuple[str, ...], Exporter]] = {
    "vital": (("cot", "rl"), export_vital),
    "verl": (("rl",), export_verl),
    "sharegpt": (("cot",), export_sharegpt),
}
SUMMARY = "export.json"


@dataclass(slots=True)
class ExportSummary:
    """What an export wrote and what it could not express."""

    format: str
    folder: str
    out: str
    files: dict[str, int]
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "format": self.format,
            "folder": self.folder,
            "files": self.files,
            "skipped_by_reason": dict(sorted(Counter(s.reason for s in self.skipped).items())),
            "skipped": [asdict(s) for s in self.skipped],
            "notes": self.notes,
        }

    def render(self) -> str:
        lines = [f"{self.format} export of {self.folder} in {self.out}:"]
        lines += [f"  {name:<36} {rows:>7} rows" for name, rows in self.files.items()]
        for reason, count in sorted(Counter(s.reason for s in self.skipped).items()):
            lines.append(f"  not expressible in {self.format}: {count} rows ({reason}; ids in {SUMMARY})")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def export_build(folder: str, to: str, out: str, *, video_root: str | None = None) -> ExportSummary:
    """Export the build in `folder` to format `to` under `out`; a ConfigError (one line) for an unknown format, a
    folder that is not a finished build, or a build without the config the format needs."""
    if to not in FORMATS:
        raise ConfigError(f"--to {to!r}: unknown export format; allowed: {', '.join(FORMATS)}")
    needs, exporter = FORMATS[to]
    present = built_configs(folder)
    configs = [c for c in needs if c in present]
    if not configs:
        raise ConfigError(
            f"{folder}: the {to} export needs the {' or '.join(needs)} config, and this build has "
            f"{', '.join(present) or 'none'}"
        )
    files, skipped, notes = exporter(folder, out, present, video_root)
    summary = ExportSummary(to, folder, out, files, skipped, notes)
    storage.write_text(storage.join(out, SUMMARY), json.dumps(summary.to_dict(), indent=2) + "\n")
    return summary
