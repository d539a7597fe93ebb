"""The fuzz targets (tests/fuzz/targets.py) within make test: on every input kept under
tests/fuzz/inputs/<target>/ (what a fuzz run found, kept once fixed: a regression test each) and on
deterministic random inputs. `make fuzz` runs the same targets coverage-guided (tests/fuzz/run.py)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent / "fuzz"
sys.path.insert(0, str(FUZZ))

from targets import TARGETS  # noqa: E402

KEPT = sorted((target, path) for target in TARGETS for path in (FUZZ / "inputs" / target).glob("*"))
RANDOM_INPUTS = 150


@pytest.mark.parametrize(("target", "path"), KEPT, ids=[f"{t}/{p.name}" for t, p in KEPT])
def test_every_kept_input_holds_its_target(target: str, path: Path) -> None:
    TARGETS[target](path.read_bytes())


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_random_inputs_hold_every_target(target: str) -> None:
    rng = random.Random(target)
    for _ in range(RANDOM_INPUTS):
        TARGETS[target](rng.randbytes(rng.randrange(400)))
