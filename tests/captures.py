"""Which parameters of a test run in make test, and which only in make soak (`-m soak`), where the
20-minute budget does not bind."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest

# one capture per Binance market in make test (their messages differ: futures carry `pu`, COIN-M sizes are
# contracts); the other instruments, the same formats again, in make soak
IN_MAKE_TEST = ("spot_ethusdt", "usdm_ethusdt", "cm_ethusd_perp")


def soak_unless(values: Iterable[str], in_make_test: Callable[[str], bool]) -> list[object]:
    """`values` as parameters, those `in_make_test` refuses marked soak."""
    return [v if in_make_test(v) else pytest.param(v, marks=pytest.mark.soak) for v in values]


def one_per_market(names: Iterable[str]) -> list[object]:
    """`names` (capture file names) as parameters, those of IN_MAKE_TEST's instruments alone outside soak."""
    return soak_unless(names, lambda n: n.startswith(IN_MAKE_TEST))
