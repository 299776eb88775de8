"""Bootstrap intervals and position statistics."""

from __future__ import annotations

import numpy as np
import pytest

from aptune.evaluate.metrics import bootstrap_mean, paired_bootstrap_delta, position_stats


def test_bootstrap_interval_brackets_mean_and_shrinks_with_n():
    small = bootstrap_mean([1, 0] * 50, seed=1)
    large = bootstrap_mean([1, 0] * 2000, seed=1)
    assert small.value == pytest.approx(0.5) and large.value == pytest.approx(0.5)
    assert small.low < 0.5 < small.high
    # binomial s.e. at n=100 is 0.05, so the 95% half-width is about 0.098
    assert (small.high - small.low) / 2 == pytest.approx(0.098, abs=0.02)
    assert (large.high - large.low) < (small.high - small.low) / 4


def test_bootstrap_is_seeded():
    data = np.random.default_rng(3).integers(0, 2, 300)
    assert bootstrap_mean(data, seed=7) == bootstrap_mean(data, seed=7)


def test_constant_data_has_zero_width():
    iv = bootstrap_mean([1.0] * 20)
    assert (iv.value, iv.low, iv.high) == (1.0, 1.0, 1.0)


def test_empty_is_nan_not_crash():
    assert np.isnan(bootstrap_mean([]).value)


def test_paired_delta_uses_item_pairing():
    before = [0, 1] * 100
    after = [1, 1] * 100  # every wrong item fixed: delta exactly +0.5 on the pairs
    iv = paired_bootstrap_delta(after, before)
    assert iv.value == pytest.approx(0.5)
    assert iv.low > 0.4
    with pytest.raises(ValueError, match="same items"):
        paired_bootstrap_delta([1, 0], [1])


def test_position_stats_majority_baseline_and_histogram():
    golds = [0, 0, 0, 1, 2, 3, 0, 1]
    preds = [0, 0, 0, 0, 0, 0, 0, 1]
    ps = position_stats(golds, preds)
    assert ps.majority_position == 0
    assert ps.majority_baseline == pytest.approx(4 / 8)
    assert ps.predicted_histogram == {0: 7, 1: 1}
    assert ps.gold_histogram == {0: 4, 1: 2, 2: 1, 3: 1}


def test_interval_formats_percent_nats_and_missing():
    from aptune.evaluate.metrics import Interval

    iv = Interval(0.09, 0.035, 0.145, n=200)
    assert iv.pct() == "9.0 [3.5, 14.5]" and iv.pct(signed=True) == "+9.0 [+3.5, +14.5]"
    assert Interval(-0.123, -0.2, -0.05, n=3).nats() == "-0.12 [-0.20, -0.05]"
    assert Interval.empty().pct() == "–" and Interval.empty().nats() == "–" and Interval.empty().n == 0
    assert bootstrap_mean([]).pct() == "–" and bootstrap_mean([1, 0, 1]).n == 3
    assert iv.contains(0.1) and not iv.contains(0.0)


def test_interval_keeps_the_json_shapes_on_disk():
    """metrics.json tasks: value/low/high/level; compare-results.json: value/low/high/n;
    metrics.json summary: accuracy/low/high/n. Each is read back by ``from_dict``."""
    from aptune.evaluate.metrics import Interval, TaskMetrics

    iv = bootstrap_mean([1, 0, 1, 1], seed=0)
    assert list(iv.to_dict()) == ["value", "low", "high", "n"] and iv.to_dict()["n"] == 4
    assert list(iv.to_metric_dict()) == ["value", "low", "high", "level"]
    assert list(iv.to_summary_dict()) == ["accuracy", "low", "high", "n"]
    assert TaskMetrics("t", "d", 4, {"accuracy": iv}).to_dict()["metrics"]["accuracy"] == iv.to_metric_dict()
    assert Interval.from_dict(iv.to_summary_dict()) == Interval(iv.value, iv.low, iv.high, 0.95, 4)
    assert Interval.from_dict(iv.to_metric_dict()) == Interval(iv.value, iv.low, iv.high, 0.95, None)


def test_predicted_positions_read_as_letter_shares_in_position_order():
    from aptune.evaluate.metrics import format_positions

    assert format_positions({2: 1, 0: 2, 1: 1}) == "A:50% B:25% C:25%"
    assert format_positions({}) == "–" and format_positions({0: 0}, empty="-") == "-"
