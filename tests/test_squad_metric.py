"""SQuAD v2 EM/F1 against cases computed by hand from the official rules."""

import pytest

from laffi.squad.data import QAExample
from laffi.squad.metric import compute_exact, compute_f1, normalize_answer, score_one, squad_v2_scores


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


# --- the same scorer as an `evaluate` module ---------------------------------------------------------------------
METRIC_CASE = {
    "predictions": [{"id": "a", "prediction_text": "1931", "no_answer_probability": 0.1},
                    {"id": "b", "prediction_text": "the Oska river", "no_answer_probability": 0.7},
                    {"id": "c", "prediction_text": "Drun", "no_answer_probability": 0.4},
                    {"id": "d", "prediction_text": "", "no_answer_probability": 0.9}],
    "references": [{"id": "a", "answers": {"text": ["1931"], "answer_start": [0]}},
                   {"id": "b", "answers": {"text": ["Oska"], "answer_start": [0]}},
                   {"id": "c", "answers": {"text": [], "answer_start": []}},
                   {"id": "d", "answers": {"text": [], "answer_start": []}}],
}


def test_evaluate_module_loads_offline_and_scores(monkeypatch):
    import evaluate

    from laffi.squad.metric import METRIC_PATH

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = evaluate.load(METRIC_PATH).compute(**METRIC_CASE, no_answer_threshold=0.5)
    # at 0.5: a right, b abstains (0 on HasAns), c a span on an unanswerable one (0), d right
    assert out["exact"] == 50.0 and out["HasAns_exact"] == 50.0 and out["NoAns_exact"] == 50.0
    # the search by rising na_prob: 2 (c, d abstain) -> a +1 = 3 -> c -1 = 2 -> b +2/3 ("oska river" vs "oska")
    # -> d +0: the best is 3 of 4, at a's 0.1
    assert out["best_f1"] == 75.0 and out["best_f1_thresh"] == pytest.approx(0.1)
    assert out["f1"] == 50.0  # b abstains at 0.5, where answering would give 2/3


def test_evaluate_module_matches_the_hub_metric():
    """Where the Hub is reachable: the Hub's squad_v2 metric gives the same numbers (skipped offline)."""
    import evaluate

    from laffi.squad.metric import METRIC_PATH

    try:
        hub = evaluate.load("squad_v2")
    except Exception as e:  # no network here: a real skip, said why
        pytest.skip(f"the Hub's squad_v2 metric can't be loaded here ({type(e).__name__})")
    ours = evaluate.load(METRIC_PATH).compute(**METRIC_CASE)
    theirs = hub.compute(**METRIC_CASE)
    assert ours.keys() <= theirs.keys()
    for k in ours:
        assert ours[k] == pytest.approx(theirs[k])
