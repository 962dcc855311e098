"""A caller's way through ivr: one type, and one way to write it down.

Everything that shows or stores where a caller went uses :class:`IvrPath`:
the ``IVR_PATH`` channel variable and the ``IvrMenuChoice`` events
(``main:2>after-sales:0``), the agent's card, ``ivr history`` and the
contact history's ``contacts.ivr_path`` column (JSON, one object a step).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ivr.routing.router import CallStep

__all__ = ["MAX_PATH_STEPS", "NAVIGATION", "IvrPath", "step_label"]

#: Steps kept: a caller bouncing between menus must not grow a channel variable without end.
MAX_PATH_STEPS = 30
#: The kinds of step that move a caller through the menus (what IVR_PATH shows).
NAVIGATION = frozenset({"menu", "language", "speech", "confirm", "back", "exhausted", "closed"})
#: The fields of a step stored in ``contacts.ivr_path``.
_STORED = ("kind", "menu", "key", "value")


def step_label(step: CallStep) -> str:
    """One step as people and the dialplan read it: ``main:2``, ``language:zh``, ``main:said:2``."""
    if step.kind == "menu" and step.menu:
        return f"{step.menu}:{step.key or '-'}"
    if step.kind == "language":
        return f"language:{step.value}"
    if step.kind == "speech":
        return f"{step.menu}:said:{step.key or '?'}"
    if step.kind == "confirm":
        return f"{step.menu}:confirm:{step.value}"
    if step.kind in ("back", "exhausted") and step.menu:
        return f"{step.menu}:{step.kind}"
    return ":".join(part for part in (step.kind, step.menu, step.key, step.value) if part) or "?"


@dataclass
class IvrPath:
    """The steps of one call, oldest first, at most ``limit`` of them (the latest are kept)."""

    steps: list[CallStep] = field(default_factory=list)
    limit: int = MAX_PATH_STEPS

    def add(self, step: CallStep) -> None:
        self.steps.append(step)
        if len(self.steps) > self.limit:
            del self.steps[: len(self.steps) - self.limit]

    def __iter__(self) -> Iterator[CallStep]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def labels(self) -> list[str]:
        return [step_label(step) for step in self.steps]

    def text(self, separator: str = " > ") -> str:
        """``language:zh > main:2 > after-sales:0`` (the dialplan's ``IVR_PATH`` uses ``>``)."""
        return separator.join(self.labels())

    def to_json(self) -> list[dict[str, str]]:
        """What ``contacts.ivr_path`` stores: one object a step."""
        return [{name: getattr(step, name) for name in _STORED} for step in self.steps]

    @classmethod
    def from_json(cls, stored: object) -> IvrPath:
        """A path read back from ``contacts.ivr_path``; anything malformed in it is kept as text."""
        steps: list[CallStep] = []
        for item in stored if isinstance(stored, list) else []:
            if isinstance(item, dict):
                kind, menu, key, value = (_text(item.get(name)) for name in _STORED)
                steps.append(CallStep(kind, menu, key, value))
            else:
                steps.append(CallStep(kind=_text(item)))
        return cls(steps, limit=max(len(steps), MAX_PATH_STEPS))

    @classmethod
    def of(cls, steps: Iterable[CallStep], limit: int = MAX_PATH_STEPS) -> IvrPath:
        path = cls(limit=limit)
        for step in steps:
            path.add(step)
        return path


def _text(value: Any) -> str:
    return "" if value is None else str(value)
