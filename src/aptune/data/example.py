"""The one item type every stage passes around: a multiple-choice or a generative example."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

#: How a multiple-choice item reads in cloze form. "qa" items are wrapped as
#: "Question: ...\nAnswer:"; "completion" items (HellaSwag-style) are continued as they are.
Style = Literal["qa", "completion"]
#: ``meta`` key of an item's k-shot exemplars (``data/fewshot.py`` attaches them)
EXEMPLARS = "exemplars"


@dataclass(frozen=True)
class Example:
    """One evaluation or training item.

    Multiple-choice items have ``choices`` (answer texts) and ``gold`` (index into them);
    generative items have ``answer`` (the reference) and no choices. ``domain`` names the
    suite an item belongs to ("general", "science", "medical", "legal", or a user's own).
    """

    id: str
    task: str
    domain: str
    question: str
    choices: tuple[str, ...] = ()
    gold: int | None = None
    answer: str | None = None
    style: Style = "qa"
    context: str | None = None  # a passage the question is about (SciQ support, BoolQ passage)
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.choices:
            if self.gold is None or not 0 <= self.gold < len(self.choices):
                raise ValueError(
                    f"example {self.id!r}: gold index {self.gold!r} out of range for "
                    f"{len(self.choices)} choices"
                )
        elif self.answer is None:
            raise ValueError(f"example {self.id!r}: needs choices+gold or an answer")

    @property
    def is_multiple_choice(self) -> bool:
        return bool(self.choices)

    @property
    def reference(self) -> str:
        """The gold answer text: the gold choice for MC items, the answer otherwise."""
        if self.is_multiple_choice:
            assert self.gold is not None
            return self.choices[self.gold]
        assert self.answer is not None
        return self.answer

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "domain": self.domain,
            "question": self.question,
            "choices": list(self.choices),
            "gold": self.gold,
            "answer": self.answer,
            "style": self.style,
            "context": self.context,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> "Example":
        return cls(
            id=str(row["id"]),
            task=str(row["task"]),
            domain=str(row["domain"]),
            question=str(row["question"]),
            choices=tuple(row.get("choices") or ()),
            gold=row.get("gold"),
            answer=row.get("answer"),
            style=row.get("style", "qa"),
            context=row.get("context"),
            meta=dict(row.get("meta") or {}),
        )
