"""A checkpoint as an older format wrote it: what the loaders' upgrade paths are tested on."""

import json
from collections.abc import Callable
from pathlib import Path

from model.network import checkpoint


def as_format(directory: Path, fmt: int, added: Callable[[str], bool]) -> Path:
    """The checkpoint in `directory` rewritten in place as format `fmt` did: without the tensors the
    later formats `added` (a predicate on their names)."""
    from safetensors.torch import load_file, save_file

    tensors = {k: v for k, v in load_file(str(directory / checkpoint.WEIGHTS)).items() if not added(k)}
    save_file(tensors, str(directory / checkpoint.WEIGHTS), metadata={"format": str(fmt)})
    meta = json.loads((directory / checkpoint.CONFIG).read_text())
    (directory / checkpoint.CONFIG).write_text(json.dumps(meta | {"format": fmt}))
    return directory
