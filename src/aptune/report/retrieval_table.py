"""What each round's retrieval chose: per cluster or tag, how many similar cases and how close.

Read from the retrieve stage's manifest record (``groups``: count and mean cosine similarity per
kmeans cluster or tag; ``all`` for knn and centroid), so a user sees what was retrieved and why.
"""

from __future__ import annotations

from aptune.run.run_dir import RunDir

HEADER = ["round", "strategy", "cluster / tag", "similar cases", "mean cosine similarity"]
NOTE = ("Similar cases each round's retrieval added, per k-means cluster of the weakness cases or per tag "
        "(strategy tag: budget split by each tag's share of the weakness cases); \"all\" for knn and centroid. "
        "Similarity is the cosine between the item's embedding and what it was ranked against.")


def rows(run: RunDir, rounds: list[int]) -> list[list[str]]:
    out = []
    for r in rounds:
        record = run.stage_records(r).get("retrieve") or {}
        for name, group in (record.get("groups") or {}).items():
            out.append([str(r), str(record.get("strategy", "–")), name, str(group["count"]),
                        f"{group['mean_similarity']:.3f}"])
    return out
