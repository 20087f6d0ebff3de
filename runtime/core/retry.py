"""Retry pacing shared by feeds, Vault clients and database credentials."""

from __future__ import annotations

import random


class Backoff:
    """Capped exponential backoff with jitter: delay ``n`` is uniform in
    ``[min_fraction * c, c]`` where ``c = min(cap_s, base_s * 2**n)``.

    Jitter spreads the retries of a fleet after an outage instead of having every engine knock
    at the same instants. ``min_fraction = 0`` is full jitter (reconnects to a venue);
    a floor above 0 keeps a minimum pause (calls to Vault).
    """

    def __init__(
        self,
        base_s: float = 0.25,
        cap_s: float = 30.0,
        rng: random.Random | None = None,
        *,
        min_fraction: float = 0.0,
    ) -> None:
        self._base_s = base_s
        self._cap_s = cap_s
        self._rng = rng if rng is not None else random.Random()
        self._min_fraction = min_fraction
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self._cap_s, self._base_s * 2**self.attempt)
        self.attempt += 1
        return self._rng.uniform(self._min_fraction * ceiling, ceiling)

    def reset(self) -> None:
        self.attempt = 0
