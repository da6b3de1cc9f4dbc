"""Annotators on hand-made cases: every category, unanswerable both ways, several gold answers; human import and
the hybrid mix."""

import random

import pytest

from laffi.feedback.annotation import (
    annotate,
    consistent_with_gold,
    match_human_feedback,
    mix_feedback,
    reference_feedback,
)
from laffi.inference.prompts import parse_feedback

CTX = "The Velmar bridge opened in 1931. It carries freight trains across the Oska river to the port of Drun."


def rec(pred, answers=("freight trains",), qid="q", question="What does the bridge carry?"):
    starts = [CTX.find(a) for a in answers]
    return {"qid": qid, "context": CTX, "question": question, "answers": list(answers), "answer_starts": starts,
            "prediction": pred}


@pytest.mark.parametrize("pred,answers,category", [
    ("Freight trains.", ("freight trains",), "correct"),
    ("", (), "correct_abstain"),
    ("No answer", (), "correct_abstain"),
    ("1931", (), "should_abstain"),
    ("", ("freight trains",), "wrong_abstain"),
    ("It carries freight trains across the Oska river to the port of Drun", ("freight trains",), "partial_sentence"),
    ("freight trains across the river", ("freight trains",), "partial_extra"),
    ("trains", ("freight trains",), "partial_missing"),
    ("passenger trains", ("freight trains",), "partial_overlap"),
    ("the port of Drun", ("freight trains",), "wrong"),
])
def test_every_category(pred, answers, category):
    r = rec(pred, answers)
    text, got = reference_feedback(r, random.Random(0))
    assert got == category
    verdict, revised = parse_feedback(text)
    assert verdict == ("correct" if category.startswith("correct") else
                       "partly" if category.startswith("partial") else "incorrect")
    assert revised == (answers[0] if answers else "")  # always ends with what the answer should be
    assert consistent_with_gold(text, list(answers), r["prediction"]) == (True, "ok")


def test_feedback_points_at_the_passage():
    text, _ = reference_feedback(rec("the port of Drun"), random.Random(0))
    assert "carries freight trains across the Oska river" in text


def test_several_gold_answers_use_the_closest():
    r = rec("the Oska river", answers=("freight trains", "Oska river", "the Oska"))
    text, category = reference_feedback(r, random.Random(0))
    assert category == "correct" and parse_feedback(text)[1] == "Oska river"


def test_phrasing_varies_with_the_seed_but_never_contradicts_gold():
    texts = {reference_feedback(rec("the port of Drun"), random.Random(s))[0] for s in range(12)}
    assert len(texts) > 1
    assert all(consistent_with_gold(t, ["freight trains"], "the port of Drun")[0] for t in texts)


@pytest.mark.parametrize("text,why", [
    ("", "empty"),
    ("The bridge is nice.", "no verdict"),
    ("Correct: so the answer should be the port of Drun.", "contradicts"),
    ("Incorrect: the passage says otherwise.", "does not say what the answer should be"),
    ("Incorrect: so the answer should be the river.", "not a gold answer"),
])
def test_consistency_check_catches_bad_llm_feedback(text, why):
    ok, reason = consistent_with_gold(text, ["freight trains"], "the port of Drun")
    assert not ok and why in reason


def test_llm_annotator_failures_are_replaced_and_counted(tiny_lm):
    records = [rec("the port of Drun", qid=f"q{i}") for i in range(3)]
    out, report = annotate(records, "llm", lm=tiny_lm)  # the random model writes gibberish: every check fails
    assert report["llm"]["failed"] == 3 and report["llm"]["passed"] == 0 and report["llm"]["reasons"]
    assert all(r["feedback_source"] == "reference" and r["llm_check"] != "ok" for r in out)
    flagged, report = annotate(records, "llm", lm=tiny_lm, on_fail="flag")
    assert all(r["feedback_source"] == "llm" for r in flagged) and report["llm"]["failed"] == 3


def test_human_rows_match_by_qid_or_question_and_problems_are_reported():
    records = [rec("x", qid="a", question="What does the bridge carry?"), rec("y", qid="b", question="When?")]
    rows = [{"qid": "a", "feedback": "Incorrect: it carries freight trains.", "_where": "line 2"},
            {"question": "  when? ", "feedback": "Correct.", "annotator": "ana", "_where": "line 3"},
            {"qid": "zzz", "feedback": "Correct.", "_where": "line 4"},
            {"qid": "a", "feedback": "  ", "_where": "line 5"}]
    matched, problems = match_human_feedback(records, rows)
    assert set(matched) == {"a", "b"}
    assert problems == ["line 4: matches no question by qid or question text", "line 5: no feedback text"]


@pytest.mark.parametrize("fraction,available,expected_human", [(0.5, 6, 5), (1.0, 6, 6), (0.0, 6, 0), (0.3, 2, 2)])
def test_hybrid_mix_fraction_and_sources(fraction, available, expected_human):
    records = [dict(rec("x", qid=f"q{i}"), feedback="AI says", feedback_source="reference") for i in range(10)]
    human = {f"q{i}": {"feedback": f"human {i}", "annotator": "ana"} for i in range(available)}
    out, counts = mix_feedback(records, human, fraction, seed=1)
    assert counts["human"] == expected_human and counts["ai"] == 10 - expected_human
    assert sum(r["feedback_source"] == "human" for r in out) == expected_human
    for r in out:
        assert r["feedback"] == ("AI says" if r["feedback_source"] == "reference" else f"human {r['qid'][1:]}")


def test_hybrid_fraction_out_of_range_is_rejected():
    from laffi.errors import LaffiError

    with pytest.raises(LaffiError, match="human-fraction"):
        mix_feedback([], {}, 1.5)
