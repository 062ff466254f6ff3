"""Dollars per call, from the tokens measured and the prices given.

Hosted APIs charge per token: cost = prompt tokens x in-price + completion tokens x out-price.
Self-hosted hardware charges per hour whether it is busy or not, so its price per token comes
from how fast it was measured to work here:

    USD per completion token = usd_per_hour / (3600 x utilisation x measured completion tok/s)

where the throughput is completion tokens over the wall time of the measured calls (prompt
processing included: that time is paid too, so it is charged through the completion tokens).
One call is charged for the seconds the hardware worked on it, usd_per_hour / 3600 /
utilisation per busy second: summed over the measured calls that is exactly their completion
tokens at the price above, and a call that returns no tokens still costs its seconds. A
self-hosted model is never $0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from syllabus.portfolio.config import PriceConfig


@dataclass(frozen=True)
class Pricing:
    kind: str
    """"api" or "self-hosted"."""
    usd_per_token_in: float | None
    usd_per_token_out: float | None
    throughput_tok_s: float | None
    """Measured completion tokens per second (self-hosted; for APIs informational)."""
    basis: str
    usd_per_busy_second: float | None = None
    """Self-hosted: what one second of the hardware's work costs."""

    def cost(self, prompt_tokens: float, completion_tokens: float, busy_s: float) -> float:
        """USD for one call: its tokens at an API's prices, or its busy seconds self-hosted."""
        if self.usd_per_busy_second is not None:
            return busy_s * self.usd_per_busy_second
        return prompt_tokens * self.usd_per_token_in + completion_tokens * self.usd_per_token_out

    def as_dict(self) -> dict:
        return asdict(self)


def call_cost(pricing: Pricing, row: dict) -> float:
    """USD of one measured call (a per-sample record)."""
    return pricing.cost(row["prompt_tokens"], row["completion_tokens"], row["latency_s"])


def throughput(rows: list[dict]) -> float | None:
    """Completion tokens per second of wall time over the calls in `rows` (one at a time)."""
    tokens = sum(r["completion_tokens"] for r in rows if r.get("text") is not None)
    seconds = sum(r["latency_s"] for r in rows if r.get("text") is not None)
    return tokens / seconds if tokens and seconds > 0 else None


def pricing_for(price: PriceConfig, rows: list[dict] | None) -> Pricing:
    """The per-token prices of a candidate, from its measured rows where it is self-hosted."""
    measured = throughput(rows) if rows else None
    if not price.self_hosted:
        return Pricing(
            "api",
            price.usd_per_mtok_in / 1e6,
            price.usd_per_mtok_out / 1e6,
            measured,
            f"API: ${price.usd_per_mtok_in:g}/Mtok in, ${price.usd_per_mtok_out:g}/Mtok out",
        )
    per_second = price.usd_per_hour / 3600 / price.utilisation
    if measured is None:
        return Pricing(
            "self-hosted",
            None,
            None,
            None,
            f"self-hosted: ${price.usd_per_hour:g}/h at {price.utilisation:.0%} utilisation, "
            "charged per busy second (no throughput measured yet)",
            per_second,
        )
    per_token = per_second / measured
    return Pricing(
        "self-hosted",
        0.0,
        per_token,
        measured,
        f"self-hosted: ${price.usd_per_hour:g}/h at {price.utilisation:.0%} utilisation and "
        f"{measured:.1f} completion tok/s measured = ${per_token * 1e6:.2f}/Mtok out",
        per_second,
    )
