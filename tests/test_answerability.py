"""Answerability: na_prob and forced spans, AUC and the official threshold search, calibration files that travel
with an adapter, and the verifier path (one forward pass per candidate, the shared prefix exact)."""

import json
from types import SimpleNamespace

import pytest

from laffi.inference.answerability import (
    Calibration,
    FirstToken,
    abstain_token_ids,
    answerability_auc,
    choose_threshold,
    correct_token_ids,
    decide,
    read_calibration,
    write_calibration,
)
from laffi.squad.metric import find_best_thresh, squad_v2_scores

PAIRS = [("The Velmar bridge opened in 1931 and carries trains to Drun.", "When did the bridge open?"),
         ("The Velmar bridge opened in 1931 and carries trains to Drun.", "Who painted the bridge?"),
         ("Ada Brill wrote three novels about the island of Pell.", "How many novels did she write?")]


def ex(qid, answers):
    return SimpleNamespace(qid=qid, answers=answers)


def test_auc_by_hand():
    examples = [ex("a", ["x"]), ex("b", ["y"]), ex("c", []), ex("d", [])]
    # NoAns c (0.9) beats both HasAns; NoAns d (0.3) beats a (0.2), ties b (0.3): (2 + 1 + 0.5) / 4
    assert answerability_auc(examples, [0.2, 0.3, 0.9, 0.3]) == pytest.approx(3.5 / 4)
    assert answerability_auc(examples[:2], [0.1, 0.2]) is None  # one kind only: undefined


def test_official_threshold_search_by_hand():
    # answering in order of rising na_prob: +1 (a right), -1 (c: a span on an unanswerable one), +0.5 (b half right)
    preds = {"a": "x", "b": "y z", "c": "w", "d": ""}
    f1 = {"a": 1.0, "b": 0.5, "c": 0.0, "d": 1.0}
    has_ans = {"a": True, "b": True, "c": False, "d": False}
    na = {"a": 0.1, "c": 0.2, "b": 0.3, "d": 0.8}
    # start: 2 NoAns right (everything abstains); after a: 3; after c: 2; after b: 2.5; after d: 2.5 -> best 3 at 0.1
    assert find_best_thresh(preds, f1, na, has_ans) == (pytest.approx(75.0), 0.1)
    examples = [ex("a", ["x"]), ex("b", ["y"]), ex("c", []), ex("d", [])]
    cal = choose_threshold(examples, ["x", "y z", "w", ""], [0.1, 0.3, 0.2, 0.8], chosen_on={"articles": "v"})
    assert cal.threshold == 0.1 and cal.validation["f1"] == 75.0 and cal.chosen_on == {"articles": "v", "n": 4}
    assert cal.validation["abstain"] == 75.0  # only a (0.1) is not above 0.1
    # the official rule: above the threshold means "no answer"
    assert decide("x", 0.1, 0.1) == "x" and decide("x", 0.11, 0.1) == "" and decide("x", 0.4, None) == "x"
    # at 0.2: a right, c a span on an unanswerable one, b and d abstain (b wrongly): (1 + 0 + 0 + 1) / 4
    scored = squad_v2_scores(examples, {"a": "x", "b": "y", "c": "w", "d": ""}, na, na_prob_thresh=0.2)
    assert scored["f1"] == 50.0 and scored["HasAns_f1"] == 50.0 and scored["NoAns_f1"] == 50.0
    # best: 3 right after a (0.1); answering c too loses one, b wins it back: a tie is not better (official: >)
    assert scored["best_f1"] == 75.0 and scored["best_f1_thresh"] == 0.1


def test_calibration_round_trip(tmp_path):
    cal = Calibration(threshold=0.42, na_prob="contrast", chosen_on={"articles": "validation"}, base="embedded")
    write_calibration(tmp_path, cal)
    assert read_calibration(tmp_path) == cal
    assert read_calibration(tmp_path, base="other/model") is None  # written for another base model
    (tmp_path / "calibration.json").write_text("{not json")
    assert read_calibration(tmp_path) is None


def test_abstain_and_verdict_tokens(tiny_lm):
    tok = tiny_lm.tokenizer
    texts = {tok.convert_tokens_to_string([tok.convert_ids_to_tokens(i)]).strip().lower()
             for i in abstain_token_ids(tok)}
    assert texts and texts <= {"no", "none", "nothing", "unknown"}
    assert correct_token_ids(tok), "the tiny tokenizer knows 'Correct' (its corpus has feedback in it)"


