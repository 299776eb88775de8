"""What the judge saw: a few mined weakness cases, the judge check and why retrieval found nothing.

A run report that shows only accuracies hides the failure a bad judge causes (every answer
"wrong" because it is a sentence, not a bare name). So the report shows, for the first round
that mined, a few weakness cases with the model's own answer, the reference and the verdict,
plus each round's judge check and any round whose retrieval returned nothing, with the reason.
"""

from __future__ import annotations

from typing import Any

from aptune.run.run_dir import RunDir

#: weakness cases shown
SHOWN = 3
HEADER = ["round", "item", "question", "model's answer", "reference", "verdict"]


def _cut(text: Any, n: int = 90) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= n else text[: n - 1] + "…"


def _reference(row: dict[str, Any]) -> str:
    example = row.get("example", {})
    if example.get("choices") and isinstance(row.get("gold"), int):
        return example["choices"][row["gold"]]
    return str(row.get("reference", example.get("answer", "")))


def case_rows(run: RunDir, rounds: list[int]) -> list[list[str]]:
    """Up to ``SHOWN`` weakness cases of the first round in ``rounds`` that mined any."""
    for r in rounds:
        if not run.stage_output(r, "mine").exists():
            continue
        _, weakness = run.read_answers(r)
        if weakness:
            return [[str(r), w["id"], _cut(w.get("example", {}).get("question", "")), _cut(w.get("answer_text", "")),
                     _cut(_reference(w)), _cut(w.get("judge_detail") or "the model's option is not the gold one")]
                    for w in weakness[:SHOWN]]
    return []


def notes(manifest: dict[str, Any]) -> list[str]:
    """One line per round whose judge check failed (or was accepted) or whose retrieval was empty."""
    lines = []
    for r, check in sorted(manifest.get("judge_checks", {}).items(), key=lambda kv: int(kv[0])):
        if not check.get("passed", True):
            how = "the run went on (mining.accept_judge)" if check.get("accepted_by_user") else "the run stopped"
            lines.append(f"Round {r}: the judge check failed — {'; '.join(check.get('problems', []))}; {how}.")
    for key, stage in manifest.get("stages", {}).items():
        if key.endswith("/retrieve") and stage.get("why_none"):
            lines.append(f"{key.split('/')[0].replace('round-', 'Round ')}: no similar cases retrieved — "
                         f"{stage['why_none']}.")
    return lines
