"""Synthetic drafts (laffi.feedback.drafts): every kind appears, each gets the verdict the gold answers give it, a wrong draft
never matches a gold answer, plausible answers are used only for unanswerable questions."""

import random
from collections import Counter

import pytest

from laffi.errors import LaffiError
from laffi.feedback.annotation import annotate, categorise
from laffi.feedback.drafts import add_drafts, near_miss, other_span, synthetic_drafts
from laffi.squad.metric import compute_exact, compute_f1

CTX = ("The Velmar bridge opened in 1931 after six years of work. It carries freight trains across the Oska river "
       "to the port of Drun, where ships load coal and grain for the northern towns.")


def record(qid, answers=(), plausible=(), prediction="It is old"):
    return {"qid": qid, "context": CTX, "question": "q?", "answers": list(answers),
            "answer_starts": [CTX.find(a) for a in answers], "plausible_answers": list(plausible),
            "plausible_starts": [CTX.find(p) for p in plausible], "prediction": prediction}


def many():
    answerable = [record(f"a{i}", answers=[a]) for i, a in
                  enumerate(["1931", "freight trains", "the Oska river", "six years", "coal and grain"] * 8)]
    unanswerable = [record(f"u{i}", plausible=[p]) for i, p in enumerate(["the port of Drun", "1931"] * 10)]
    return answerable + unanswerable


def test_every_kind_and_verdict_appears_and_follows_the_gold_answers():
    records, mix = add_drafts(many(), "own+synthetic", seed=0)
    assert set(mix) == {"own", "gold", "near_miss", "other_span", "abstain", "plausible"}
    annotated, _ = annotate(records)
    kinds = Counter((r["draft_kind"], r["category"]) for r in annotated)
    assert kinds[("gold", "correct")] > 0 and kinds[("abstain", "correct_abstain")] > 0
    assert kinds[("abstain", "wrong_abstain")] > 0 and kinds[("plausible", "should_abstain")] > 0
    assert all(cat.startswith("partial") for (kind, cat) in kinds if kind == "near_miss")
    assert all(cat == "wrong" for (kind, cat) in kinds if kind == "other_span")
    assert {r["category"] for r in annotated if r["draft_kind"] == "gold"} == {"correct"}


def test_a_wrong_draft_never_matches_a_gold_answer():
    rng = random.Random(0)
    for r in many()[:40]:
        for _ in range(5):
            draft = other_span(r, rng)
            if draft is not None:
                assert max(compute_f1(g, draft) for g in r["answers"]) == 0.0
                assert not any(compute_exact(g, draft) for g in r["answers"])


def test_near_misses_are_partly_right():
    rng = random.Random(1)
    for r in many()[:40]:
        draft = near_miss(r, rng)
        if draft is not None:
            assert categorise(r["answers"], draft).startswith("partial")


def test_plausible_answers_only_for_unanswerable_questions():
    rng = random.Random(2)
    answerable = record("a", answers=["1931"], plausible=["the port of Drun"])  # a malformed record, on purpose
    for _ in range(30):
        assert all(kind != "plausible" for _, kind in synthetic_drafts(answerable, rng, k=3))
    unanswerable = record("u", plausible=["the port of Drun"])
    kinds = {kind for _ in range(30) for _, kind in synthetic_drafts(unanswerable, rng, k=1)}
    assert kinds == {"plausible", "abstain"}
    without = record("v")  # no plausible answer recorded: another span of the passage stands in
    assert {kind for _ in range(30) for _, kind in synthetic_drafts(without, rng, k=2)} <= {"abstain", "other_span"}


def test_own_mix_keeps_only_the_models_drafts_and_bad_options_are_refused():
    records, mix = add_drafts(many(), "own")
    assert mix == {"own": len(many())} and all(r["prediction"] == "It is old" for r in records)
    with pytest.raises(LaffiError, match="draft mix"):
        add_drafts(many(), "mixed")


