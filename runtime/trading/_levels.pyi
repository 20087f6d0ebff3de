# The compiled loop of runtime/trading/_levels.c (optional: book.py runs without it).
from collections.abc import Sequence

def apply_levels(
    side: dict[float, float], levels: Sequence[tuple[float, float]], best: float, bids: bool, /
) -> float: ...
