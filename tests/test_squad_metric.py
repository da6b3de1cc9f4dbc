"""SQuAD v2 EM/F1 against cases computed by hand from the official rules."""

import pytest

from laffi.data import QAExample
from laffi.squad_metric import compute_exact, compute_f1, normalize_answer, score_one, squad_v2_scores


def test_normalize_drops_case_punctuation_articles_and_spaces():
    # punctuation goes before articles, as in the official script: "A-road" -> "aroad" keeps its "a"
    assert normalize_answer("  The  Rhine-river, (an) A-road!  ") == "rhineriver aroad"
    assert normalize_answer("Theatre and anthem") == "theatre and anthem"  # articles only as whole words


@pytest.mark.parametrize("gold,pred,exact", [
    ("The Rhine.", "rhine", 1),
    ("an apple", "Apple!", 1),
    ("1931", "in 1931", 0),
])
def test_exact(gold, pred, exact):
    assert compute_exact(gold, pred) == exact


def test_f1_partial_overlap():
    # gold tokens [big, red, dog], pred [red, dog, barked]: 2 shared, P = R = 2/3
    assert compute_f1("the big red dog", "red dog barked") == pytest.approx(2 / 3)
    # repeated tokens count once per occurrence: gold [a1 x2], pred [a1 x1]
    assert compute_f1("rose rose", "rose") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert compute_f1("rhine", "danube") == 0.0


def test_several_gold_answers_take_the_max():
    # vs "Paris": P=1/2, R=1 -> 2/3 ; vs "city of Paris": P=1/2, R=1/3 -> 0.4
    em, f1 = score_one(("Paris", "city of Paris"), "Paris France")
    assert em == 0 and f1 == pytest.approx(2 / 3)
    assert score_one(("Paris", "city of Paris"), "the City of Paris") == (1, 1.0)


def test_gold_answers_that_normalise_to_nothing_are_ignored():
    assert score_one(("the", "Oslo"), "Oslo") == (1, 1.0)
    assert score_one(("!",), "") == (1, 1.0)  # only empty golds -> treated as unanswerable


@pytest.mark.parametrize("answers,pred,expected", [
    ((), "", (1, 1.0)),                 # unanswerable, abstained: right
    ((), "in 1931", (0, 0.0)),          # unanswerable, answered: wrong
    (("1931",), "", (0, 0.0)),          # answerable, abstained: wrong
])
def test_unanswerable_both_ways(answers, pred, expected):
    assert score_one(answers, pred) == expected


def test_summary_percentages_and_breakdown():
    exs = [QAExample("a", "t", "c", "q", ("red dog",)), QAExample("b", "t", "c", "q", ("1931",)),
           QAExample("c", "t", "c", "q", ()), QAExample("d", "t", "c", "q", ())]
    preds = {"a": "dog", "b": "1931", "c": "", "d": "something"}
    m = squad_v2_scores(exs, preds)
    # per question (em, f1): a (0, 2/3), b (1, 1), c (1, 1), d (0, 0)
    assert m["total"] == 4 and m["HasAns_total"] == 2 and m["NoAns_total"] == 2
    assert m["exact"] == pytest.approx(50.0)
    assert m["f1"] == pytest.approx(100 * (2 / 3 + 1 + 1 + 0) / 4)
    assert m["HasAns_exact"] == pytest.approx(50.0) and m["HasAns_f1"] == pytest.approx(100 * (2 / 3 + 1) / 2)
    assert m["NoAns_exact"] == pytest.approx(50.0) and m["NoAns_f1"] == pytest.approx(50.0)


def test_missing_prediction_scores_zero_and_no_breakdown_without_that_kind():
    exs = [QAExample("a", "t", "c", "q", ("x",)), QAExample("b", "t", "c", "q", ("y",))]
    m = squad_v2_scores(exs, {"a": "x"})
    assert m["exact"] == 50.0 and "NoAns_exact" not in m
