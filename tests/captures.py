"""Which of the Binance captures a test runs on in make test, and which only in make soak."""

from __future__ import annotations

import pytest

# one capture per Binance market in make test (their messages differ: futures carry `pu`, COIN-M sizes are
# contracts); the other instruments, the same formats again, in make soak
IN_MAKE_TEST = ("spot_ethusdt", "usdm_ethusdt", "cm_ethusd_perp")


def one_per_market(names: list[str]) -> list[object]:
    """`names` (capture file names) as parameters, those of IN_MAKE_TEST's instruments alone outside soak."""
    return [n if n.startswith(IN_MAKE_TEST) else pytest.param(n, marks=pytest.mark.soak) for n in names]
