"""Bootstrap intervals and balanced verdict accuracy on cases worked out by hand."""

import pytest

from laffi.evaluation.stats import balanced_verdict_accuracy, bootstrap_ci, paired_diff_ci, seed_mean, verdict


def test_constant_values_have_a_zero_width_interval():
    assert bootstrap_ci([0.5] * 40) == (0.5, 0.5, 0.5)


def test_interval_of_a_coin_matches_the_normal_approximation():
    # 200 questions, half right: mean 0.5, standard error sqrt(0.25/200) = 0.0354, 95 % ~ +-0.069
    mean, lo, hi = bootstrap_ci([1.0, 0.0] * 100, n_boot=4000, seed=1)
    assert mean == 0.5
    assert lo == pytest.approx(0.5 - 0.069, abs=0.012) and hi == pytest.approx(0.5 + 0.069, abs=0.012)


def test_paired_difference_sees_what_unpaired_intervals_hide():
    # b is a plus 0.02 on every question: each mean's interval is wide, the paired difference is exactly 0.02
    a = [0.1, 0.9, 0.4, 0.7, 0.0, 1.0] * 20
    b = [x + 0.02 for x in a]
    diff, lo, hi = paired_diff_ci(b, a)
    assert (round(diff, 6), round(lo, 6), round(hi, 6)) == (0.02, 0.02, 0.02)
    assert verdict(diff, lo, hi) == "better" and verdict(-diff, -hi, -lo) == "worse"
    assert verdict(0.01, -0.02, 0.04) == "no difference"
    assert verdict(diff, lo, hi, ("abstains more", "abstains less")) == "abstains more"


def test_balanced_verdict_accuracy_is_not_fooled_by_always_incorrect():
    right = [True] * 2 + [False] * 18
    always_incorrect = [False] * 20
    assert balanced_verdict_accuracy(right, always_incorrect) == 50.0  # raw agreement would be 90 %
    perfect = list(right)
    assert balanced_verdict_accuracy(right, perfect) == 100.0
    assert balanced_verdict_accuracy([True, True], [True, False]) is None  # no wrong draft: undefined


def test_seed_mean_averages_each_question():
    assert seed_mean([[1.0, 0.0, 0.5], [0.0, 0.0, 1.0]]) == [0.5, 0.0, 0.75]
    with pytest.raises(ValueError):
        seed_mean([[1.0], [1.0, 0.0]])


def test_abstaining_more_is_never_called_better():
    from laffi.evaluation.report import compare

    per_question = {"a": {"f1": [1.0] * 30, "abstain": [1.0] * 30}, "b": {"f1": [0.0] * 30, "abstain": [0.0] * 30}}
    rows = {r["metric"]: r["verdict"] for r in compare(per_question, "a", "b")}
    assert rows == {"f1": "better", "abstain": "abstains more"}


def test_balanced_accuracy_interval_holds_the_value_and_narrows_with_more_questions():
    from laffi.evaluation.stats import balanced_accuracy_ci, balanced_verdict_accuracy

    right = [True, False] * 20
    called = [True, False] * 15 + [False, True] * 5  # 30 of 40 verdicts right
    value = balanced_verdict_accuracy(right, called)
    lo, hi = balanced_accuracy_ci(right, called)
    assert lo < value < hi and value == 75.0
    lo4, hi4 = balanced_accuracy_ci(right * 4, called * 4)
    assert lo < lo4 < value < hi4 < hi
    assert balanced_accuracy_ci([True, True], [True, False]) is None  # no wrong drafts: undefined
