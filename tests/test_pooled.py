"""Evaluations run article by article, pooled (laffi.evaluation.pooled): scored again from their stored rows, the
numbers equal those of the evaluation itself, and several folders read as one run over all their questions."""

import pytest

from laffi.errors import LaffiError
from laffi.evaluation.evaluate import evaluate_variants
from laffi.evaluation.pooled import pool_folders
from laffi.inference.answerability import ALWAYS_NO_ANSWER
from laffi.inference.generation import GenerationConfig
from laffi.squad.data import load_squad

GEN = GenerationConfig(max_new_tokens=6)


def test_one_folder_scored_again_equals_its_evaluation(tiny_lm, small_squad, tmp_path):
    examples, _ = load_squad(str(small_squad))
    result = evaluate_variants(tiny_lm, examples, ["sft", "laffi"], GEN, out_dir=tmp_path / "all", feedback=True)
    pooled = pool_folders([tmp_path / "all"], compare=[("laffi", "sft")])
    assert pooled["n"] == len(examples) and set(pooled["variants"]) == {"sft", "laffi", ALWAYS_NO_ANSWER}
    for v, want in result["variants"].items():
        got = pooled["variants"][v]
        assert {k: got.get(k) for k in want if k not in ("revised_share", "ci")} == \
            {k: w for k, w in want.items() if k not in ("revised_share", "ci")}
        assert {k: got["ci"][k] for k in want["ci"]} == want["ci"]
        assert pooled["per_question"][v] == result["per_question"][v]
    assert "balanced_verdict_accuracy" in pooled["variants"]["laffi"]  # feedback ran: its verdicts are scored
    metrics = [(c["a"], c["b"], c["metric"]) for c in pooled["comparisons"]]
    assert ("laffi", "sft", "f1") in metrics and ("sft", ALWAYS_NO_ANSWER, "f1") in metrics


def test_folders_pool_into_one_run_over_all_their_questions(tiny_lm, small_squad, tmp_path):
    examples, _ = load_squad(str(small_squad))
    titles = sorted({e.title for e in examples})
    parts = []
    for t in titles:
        mine = [e for e in examples if e.title == t]
        parts.append(evaluate_variants(tiny_lm, mine, ["laffi"], GEN, out_dir=tmp_path / t, feedback=True))
    pooled = pool_folders([tmp_path / t for t in titles])
    assert pooled["n"] == len(examples) == sum(p["n"] for p in parts)
    assert pooled["per_question"]["laffi"]["f1"] == [x for p in parts for x in p["per_question"]["laffi"]["f1"]]
    weighted = sum(p["n"] * p["variants"]["laffi"]["f1"] for p in parts) / len(examples)
    assert pooled["variants"]["laffi"]["f1"] == pytest.approx(weighted)
    assert [p["name"] for p in pooled["parts"]] == titles
    with pytest.raises(LaffiError, match="more than one"):
        pool_folders([tmp_path / titles[0], tmp_path / titles[0]])
    with pytest.raises(LaffiError, match="not a finished evaluation"):
        pool_folders([tmp_path / "nowhere"])
