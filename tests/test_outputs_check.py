"""bench/outputs_check.py fingerprints the dataset of `make checkpoint` and the committed checkpoint's
outputs: the arguments it reads out of the Makefile must be the ones make runs, and its record must be of
the checkpoint committed beside it."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.scripts import load_script

REPO = Path(__file__).resolve().parents[1]
check = load_script(REPO / "bench" / "outputs_check.py")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_the_dataset_arguments_are_make_checkpoints() -> None:
    # -o: the venv's stamp counts as built, so make prints the recipe alone
    dry = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", "checkpoint", f"SHARED={check.SHARED}"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.replace("\\\n", " ")  # fmt: skip
    line = next(x for x in dry.splitlines() if "megatrading dataset" in x and "--like" not in x)
    made = shlex.split(line.split("megatrading dataset", 1)[1].split(" --out ", 1)[0])
    assert check.checkpoint_dataset_args() == made


def test_the_record_is_of_the_committed_checkpoint() -> None:
    """A retrained checkpoint needs `python bench/outputs_check.py --record bench/outputs.json` (12 minutes)
    in the same commit, or the record guards outputs nobody ships (it did for a day)."""
    record = json.loads((REPO / "bench" / "outputs.json").read_text())
    assert record.get("checkpoint") == check.checkpoint_md5s(), (
        "bench/outputs.json is of another checkpoint: python bench/outputs_check.py --record bench/outputs.json"
    )
