"""Venue units to the units a person reads: prices as exact decimal strings, spreads and mid moves in
ticks, sizes in the venue's base unit, times as seconds.

The forecast record keeps the venue's integers (docs/design.md): `best_bid`/`best_ask` in the venue's
price unit, depth and volume in lots, spread and mid quantiles in ticks. What one unit is worth is each
decoder's own constant (orderbook/venues/*.py); Kraken's depends on the pair (the decimals Kraken
prints for it), which no record carries, so its prices stay in venue units and the page says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from orderbook.venues import binance, coinbase, fixed_tick

# (price decimals, size decimals, what a price is in): a price unit is 10^-decimals of that
_UNITS: dict[str, tuple[int, int, str]] = {
    "binance": (binance.DECIMALS, binance.DECIMALS, "quote currency"),
    "coinbase": (coinbase.DECIMALS, coinbase.DECIMALS, "quote currency"),
    # ITCH Price(4) and LOBSTER prices: 1/10000 dollar (a cent is itch.CENT = 100 units); sizes are shares
    "itch": (4, 0, "USD"),
    "lobster": (4, 0, "USD"),
}


@dataclass(frozen=True)
class Units:
    """How one book's numbers read: `price_decimals` None where the venue's unit is not known here."""

    venue: str
    price_decimals: int | None
    size_decimals: int | None
    currency: str
    tick: int | None  # price units per tick
    tick_inferred: bool  # the tick is the gcd of prices seen (an upper bound), not the venue's

    def price(self, units: int | Decimal) -> str:
        """Exact: 6168599000000 at 8 decimals -> "61685.99" (trailing zeros past 2 places dropped)."""
        if self.price_decimals is None:
            return str(units)
        return _decimal_text(Decimal(units).scaleb(-self.price_decimals), keep=2)

    def size(self, lots: int) -> str:
        """Exact: 150000000 lots at 8 decimals -> "1.5"; whole numbers without a point."""
        if not self.size_decimals:
            return str(lots)
        text = format(Decimal(lots).scaleb(-self.size_decimals), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text

    def price_float(self, units: float) -> float:
        return units / 10**self.price_decimals if self.price_decimals is not None else float(units)

    def size_float(self, lots: float) -> float:
        return lots / 10**self.size_decimals if self.size_decimals is not None else float(lots)

    def describe(self) -> dict[str, object]:
        if self.price_decimals is None:
            price = f"{self.venue} price units (the pair's decimals are not in the forecast record)"
        else:
            price = f"{self.currency} (venue units / 10^{self.price_decimals})"
        if self.tick is None:
            tick = "unknown (no prices seen yet)"
        else:
            tick = f"{self.price(self.tick)} {self.currency if self.price_decimals is not None else 'units'}"
            tick += " (inferred: gcd of the prices seen)" if self.tick_inferred else " (the venue's)"
        size = "lots" if self.size_decimals is None else ("shares" if self.size_decimals == 0 else "base currency")
        return {"price": price, "tick": tick, "size": size, "time": "UTC, from the exchange timestamps"}


def _decimal_text(value: Decimal, keep: int) -> str:
    text = format(value, "f")
    if "." not in text:
        return text + "." + "0" * keep
    whole, frac = text.split(".")
    frac = frac.rstrip("0").ljust(keep, "0")
    return f"{whole}.{frac}"


def units_for(venue: str, inferred_tick: int = 0) -> Units:
    """A book's units: the venue's fixed tick, else `inferred_tick` (the gcd of the differences of the
    prices seen, as orderbook.features.infer_tick computes it: an upper bound that tightens with more
    prices; 0: none seen)."""
    price_decimals, size_decimals, currency = _UNITS.get(venue, (None, None, "units"))
    tick = fixed_tick(venue)
    if tick is not None:
        return Units(venue, price_decimals, size_decimals, currency, tick, False)
    return Units(venue, price_decimals, size_decimals, currency, inferred_tick or None, bool(inferred_tick))