def test_plausible_answers_are_read_from_the_official_file(shared_squad):
    from laffi.squad.data import load_squad

    examples, _ = load_squad(str(shared_squad))
    with_plausible = [e for e in examples if e.plausible_answers]
    assert with_plausible and all(e.is_impossible for e in with_plausible)
    assert all(e.context[s:s + len(p)] == p for e in with_plausible[:200]
               for p, s in zip(e.plausible_answers, e.plausible_starts))


def test_balanced_mix_adds_drafts_of_the_scarcer_verdict_until_level():
    from laffi.feedback.drafts import verdict_of

    # the SFT folds' situation: wrong spans on answerable questions, confident spans on unanswerable ones
    own = [record(f"a{i}", answers=["1931"], prediction="freight trains") for i in range(6)] + \
          [record(f"b{i}", answers=["six years"], prediction="six years") for i in range(2)] + \
          [record(f"u{i}", plausible=["the port of Drun"], prediction="the port of Drun") for i in range(4)]
    records, mix = add_drafts(own, "own+balanced", seed=0)
    verdicts = Counter(verdict_of(r, r["prediction"]) for r in records)
    assert verdicts["correct"] == verdicts["incorrect"] == 10  # 2 own right + 8 added; 10 own wrong
    added = records[len(own):]
    assert len(added) == 8 and {r["draft_kind"] for r in added} <= {"gold", "abstain"}
    assert all(r["prediction"] == "" for r in added if not r["answers"])  # "no answer" where the passage has none
    assert len({r["qid"] for r in added}) == len(added)  # one per question
    annotated, _ = annotate(records)  # the annotator agrees with the verdict the drafts were made for
    assert Counter(a["feedback"].split()[0].strip(".:,") for a in annotated) == {"Correct": 10, "Incorrect": 10}
    # the other way: mostly right, so wrong drafts are added
    right = [record(f"r{i}", answers=["1931"], prediction="1931") for i in range(5)] + [record("w", answers=["1931"])]
    records, _ = add_drafts(right, "own+balanced", seed=0)
    assert Counter(verdict_of(r, r["prediction"]) for r in records) == {"correct": 5, "incorrect": 5}


def test_own_drafts_can_be_a_trained_models_answers_read_from_evaluation_folders(tmp_path):
    from types import SimpleNamespace

    from laffi.feedback.drafts import predicted_drafts
    from laffi.io import write_jsonl_atomic

    def ex(qid):
        return SimpleNamespace(qid=qid, to_dict=lambda: {"qid": qid, "answers": []})

    for fold, rows in (("sft-1", [{"qid": "q1", "span": "1931", "na_prob": 0.9, "direct": ""}]),
                       ("sft-2", [{"qid": "q2", "span": None, "direct": "Drun"}])):
        (tmp_path / f"without-{fold}" / fold).mkdir(parents=True)
        write_jsonl_atomic(tmp_path / f"without-{fold}" / fold / "examples.jsonl", rows)
    got = predicted_drafts([ex("q1"), ex("q2")], [str(tmp_path / "without-*" / "sft-*")])
    # the span even where the shown answer abstained (na_prob 0.9): the model's confident answer is the draft
    assert [(r["qid"], r["prediction"], r["predicted_by"]) for r in got] == [("q1", "1931", "sft-1"),
                                                                            ("q2", "Drun", "sft-2")]
    with pytest.raises(LaffiError, match="1 of 3 training questions have no answer"):
        predicted_drafts([ex("q1"), ex("q2"), ex("q3")], [str(tmp_path / "without-*" / "sft-*")])
    # one folder matched by two patterns is read once; a second folder answering q1 again is refused
    assert len(predicted_drafts([ex("q1")], [str(tmp_path / "without-sft-1" / "sft-1"), str(tmp_path / "*" / "sft-1")])) == 1
    (tmp_path / "again" / "sft-3").mkdir(parents=True)
    write_jsonl_atomic(tmp_path / "again" / "sft-3" / "examples.jsonl", [{"qid": "q1", "span": "1932"}])
    with pytest.raises(LaffiError, match="answered in two"):
        predicted_drafts([ex("q1")], [str(tmp_path / "*" / "sft-*")])
    with pytest.raises(LaffiError, match="no evaluation folder"):
        predicted_drafts([ex("q1")], [str(tmp_path / "nothing-*")])
