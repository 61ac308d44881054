"""The console's logging: warnings and the project's own lines; Beam's import-time noise and debug chatter left out.

Why: Beam logs two warnings on the root logger while its modules are imported, true of this install and of no
use to a reader of `mtvr demo` or a build: "apitools not found, and bigquery client libraries are not
available..." (apache_beam.io.gcp.internal.clients.bigquery) and "Resource module is not available for current
platform..." (apache_beam.ml.inference.base). They are dropped by a filter that matches those two messages from
those two Beam files only, so any other root-logger warning still shows. `-v` turns on DEBUG for the project's
packages only: DEBUG on the root logger would add thousands of Beam's lines.
"""

from __future__ import annotations

import logging

#: The project's top-level packages: their loggers get DEBUG under `-v`.
PROJECT_LOGGERS = ("pipelines", "mtvr_data", "model", "train", "bench")
#: (Beam module path suffix, message start) of the import-time warnings that are dropped.
BEAM_NOISE = (
    ("apache_beam/io/gcp/internal/clients/bigquery/__init__.py", "apitools not found"),
    ("apache_beam/ml/inference/base.py", "Resource module is not available"),
)
FORMAT = "%(levelname)s %(name)s: %(message)s"


class BeamImportNoise(logging.Filter):
    """Drops the two known Beam warnings (`BEAM_NOISE`), matched by the emitting file and the message's start."""

    def filter(self, record: logging.LogRecord) -> bool:
        path = record.pathname.replace("\\", "/")
        message = str(record.msg)
        return not any(path.endswith(where) and message.startswith(text) for where, text in BEAM_NOISE)


def configure_console(verbose: bool = False) -> None:
    """Root handler at WARNING with `BeamImportNoise`; the project's loggers at DEBUG when `verbose`."""
    logging.basicConfig(level=logging.WARNING, format=FORMAT)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, BeamImportNoise) for f in handler.filters):
            handler.addFilter(BeamImportNoise())
    if verbose:
        for name in PROJECT_LOGGERS:
            logging.getLogger(name).setLevel(logging.DEBUG)
