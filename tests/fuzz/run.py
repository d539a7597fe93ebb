"""Coverage-guided fuzzing of tests/fuzz/targets.py with atheris (libFuzzer for Python): `make fuzz`.

    python tests/fuzz/run.py TARGET [--seconds 300] [--work build/fuzz] [-- LIBFUZZER_FLAGS ...]

The orderbook package and streams.pipeline are instrumented, so inputs that reach new branches of the
decoders, books, frames and windows are kept (in WORK/corpus/TARGET, which later runs start from);
the native code is not instrumented (its behaviour is checked against the reference's). An input
that fails the target is written to WORK/crashes/TARGET/ and the run stops with libFuzzer's report.
Once the failure is fixed, copy the input to tests/fuzz/inputs/TARGET/: make test replays every input
there (tests/test_fuzz_targets.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports(include=["orderbook", "streams.pipeline"]):
    import targets

    from orderbook import venue_windows  # noqa: F401  (imported here to be instrumented)
    from streams import pipeline  # noqa: F401


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", choices=sorted(targets.TARGETS))
    p.add_argument("--seconds", type=int, default=300, help="how long to fuzz (default 300)")
    p.add_argument("--work", type=Path, default=Path("build/fuzz"), help="corpus and crashes (default build/fuzz)")
    args, libfuzzer = p.parse_known_args()
    corpus = args.work / "corpus" / args.target
    crashes = args.work / "crashes" / args.target
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    seeds = Path(__file__).resolve().parent / "inputs" / args.target
    for venue in targets.VENUES:  # warm the seed streams before the clock starts
        targets.seed_stream(venue)
    check = targets.TARGETS[args.target]
    # inputs are choices about a seed stream (targets.Edits), a few hundred bytes at most: all of them
    # from the start (libFuzzer would otherwise grow the length limit from 4 bytes, slowly)
    flags = [f"-max_total_time={args.seconds}", f"-artifact_prefix={crashes}/", "-timeout=30", "-rss_limit_mb=4096",
             "-max_len=512", "-len_control=0"]  # fmt: skip
    dirs = [str(corpus)] + ([str(seeds)] if seeds.is_dir() else [])
    atheris.Setup([sys.argv[0], *flags, *[f for f in libfuzzer if f != "--"], *dirs], check)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
