"""The pinned install (`make venv` with `-c constraints/test.txt`) stays consistent with pyproject and the Makefile.

pyproject keeps open ranges for users; the constraints file is what `make` installs. If someone widens or raises a
range, adds a dependency, or bumps the Makefile's torch pair without `make pins`, the pinned install would either
fail to resolve or quietly install something the suite never ran with: these tests say so first.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _makefile_var(name: str) -> str:
    """A variable's value as the Makefile assigns it (`NAME := ...` or `NAME ?= ...`)."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(rf"^{name}\s*[:?]?=\s*(.+?)\s*$", text, re.MULTILINE)
    assert match, f"Makefile assigns no {name}"
    return match.group(1)


def _pins() -> dict[str, Version]:
    """The constraints file's `name==version` lines by canonical name; any other kind of line fails here."""
    pins: dict[str, Version] = {}
    for line in (ROOT / _makefile_var("PINS")).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==" and not req.url and not req.marker, f"not a plain pin: {line!r}"
        name = canonicalize_name(req.name)
        assert name not in pins, f"{name} pinned twice"
        pins[name] = Version(spec.version)
    return pins


def _project_requirements() -> list[Requirement]:
    """pyproject's runtime dependencies and its `test` extra: what `pip install -e '.[test]'` asks for."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["test"]]]


def test_the_makefile_installs_with_the_constraints_file() -> None:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    installs = [line.strip() for line in text.splitlines() if line.strip().startswith("$(BIN)/pip install")]
    assert len(installs) == 2 and all(line.endswith("-c $(PINS)") for line in installs), installs


@pytest.mark.parametrize("req", _project_requirements(), ids=str)
def test_every_project_requirement_is_pinned_within_its_range(req: Requirement) -> None:
    pins = _pins()
    name = canonicalize_name(req.name)
    assert name in pins, f"{req} has no pin: run `make pins`"
    assert req.specifier.contains(pins[name], prereleases=True), f"pin {name}=={pins[name]} is outside {req}"


def test_pins_install_on_another_machine() -> None:
    """A local version label (`+cpu`, `+cu130`) names a build from one index, not the one PyPI serves."""
    assert [f"{n}=={v}" for n, v in _pins().items() if v.local] == []


def test_the_torch_pair_is_the_pinned_one() -> None:
    """`make venv` installs TORCH_PAIR first, then the rest under the pins: a mismatch would not resolve."""
    pins = _pins()
    pair: dict[str, Version] = {}
    for item in _makefile_var("TORCH_PAIR").split():
        req = Requirement(item)
        (spec,) = req.specifier
        pair[canonicalize_name(req.name)] = Version(spec.version)
    assert set(pair) == {"torch", "torchvision"}
    assert pair == {name: pins[name] for name in pair}, f"Makefile TORCH_PAIR {pair} is not the pinned pair"
