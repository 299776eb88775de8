"""Similar-case retrieval: strategy rankings on hand-built embeddings, the contract every
strategy keeps (exclusion, budget, no duplicates, determinism), and the on-disk cache."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from aptune.data.example import Example
from aptune.retrieval import STRATEGIES, VectorIndex, budget_for, build_pool_index, retrieve_similar
from aptune.retrieval.strategies import apportion, centroid, kmeans, knn


def unit(degrees: float) -> list[float]:
    """A 2-D unit vector at ``degrees`` from the x axis (cosine between two = cos of the gap)."""
    rad = math.radians(degrees)
    return [math.cos(rad), math.sin(rad)]


class TableEncoder:
    """Encoder that looks each text up in a table, counting calls (to see cache hits)."""

    def __init__(self, table: dict[str, Sequence[float]], name: str = "table"):
        self.table = table
        self.name = name
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return np.array([self.table[t] for t in texts], dtype=np.float32)


def make_pool(names: Sequence[str]) -> list[Example]:
    return [Example(id=n, task="t", domain="d", question=n, answer=f"ans-{n}") for n in names]


def angle_index(angles: dict[str, float]) -> tuple[VectorIndex, list[str]]:
    names = list(angles)
    return VectorIndex(np.array([unit(angles[n]) for n in names], dtype=np.float32)), names


# --- each strategy's ranking on hand-built embeddings --------------------------------------

def test_knn_round_robins_over_cases() -> None:
    """Cases A (0°) and B (90°). A's neighbours a1 5°, a2 10°, a3 15°; B's is b1 85°.
    Budget 3: round 1 gives A→a1, B→b1; round 2 gives A→a2 and the budget is spent."""
    index, names = angle_index({"A": 0, "B": 90, "a1": 5, "a2": 10, "a3": 15, "b1": 85})
    picks = knn(index, [0, 1], budget=3)
    assert [(names[p.row], names[p.source]) for p in picks] == [("a1", "A"), ("b1", "B"), ("a2", "A")]
    assert picks[0].score == pytest.approx(math.cos(math.radians(5)), abs=1e-6)


def test_knn_cases_share_no_neighbour() -> None:
    """A (0°) and B (2°) both want n1 (1°): A takes it, so B gets its next one, n2 (4°)."""
    index, names = angle_index({"A": 0, "B": 2, "n1": 1, "n2": 4, "far": 60})
    picks = knn(index, [0, 1], budget=2)
    assert [(names[p.row], names[p.source]) for p in picks] == [("n1", "A"), ("n2", "B")]


def test_centroid_ranks_by_mean_direction() -> None:
    """Cases at 0° and 90° average to 45°: p45 (0° off), p30 (15°), p80 (35°), p2 (43°).
    Per-case neighbours would be p2 and p80; the centroid prefers the middle."""
    index, names = angle_index({"A": 0, "B": 90, "p2": 2, "p80": 80, "p30": 30, "p45": 45})
    picks = centroid(index, [0, 1], budget=3)
    assert [names[p.row] for p in picks] == ["p45", "p30", "p80"]
    assert [p.score for p in picks] == pytest.approx([1.0, math.cos(math.radians(15)), math.cos(math.radians(35))], abs=1e-6)
    assert [names[p.source] for p in picks] == ["A", "A", "B"]  # nearest case (ties: first)


def test_kmeans_quota_follows_cluster_size() -> None:
    """Three identical cases at 0° and one at 90° form 2 clusters (2 distinct vectors), sizes
    3 and 1, so budget 4 splits 3:1: the small cluster still gets b1 (85°), whereas the
    centroid (18.4°) would take the four items near 0°."""
    angles = {"A1": 0, "A2": 0, "A3": 0, "B": 90, "a5": 5, "a10": 10, "a15": 15, "a20": 20, "b1": 85, "b2": 80}
    index, names = angle_index(angles)
    picks = kmeans(index, [0, 1, 2, 3], budget=4, seed=0)
    assert {names[p.row] for p in picks} == {"a5", "a10", "a15", "b1"}
    assert {names[p.row] for p in centroid(index, [0, 1, 2, 3], budget=4)} == {"a5", "a10", "a15", "a20"}
    source = {names[p.row]: names[p.source] for p in picks}
    assert source["b1"] == "B" and source["a5"] in {"A1", "A2", "A3"}


def test_kmeans_single_case_is_centroid() -> None:
    index, names = angle_index({"A": 0, "x": 30, "y": 10, "z": 50})
    assert [names[p.row] for p in kmeans(index, [0], budget=2)] == ["y", "x"]


@pytest.mark.parametrize(
    ("sizes", "total", "expected"),
    [
        ([3, 1], 4, [3, 1]),
        ([3, 1], 2, [2, 0]),  # 1.5 / 0.5: the larger remainder tie goes to the earlier cluster
        ([1, 1, 1], 2, [1, 1, 0]),
        ([5, 3, 2], 20, [10, 6, 4]),
        ([2, 2], 0, [0, 0]),
    ],
)
def test_apportion(sizes: list[int], total: int, expected: list[int]) -> None:
    assert apportion(sizes, total) == expected
    assert sum(apportion(sizes, total)) == total


@pytest.mark.parametrize(("n", "s", "expected"), [(10, 1, 10), (10, 0.5, 5), (3, 0.5, 2), (7, 3, 21), (0, 2, 0), (4, 0, 0)])
def test_budget_is_s_times_cases(n: int, s: float, expected: int) -> None:
    assert budget_for(n, s) == expected


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_budget_rejects_bad_ratio(bad: float) -> None:
    with pytest.raises(ValueError, match="ratio s"):
        budget_for(3, bad)


def test_ranked_lists_whole_pool_in_order_past_the_first_search_depth() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(100, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(vectors)
    exclude = {3, 50, 99}
    got = [row for row, _ in index.ranked(vectors[0], exclude)]
    expected = [int(r) for r in np.argsort(-(vectors @ vectors[0]), kind="stable") if int(r) not in exclude]
    assert got == expected


# --- the contract of retrieve_similar, for every strategy ------------------------------------

def random_table(n: int, dim: int = 16, seed: int = 0) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    return {f"q{i}": rng.normal(size=dim).tolist() for i in range(n)}


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("s", [0.5, 1.0, 3.0, 100.0])
def test_contract_exclusion_budget_uniqueness(strategy: str, s: float, tmp_path: Path) -> None:
    table = random_table(60)
    pool = make_pool(list(table))
    weak = [f"q{i}" for i in range(0, 60, 5)]  # 12 cases
    got = retrieve_similar(pool, weak, strategy, s=s, cache_dir=tmp_path, encoder=TableEncoder(table), seed=1)
    ids = [c.id for c in got]
    assert len(ids) == min(budget_for(len(weak), s), len(pool) - len(weak))
    assert len(set(ids)) == len(ids)
    assert not set(ids) & set(weak)
    assert {c.source_case_id for c in got} <= set(weak)
    if strategy == "knn":
        assert {c.source_case_id for c in got} == set(weak) or len(ids) < len(weak)
    again = retrieve_similar(pool, weak, strategy, s=s, cache_dir=tmp_path, encoder=TableEncoder(table), seed=1)
    assert again == got  # deterministic


def test_kmeans_more_cases_than_clusters_is_deterministic_per_seed(tmp_path: Path) -> None:
    table = random_table(200, seed=3)
    pool = make_pool(list(table))
    weak = [f"q{i}" for i in range(0, 200, 4)]  # 50 cases -> 10 clusters
    runs = [retrieve_similar(pool, weak, "kmeans", s=1, cache_dir=tmp_path, encoder=TableEncoder(table), seed=7)
            for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) == 50


def test_empty_weakness_list_returns_nothing_without_encoding(tmp_path: Path) -> None:
    encoder = TableEncoder({})
    assert retrieve_similar(make_pool(["x"]), [], "knn", cache_dir=tmp_path, encoder=encoder) == []
    assert encoder.calls == 0


def test_duplicate_weakness_ids_count_once(tmp_path: Path) -> None:
    table = random_table(20)
    got = retrieve_similar(make_pool(list(table)), ["q1", "q1", "q2"], "knn", s=1, encoder=TableEncoder(table))
    assert len(got) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weakness_ids": ["nope"]}, "'nope' is not in the retrieval pool"),
        ({"strategy": "tags"}, "unknown retrieval strategy 'tags'"),
        ({"embed": "answer"}, "embed must be"),
    ],
)
def test_bad_input_is_one_clear_error(kwargs: dict, message: str) -> None:
    table = random_table(5)
    args = {"pool": make_pool(list(table)), "weakness_ids": ["q0"], "strategy": "knn",
            "encoder": TableEncoder(table)} | kwargs
    with pytest.raises(ValueError, match=message):
        retrieve_similar(**args)


def test_duplicate_pool_ids_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate id 'a'"):
        retrieve_similar(make_pool(["a", "a"]), ["a"], encoder=TableEncoder({"a": [1.0, 0.0]}))


# --- cache ----------------------------------------------------------------------------------

def test_cache_hit_miss_and_rebuild(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    table = random_table(30)
    texts = list(table)
    encoder = TableEncoder(table)
    first = build_pool_index(texts, encoder, tmp_path)
    assert not first.from_cache and encoder.calls == 1
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".faiss", ".json", ".npy"]
    second = build_pool_index(texts, encoder, tmp_path)
    assert second.from_cache and encoder.calls == 1
    np.testing.assert_array_equal(first.embeddings, second.embeddings)
    # A changed pool, or another encoder name, is a miss with its own key.
    changed = build_pool_index(texts[:-1] + ["q0"], encoder, tmp_path)
    renamed = build_pool_index(texts, TableEncoder(table, name="other"), tmp_path)
    assert not changed.from_cache and not renamed.from_cache
    assert len({first.key, changed.key, renamed.key}) == 3
    # A damaged cache is rebuilt, with a warning naming the file.
    (tmp_path / f"{first.key}.npy").write_bytes(b"not an array")
    rebuilt = build_pool_index(texts, encoder, tmp_path)
    assert not rebuilt.from_cache and "ignoring unusable retrieval cache" in caplog.text
    assert build_pool_index(texts, encoder, tmp_path).from_cache


def test_embed_mode_is_part_of_the_cache_key(tmp_path: Path) -> None:
    table = {"q": [1.0, 0.0], "r": [0.0, 1.0], "q\nans-q": [1.0, 1.0], "r\nans-r": [1.0, -1.0]}
    pool = make_pool(["q", "r"])
    encoder = TableEncoder(table)
    by_question = retrieve_similar(pool, ["q"], cache_dir=tmp_path, encoder=encoder)
    by_both = retrieve_similar(pool, ["q"], cache_dir=tmp_path, encoder=encoder, embed="question+answer")
    assert encoder.calls == 2
    assert by_question[0].score == pytest.approx(0.0, abs=1e-6)
    assert by_both[0].score == pytest.approx(0.0, abs=1e-6)
    assert len(list(tmp_path.glob("*.json"))) == 2


# --- the real default encoder, once -------------------------------------------------------------

def test_real_encoder_finds_the_topical_neighbour(tmp_path: Path) -> None:
    questions = [
        "Which organ produces insulin?",
        "What hormone lowers blood sugar levels?",
        "What is the capital city of France?",
        "Which river flows through Paris?",
        "How many legs does a spider have?",
    ]
    pool = [Example(id=f"e{i}", task="t", domain="d", question=q, answer="x") for i, q in enumerate(questions)]
    got = retrieve_similar(pool, ["e0", "e2"], "knn", s=1, cache_dir=tmp_path)
    assert [(c.id, c.source_case_id) for c in got] == [("e1", "e0"), ("e3", "e2")]
    assert all(0.0 < c.score <= 1.0 + 1e-6 for c in got)


def test_ranked_many_matches_ranked_when_the_first_batch_is_shallow() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(40, 4)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(vectors)
    exclude = {0, 1, 2}
    many = index.ranked_many(vectors[:3], exclude, depth=2)  # forces several deeper searches
    for query, stream in zip(vectors[:3], many):
        assert list(stream) == list(index.ranked(query, exclude))


def test_knn_with_fewer_slots_than_cases_serves_a_seeded_subset() -> None:
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(60, 8)).astype(np.float32)
    index = VectorIndex(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    cases = list(range(20))
    sources = {seed: [p.source for p in knn(index, cases, budget=5, seed=seed)] for seed in (0, 1)}
    assert all(len(set(s)) == 5 for s in sources.values())  # one neighbour each for 5 cases
    assert sources[0] != sorted(cases)[:5] or sources[1] != sorted(cases)[:5]
    assert sources[0] == [p.source for p in knn(index, cases, budget=5, seed=0)]


# --- tag-based retrieval ------------------------------------------------------------------------

def test_tag_quota_follows_the_tags_share_and_stays_within_the_tag() -> None:
    """Weakness cases: A1, A2 tagged "alg" (0°, 10°), G1 tagged "geo" (90°). Budget 3 → alg 2,
    geo 1. The nearest row to the alg cases, x (4°), is tagged geo, so alg must skip it: alg
    takes its own a1 (20°) and a2 (40°), geo takes x only if tagged geo — it is: x goes to geo."""
    from aptune.retrieval.strategies import by_tag

    angles = {"A1": 0, "A2": 10, "G1": 90, "x": 4, "a1": 20, "a2": 40, "g1": 70, "z": 5}
    index, names = angle_index(angles)
    tags = {"A1": ["alg"], "A2": ["alg"], "G1": ["geo"], "x": ["geo"], "a1": ["alg"], "a2": ["alg"],
            "g1": ["geo"], "z": ["other"]}
    picks = by_tag(index, [0, 1, 2], budget=3, seed=0, tags=[tags[n] for n in names])
    chosen = {names[p.row]: p.group for p in picks}
    assert chosen == {"a1": "alg", "a2": "alg", "g1": "geo"} or chosen == {"a1": "alg", "a2": "alg", "x": "geo"}
    assert "z" not in chosen, "an item none of the weakness cases' tags names is never retrieved"
    assert sum(1 for p in picks if p.group == "alg") == 2 and sum(1 for p in picks if p.group == "geo") == 1
    geo = next(p for p in picks if p.group == "geo")
    assert names[geo.row] == "g1"  # ranked by cosine to the geo cases' mean (90°): g1 70° beats x 4°


def test_taggers(tmp_path: Path) -> None:
    from aptune.retrieval.tags import UNTAGGED, keyword_tags, llm_tags, metadata_tags, parse_llm_tags

    items = [Example("1", "mmlu_algebra", "math", "Solve x + 2 = 4", answer="2", meta={"topic": "linear"}),
             Example("2", "mmlu_geography", "general", "Capital of Peru?", answer="Lima")]
    assert metadata_tags(items) == [["mmlu_algebra"], ["mmlu_geography"]]
    assert metadata_tags(items, "topic") == [["linear"], [UNTAGGED]]
    assert keyword_tags(items, {"equations": ["solve", "x"], "places": ["capital"]}) == [["equations"], ["places"]]
    assert parse_llm_tags("Algebra, Linear equations, math!, a very long tag here\nmore") == \
        ["algebra", "linear equations", "math"]
    calls = []

    def generate(prompts: list[str]) -> list[str]:
        calls.append(len(prompts))
        return ["algebra, equations", ""]

    first = llm_tags(items, generate, tmp_path, "m")
    assert first == [["algebra", "equations"], [UNTAGGED]]
    assert llm_tags(items, generate, tmp_path, "m") == first and calls == [2], "cached in the run folder"


def test_tag_strategy_through_retrieve_similar(tmp_path: Path) -> None:
    table = {n: unit(a) for n, a in {"A1": 0, "G1": 90, "a1": 20, "g1": 70, "g2": 80}.items()}
    pool = make_pool(list(table))
    tags = [["alg"], ["geo"], ["alg"], ["geo"], ["geo"]]
    cases = retrieve_similar(pool, ["A1", "G1"], strategy="tag", s=1.0, encoder=TableEncoder(table),
                             cache_dir=tmp_path, tags=tags)
    assert {(c.id, c.group) for c in cases} == {("a1", "alg"), ("g2", "geo")}
    with pytest.raises(ValueError, match="needs one tag list per pool item"):
        retrieve_similar(pool, ["A1"], strategy="tag", encoder=TableEncoder(table), cache_dir=tmp_path)


def test_an_apt_round_retrieves_by_tag_and_reports_it(tmp_path: Path) -> None:
    """retrieval.strategy: tag over a pool of two tasks (metadata tagger: the task): the
    retrieve record counts similar cases per tag with their mean similarity, and the report
    shows them."""
    import json

    import yaml

    from aptune.config import load_run_config
    from aptune.io import read_json, read_jsonl
    from aptune.methods.apt import APTRun
    from aptune.report.apt_report import write_report
    from tiny import save_tiny, tiny_mc_rows

    for name, seed in (("alpha", 1), ("beta", 2)):
        rows = [dict(r, id=f"{name}-{i}") for i, r in enumerate(tiny_mc_rows(30, seed=seed))]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "model": save_tiny(tmp_path / "m"), "precision": "fp32",
        "pool": {"tasks": ["alpha.jsonl", "beta.jsonl"], "split": "train"}, "dev": {"tasks": []},
        "domain_eval": {"tasks": ["alpha.jsonl"]}, "general_eval": {"tasks": []},
        "retrieval": {"strategy": "tag", "tagger": "metadata", "tag_field": "task", "s": 1.0},
        "mining": {"accept_judge": True},  # a random tiny model gets most items wrong
        "adapter": {"r": 4, "alpha": 8.0}, "train": {"batch_size": 4, "epochs": 1, "progress": False},
        "rounds": {"max_rounds": 1}}))
    APTRun(load_run_config(tmp_path / "c.yaml"), tmp_path / "run", progress=False).run()
    record = read_json(tmp_path / "run" / "manifest.json")["stages"]["round-1/retrieve"]
    retrieved = read_jsonl(tmp_path / "run" / "round-1" / "retrieved.jsonl")
    assert record["strategy"] == "tag" and retrieved
    assert set(record["groups"]) <= {"alpha", "beta"} and sum(g["count"] for g in record["groups"].values()) == len(retrieved)
    assert all(r["id"].startswith(r["group"]) for r in retrieved), "each tag retrieves its own task's items"
    report = write_report(tmp_path / "run").read_text()
    assert "## What retrieval added" in report and "| 1 | tag |" in report


def test_pool_ids_must_be_unique_across_its_tasks(tmp_path: Path) -> None:
    import json

    import yaml

    from aptune.config import load_run_config
    from aptune.methods.apt import APTRun
    from tiny import save_tiny, tiny_mc_rows

    for name in ("one", "two"):  # the same ids in both files
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in tiny_mc_rows(10, seed=1)))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "model": save_tiny(tmp_path / "m"), "pool": {"tasks": ["one.jsonl", "two.jsonl"], "split": "source"},
        "dev": {"tasks": []}, "domain_eval": {"tasks": []}, "general_eval": {"tasks": []}}))
    with pytest.raises(ValueError, match=r"pool: item id '.+' is in both .+one.jsonl and .+two.jsonl"):
        APTRun(load_run_config(tmp_path / "c.yaml"), tmp_path / "run", progress=False).validate()