def test_first_token_probe_matches_a_forward_pass_and_forbids(tiny_lm):
    import torch

    from laffi.inference.generation import GenerationConfig, generate_batched
    from laffi.inference.prompts import qa_prompt

    tok = tiny_lm.tokenizer
    # the most likely first token of each prompt is what we "forbid": the reply must then start otherwise
    prompts = [qa_prompt(tok, c, q) for c, q in PAIRS]
    firsts = []
    for p in prompts:
        with torch.no_grad(), tiny_lm.rows(["sft"]):
            logits = tiny_lm.model(**tok(p, return_tensors="pt", add_special_tokens=False)).logits[0, -1]
        firsts.append(int(logits.argmax()))
    spec = FirstToken(tuple(sorted(set(firsts))), forbid=True)
    probs = [None] * len(prompts)
    texts = generate_batched(tiny_lm, [(p, "sft") for p in prompts], GenerationConfig(max_new_tokens=3),
                             first_token=spec, first_probs=probs)
    for p, text, got in zip(prompts, texts, probs):
        with torch.no_grad(), tiny_lm.rows(["sft"]):
            logits = tiny_lm.model(**tok(p, return_tensors="pt", add_special_tokens=False)).logits[0, -1]
        assert got == pytest.approx(torch.softmax(logits.float(), -1)[list(spec.token_ids)].sum().item(), abs=1e-5)
        first_id = tok(text, add_special_tokens=False)["input_ids"][:1]
        assert first_id and first_id[0] not in spec.token_ids


def test_answers_apply_the_threshold_from_the_adapter_folder(tiny_dir, tiny_adapters, tmp_path):
    import shutil

    from laffi.inference.generation import answer_questions
    from laffi.inference.models import ModelConfig, load_model

    folder = tmp_path / "adapters"
    shutil.copytree(tiny_adapters, folder)
    write_calibration(folder / "sft", Calibration(threshold=0.0))  # any doubt at all: abstain
    write_calibration(folder / "laffi", Calibration(threshold=1.0))  # never abstain
    lm = load_model(ModelConfig(base=str(tiny_dir), adapters_dir=str(folder), dtype="float32", device="cpu"))
    out = answer_questions(lm, PAIRS, ["base", "sft", "laffi"])
    assert all(a.na_prob > 0 and a.text == "" and a.span for a in out["sft"])
    assert all(a.text == a.span and a.span for a in out["laffi"])
    assert all(a.text == decide(a.span, a.na_prob, None) for a in out["base"])  # no file: the default 0.5
    write_calibration(folder / "base-calibration.json", Calibration(threshold=0.0, base=str(tiny_dir)))
    assert all(a.text == "" for a in answer_questions(lm, PAIRS, ["base"])["base"])


def test_verifier_scores_each_candidate_as_a_separate_forward_pass(tiny_lm):
    import torch

    from laffi.inference.prompts import feedback_prompt
    from laffi.inference.selffeedback import verify

    tok = tiny_lm.tokenizer
    ids = correct_token_ids(tok)
    cands = {"laffi": [["1931", "Drun", ""], ["the painter", ""], ["three", "Pell", ""]]}
    got = verify(tiny_lm, PAIRS, cands)
    for i, (context, question) in enumerate(PAIRS):
        for j, c in enumerate(cands["laffi"][i]):
            enc = tok(feedback_prompt(tok, context, question, c), return_tensors="pt", add_special_tokens=False)
            with torch.no_grad(), tiny_lm.rows(["laffi"]):
                logits = tiny_lm.model(**enc).logits[0, -1]
            want = torch.softmax(logits.float(), -1)[ids].sum().item()
            assert got["laffi"][i][j] == pytest.approx(want, abs=1e-5)


def test_verify_path_answers_with_the_best_candidate(tiny_lm):
    from laffi.inference.selffeedback import AnswerPath, answer_all, verdict_na_prob

    out = answer_all(tiny_lm, PAIRS, ["sft", "laffi"], paths={"laffi": AnswerPath("verify", "base")})
    for r in out["laffi"]:
        spans = [c for c in r.candidates if c["answer"]]
        best = max(spans, key=lambda c: c["score"])
        no = next(c for c in r.candidates if not c["answer"])
        assert r.span == best["answer"] and r.candidates[-1] is no
        assert r.na_prob == pytest.approx(verdict_na_prob(no["score"], best["score"], "span"), abs=1e-4)
        assert r.answer == decide(r.span, r.na_prob, None)
    assert all(r.candidates is None for r in out["sft"])
    assert json.dumps(out["laffi"][0].fields())  # the API's result is plain JSON


