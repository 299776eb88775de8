"""``base``: the starting model, evaluated once as round 0; nothing is trained.

Every comparison needs it: each trained method's change is measured against these figures,
item by item.
"""

from __future__ import annotations

from collections.abc import Iterator

from aptune.run.driver import Run


class BaseRun(Run):
    """No rounds: the run is round 0."""

    round_stages = ()

    def rounds(self) -> Iterator[int]:
        return iter(())
