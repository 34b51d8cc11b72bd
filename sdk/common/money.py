"""Money is Decimal in code and integer pico-dollars (1e-12 USD) in the store.

Pico-dollars keep per-token prices exact (a $0.075 per million tokens price is 75,000 pico-dollars a
token) while letting SQLite sum costs as integers, which is what keeps reports fast.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

__all__ = ["format_usd", "from_pico", "parse_usd", "to_pico", "usd_for_json"]

_PER_USD = Decimal(10) ** 12
JSON_PLACES = Decimal("1e-9")
MAX_USD = Decimal(2**63) / _PER_USD  # ~9.2 million: the largest amount a 64-bit pico-dollar count holds


def to_pico(usd: Decimal) -> int:
    return int((usd * _PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))


def from_pico(pico: int | None) -> Decimal | None:
    if pico is None:
        return None
    return Decimal(pico) / _PER_USD


def usd_for_json(usd: Decimal | None) -> float | None:
    """Round to 9 places in Decimal, then hand JSON a number."""
    if usd is None:
        return None
    return float(usd.quantize(JSON_PLACES, rounding=ROUND_HALF_EVEN))


def parse_usd(value: object) -> Decimal:
    """A user-given amount (float, int, str or Decimal) as an exact Decimal; floats via their repr."""
    if isinstance(value, bool):
        raise TypeError("an amount of money cannot be a bool")
    try:
        if isinstance(value, Decimal):
            amount = value
        else:
            amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except ArithmeticError:  # decimal.InvalidOperation: not a number at all
        raise ValueError(f"{value!r} is not an amount in USD") from None
    if not amount.is_finite():
        raise ValueError(f"{value!r} is not a finite amount in USD")
    if abs(amount) >= MAX_USD:  # the store keeps money as 64-bit integer pico-dollars
        raise ValueError(f"{value!r}: amounts of ${MAX_USD:,} or more cannot be stored")
    return amount


def format_usd(value: Decimal | None, *, marked: bool = False) -> str:
    """Money as every table, page and message prints it: $0, $0.000123 below a cent, else $1,234.5678,
    the sign before the dollar (-$0.0092); `*` marks a sum that leaves unpriced calls out."""
    if value is None:
        return "-"
    sign, size = ("-" if value < 0 else ""), abs(value)
    if size == 0:
        text = "$0"
    elif size < Decimal("0.01"):
        text = f"{sign}${size:.6f}"
    else:
        text = f"{sign}${size:,.4f}"
    return text + ("*" if marked else "")
