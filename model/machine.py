"""The machine a run was on, as a person names it: what checkpoints (model.training.train.environment)
and benchmark reports record beside their figures. No torch here, so a report that does not load a
network can say it too."""

from __future__ import annotations

import platform


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("AMD EPYC 7B13"), else what `platform` knows ("x86_64"):
    two machines with one architecture can round floats otherwise (another SIMD path)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