def test_rank_path_scores_each_candidate_by_its_likelihood(tiny_lm):
    """The fair baseline: a variant choosing among the same candidates by its own likelihood of each as its reply
    (teacher-forced), checked against one forward pass per candidate."""
    import math

    import torch

    from laffi.inference.prompts import NO_ANSWER, qa_prompt
    from laffi.inference.selffeedback import AnswerPath, answer_all, likelihoods

    tok = tiny_lm.tokenizer
    cands = {"sft": [["1931", ""], ["the painter", "Drun", ""], ["three", ""]]}
    got = likelihoods(tiny_lm, PAIRS, cands)
    for i, (context, question) in enumerate(PAIRS):
        logps = []
        for c in cands["sft"][i]:
            p = tok(qa_prompt(tok, context, question), add_special_tokens=False)["input_ids"]
            r = tok((c or NO_ANSWER) + tok.eos_token, add_special_tokens=False)["input_ids"]
            with torch.no_grad(), tiny_lm.rows(["sft"]):
                lp = torch.log_softmax(tiny_lm.model(input_ids=torch.tensor([p + r])).logits[0].float(), -1)
            logps.append(sum(lp[len(p) - 1 + j, t].item() for j, t in enumerate(r)))
        z = sum(math.exp(x) for x in logps)
        assert got["sft"][i] == pytest.approx([math.exp(x) / z for x in logps], abs=1e-4)
    out = answer_all(tiny_lm, PAIRS, ["sft"], paths={"sft": AnswerPath("rank", "base")})
    for r in out["sft"]:
        no = next(c for c in r.candidates if not c["answer"])
        assert r.na_prob == pytest.approx(no["score"], abs=1e-4) and sum(c["score"] for c in r.candidates) == \
            pytest.approx(1, abs=1e-3)
        top = max(c["score"] for c in r.candidates if c["answer"])  # (scores are rounded: ties are possible)
        assert r.span in [c["answer"] for c in r.candidates if c["answer"] and c["score"] == top]


def test_another_precision_keeps_the_float32_threshold_only_where_it_does_as_well():
    """kept_threshold: bfloat16's calibration takes float32's threshold when that scores within KEEP_F1 of its
    own best on the same validation questions (one noisy search fewer), and its own where float32's is worse."""
    from laffi.inference.answerability import Calibration, choose_threshold, kept_threshold
    from laffi.squad.data import QAExample

    # 40 questions: answerable ones right at low na_prob, unanswerable ones at high; a few in between
    examples = [QAExample(f"q{i}", "t", "c", "q", answers=("yes",) if i % 2 else ()) for i in range(40)]
    spans = ["yes"] * 40
    na = [0.1 + 0.01 * (i % 7) if i % 2 else 0.6 + 0.01 * (i % 5) for i in range(40)]
    on = {"sha256": "abc", "articles": "validation", "limit": 40, "seed": 0}
    own = choose_threshold(examples, spans, na, "p_abstain", on)
    own.precision = "bfloat16"
    assert own.validation["f1"] == 100.0
    near = Calibration(threshold=0.5, na_prob="p_abstain", chosen_on={**on, "n": 40}, validation={"f1": 99.0})
    kept = kept_threshold(examples, spans, na, own, near)
    assert kept.threshold == 0.5 and kept.chosen_on["threshold_of"] == "float32" and kept.precision == "bfloat16"
    assert kept.validation["f1"] == 100.0 and kept.validation["abstain"] == 50.0
    far = Calibration(threshold=0.05, na_prob="p_abstain", chosen_on={**on, "n": 40})  # abstains on everything
    assert kept_threshold(examples, spans, na, own, far) is own
    elsewhere = Calibration(threshold=0.5, na_prob="p_abstain", chosen_on={**on, "n": 40, "seed": 1})
    assert kept_threshold(examples, spans, na, own, elsewhere) is own  # chosen on other questions
    assert kept_threshold(examples, spans, na, own, None) is own
