"""Thresholds by leave-one-article-out (laffi.pipeline.folds): the fold trials a study file becomes, the threshold
search over pooled out-of-fold records, its nested transfer check, and a folds study end to end on the tiny model."""

import json

import pytest

from laffi.errors import LaffiError
from laffi.pipeline.folds import (best_threshold, fold_markdown, fold_trials, per_question, recipe_variant, scored,
                                  transfer)


def rec(qid, has, na, f1, title="A", answered=1):
    return [qid, title, has, na, int(f1 == 1.0), f1, answered]


def test_each_trial_becomes_itself_and_one_fold_per_training_article():
    base = {"train_articles": "A,B,C", "eval_articles": "V", "eval_limit": 200}
    trials = fold_trials([{"name": "sft", "methods": ["sft"]}], base, {"out": "x", "over": "A,B,C"})
    assert [t["name"] for t in trials] == ["sft", "sft-without-A", "sft-without-B", "sft-without-C"]
    assert trials[0] == {"name": "sft", "methods": ["sft"]}  # the full-data trial, scored on validation
    b = trials[2]
    assert (b["train_articles"], b["eval_articles"], b["eval_limit"], b["calibrate_articles"]) == ("A,C", "B", None,
                                                                                                  None)
    with pytest.raises(LaffiError, match="outside folds.over"):
        fold_trials([{"name": "s", "methods": ["sft"]}], {**base, "eval_articles": "B"}, {"out": "x"})
    with pytest.raises(LaffiError, match="one method"):
        fold_trials([{"name": "s", "methods": ["sft", "laffi"]}], base, {"out": "x"})
    with pytest.raises(LaffiError, match="another name"):
        fold_trials([{"name": "base", "methods": ["sft"]}], base, {"out": "x"})
    with pytest.raises(LaffiError, match="base's train_articles"):
        fold_trials([{"name": "s", "methods": ["sft"]}], base, {"out": "x", "over": "A,B"})
    for own in ({"train_articles": "A,B"}, {"eval_articles": "A"}, {"data": "other.json"}, {"seeds": [2]},
                {"seed": 3}, {"train_limit": 100}):
        with pytest.raises(LaffiError, match="the folds choose its articles"):
            fold_trials([{"name": "s", "methods": ["sft"], **own}], base, {"out": "x"})


def test_the_threshold_is_the_official_search_and_scores_follow_the_official_rule():
    # answer q1 (right) and q2 (wrong on an unanswerable one), abstain on q3: best is to abstain above 0.2
    records = [rec("q1", 1, 0.1, 1.0), rec("q2", 0, 0.3, 0.0), rec("q3", 0, 0.9, 0.0), rec("q4", 1, 0.2, 0.5)]
    t = best_threshold(records)
    assert t == 0.2
    q = per_question(records, t)
    assert q["f1"] == [1.0, 1.0, 1.0, 0.5] and q["abstain"] == [0.0, 1.0, 1.0, 0.0]
    s = scored(records, t)
    assert (s["f1"], s["HasAns_f1"], s["abstain"], s["always_no_answer_f1"]) == (87.5, 75.0, 50.0, 50.0)
    assert per_question(records, 0.0)["f1"] == [0.0, 1.0, 1.0, 0.0]  # everything above 0 abstains
    # an unanswerable question answered with a span the official normalisation empties ("the") is right even when
    # not abstained on: its span F1 against no gold is 1, as the official rule scores it
    assert per_question([rec("q", 0, 0.1, 1.0, answered=1)], 0.5)["f1"] == [1.0]


def test_nested_transfer_chooses_each_articles_threshold_without_it():
    # A (4 questions) alone wants 0.85, B and C want 0.85 only with A beside them, the validation article 0.25:
    # a search that saw A's own questions would give A 0.85 and 100 F1 instead of 0.6 and 25
    folds = {"A": [rec("a1", 1, 0.85, 1.0), rec("a3", 1, 0.85, 1.0), rec("a4", 1, 0.85, 1.0), rec("a2", 0, 0.95, 0.0)],
             "B": [rec("b1", 1, 0.6, 1.0, "B"), rec("b2", 0, 0.8, 0.0, "B")],
             "C": [rec("c1", 1, 0.6, 1.0, "C"), rec("c2", 0, 0.8, 0.0, "C")]}
    validation = [rec("v1", 1, 0.25, 1.0, "V"), rec("v2", 0, 0.3, 0.0, "V")]
    out = transfer(folds, validation)
    by = {r["article"]: r for r in out["articles"]}
    assert best_threshold(validation) == 0.25 == out["validation_threshold"]
    assert (by["A"]["loao_threshold"], by["B"]["loao_threshold"], by["C"]["loao_threshold"]) == (0.6, 0.85, 0.85)
    # A at 0.6 (from B, C and the validation article): its answerable questions abstained, a2 right
    assert (by["A"]["loao_threshold_f1"], by["A"]["validation_threshold_f1"], by["A"]["best_f1"]) == (25.0, 25.0, 100.0)
    assert (by["B"]["loao_threshold_f1"], by["B"]["validation_threshold_f1"]) == (50.0, 50.0) and out["n"] == 8
    assert out["loao_minus_validation"]["diff"] == out["loao_threshold_f1"] - out["validation_threshold_f1"]
    # moving B's unanswerable question above 0.85 makes B's nested threshold right and the validation one wrong
    folds["B"][1] = rec("b2", 0, 0.9, 0.0, "B")
    moved = {r["article"]: r for r in transfer(folds, validation)["articles"]}["B"]
    assert (moved["loao_threshold_f1"], moved["validation_threshold_f1"]) == (100.0, 50.0)


def verdict_rec(qid, has, direct, span, f1, title="A", contrast=0.5):
    return rec(qid, has, direct, f1, title) + [span, contrast]


def test_the_combined_score_finds_what_neither_score_alone_separates():
    from laffi.pipeline.folds import at_rule, best_f1_threshold, best_rule, combined, has_verdicts

    # each score alone ranks one unanswerable question below an answerable one; their mean separates all four
    records = [verdict_rec("q1", 1, 0.1, 0.6, 1.0), verdict_rec("q2", 1, 0.5, 0.1, 1.0),
               verdict_rec("q3", 0, 0.4, 0.9, 0.0), verdict_rec("q4", 0, 0.9, 0.5, 0.0)]
    assert has_verdicts(records) and not has_verdicts([r[:7] for r in records])
    assert best_f1_threshold(records)[0] == 75.0  # the direct score alone
    assert best_f1_threshold(combined(records, {"verdict": "span", "weight": 0.0}))[0] == 75.0  # the verdict alone
    rule = best_rule(records, combine=True)
    assert (rule["verdict"], rule["weight"]) == ("span", 0.8)  # the most direct weight that separates (0.9 does not)
    assert at_rule(records, rule)["f1"] == [1.0, 1.0, 1.0, 1.0]
    assert best_rule(records) == {"threshold": 0.1}  # without combining: the direct score's (first of two best)


def test_a_verify_path_row_keeps_its_direct_score_and_its_verdicts():
    from laffi.pipeline.folds import answer_records

    row = {"qid": "q", "gold_answers": ["1952"], "span": "1952", "na_prob": 0.3, "path_kind": "verify",
           "direct_na_prob": 0.2, "candidates": [{"answer": "1952", "score": 0.6}, {"answer": "", "score": 0.2}]}
    (r,) = answer_records([row], "x")
    assert r[:7] == ["q", "", 1, 0.2, 1, 1.0, 1]  # na_prob: the direct reply's, as every other recipe's
    assert r[7:] == [pytest.approx(0.4), pytest.approx(0.25)]  # 1 - P(Correct | span); 0.2 / (0.2 + 0.6)
    assert answer_records([{**row, "path_kind": "direct"}], "x")[0] == ["q", "", 1, 0.3, 1, 1.0, 1]
    with pytest.raises(LaffiError, match="evaluate it again"):  # a verify row from before direct scores were kept
        answer_records([{k: v for k, v in row.items() if k != "direct_na_prob"}], "x")


def test_a_verify_path_folders_own_threshold_is_read_on_its_verdicts_scale(tmp_path):
    from laffi.io import write_jsonl_atomic
    from laffi.pipeline.folds import applied_records, at_rule

    def row(qid, gold, p_span, p_none, direct):
        cands = [{"answer": "x", "score": p_span}, {"answer": "", "score": p_none}]
        return {"qid": qid, "gold_answers": gold, "span": "x", "path_kind": "verify", "direct_na_prob": direct,
                "candidates": cands, "na_prob": p_none / (p_none + p_span), "threshold": 0.5}  # shown: contrast

    folder = tmp_path / "eval" / "laffi-1"
    folder.mkdir(parents=True)
    # the verdict (contrast 0.14 and 0.75; span would be 0.4 and 0.8) is right on both; the direct score is not
    write_jsonl_atomic(folder / "examples.jsonl", [row("e1", ["x"], 0.6, 0.1, 0.9), row("e2", [], 0.2, 0.6, 0.1)])
    records, own = applied_records(str(folder), tmp_path / "out")
    assert own == {"verdict": "contrast", "weight": 0.0, "threshold": 0.5}
    assert at_rule(records, own)["f1"] == [1.0, 1.0]  # as it was shown
    assert at_rule(records, {"threshold": 0.5})["f1"] == [0.0, 0.0]  # the direct score at that number: not it
    (folder / "examples.jsonl").unlink()
    assert applied_records(str(folder), tmp_path / "out") == (records, own)  # kept, the scale with it


def test_the_summary_pools_every_fold_with_the_validation_article_and_applies_the_threshold(tmp_path):
    from laffi.io import write_jsonl_atomic
    from laffi.pipeline.folds import fold_summary

    def result(variant, records):
        return {"seeds": {variant: [variant]}, "answerability": {variant: records, "base": records}}

    folds = {"A": [rec("a1", 1, 0.5, 1.0, "A"), rec("a2", 0, 0.6, 0.0, "A")],
             "B": [rec("b1", 1, 0.55, 1.0, "B"), rec("b2", 0, 0.7, 0.0, "B")]}
    validation = [rec("v1", 1, 0.25, 1.0, "V"), rec("v2", 0, 0.3, 0.0, "V")]
    results = {"sft": result("sft-1", validation), "sft-without-A": result("sft-2", folds["A"]),
               "sft-without-B": result("sft-3", folds["B"])}
    trials = [{"name": n} for n in ("sft", "sft-without-A", "sft-without-B", "sft-without-C")]
    evaluated = tmp_path / "eval" / "sft-1"  # evaluation predictions shown at the validation threshold (0.25)
    rows = [{"qid": "e1", "gold_answers": ["x"], "span": "x", "na_prob": 0.5, "threshold": 0.25},
            {"qid": "e2", "gold_answers": [], "span": "y", "na_prob": 0.65, "threshold": 0.25}]
    evaluated.mkdir(parents=True)
    write_jsonl_atomic(evaluated / "examples.jsonl", rows)
    summary = fold_summary(trials, results, {"out": str(tmp_path / "out"), "apply": {"sft": [str(evaluated)]}})
    sft = summary["recipes"][0]
    assert (sft["recipe"], sft["variant"], sft["folds_done"], sft["folds_missing"]) == ("sft", "sft-1", ["A", "B"],
                                                                                        ["C"])
    assert sft["validation_threshold"] == 0.25 and sft["threshold"] == 0.55 and sft["pool"]["n"] == 6
    assert not sft["complete"] and sft["combined"] is None  # C's fold is missing; no verdicts to combine
    a = sft["applied"][0]
    assert (a["own"]["f1"], a["loao"]["f1"], a["best"]["f1"]) == (50.0, 100.0, 100.0)
    assert a["loao_minus_own"]["diff"] == 50.0 and (tmp_path / "out" / "applied").is_dir()
    evaluated.joinpath("examples.jsonl").unlink()  # kept: the same numbers without the evaluation folder
    assert fold_summary(trials, results, {"out": str(tmp_path / "out"), "apply": {"sft": [str(evaluated)]}}) == summary
    assert "2 of 3 (incomplete: provisional)" in fold_markdown(summary) and "(provisional)" in fold_markdown(summary)


def test_a_verify_path_recipe_gets_a_combined_row_read_against_its_direct_score(tmp_path):
    from laffi.pipeline.folds import fold_summary

    def result(variant, records):
        return {"seeds": {variant: [variant]}, "answerability": {variant: records, "base": [r[:7] for r in records]}}

    # articles whose direct scores alone misorder a question that the verdict puts right
    arts = {t: [verdict_rec(f"{t}1", 1, 0.1, 0.6, 1.0, t), verdict_rec(f"{t}2", 1, 0.5, 0.1, 1.0, t),
                verdict_rec(f"{t}3", 0, 0.4, 0.9, 0.0, t), verdict_rec(f"{t}4", 0, 0.9, 0.5, 0.0, t)] for t in "ABV"}
    results = {"a05": result("laffi-1", arts["V"]), "a05-without-A": result("laffi-2", arts["A"]),
               "a05-without-B": result("laffi-3", arts["B"])}
    trials = [{"name": n} for n in ("a05", "a05-without-A", "a05-without-B")]
    summary = fold_summary(trials, results, {"out": str(tmp_path / "out")})
    laffi, base = summary["recipes"]
    assert laffi["complete"] and base["combined"] is None
    c = laffi["combined"]
    assert (c["rule"]["verdict"], c["rule"]["weight"], c["pool"]["f1"]) == ("span", 0.8, 100.0)
    assert c["transfer"]["loao_threshold_f1"] == 100.0 and laffi["transfer"]["loao_threshold_f1"] == 75.0
    assert c["minus_direct"]["diff"] == 25.0
    assert "| a05 (laffi-1) | 2 of 2 | span | 0.8 |" in fold_markdown(summary)


def test_a_folds_study_commits_records_without_text_and_a_threshold_per_recipe(tiny_dir, small_squad, tmp_path):
    import yaml

    from laffi.pipeline.study import load_study, run_study
    from tests.conftest import three_articles
    from tests.test_pipeline import one_sft_step

    squad = three_articles(small_squad, tmp_path / "three.json")
    out = tmp_path / "results" / "thresholds"
    study_file = tmp_path / "thresholds.yaml"
    base = one_sft_step(squad, tiny_dir, tmp_path, train_articles="Velmar_bridge,Ada_Brill", eval_articles="Drun_port")
    study_file.write_text(yaml.safe_dump({
        "folds": {"out": str(out), "over": "Velmar_bridge,Ada_Brill",
                  "apply": {"sft": [str(tmp_path / "run" / "sft-without-Ada_Brill" / "eval" / "base")]}},
        "base": {**base, "drafts": "synthetic", "annotator": "reference"},
        "trials": [{"name": "sft", "why": "SFT", "methods": ["sft"]},
                   {"name": "lv", "why": "LaFFi on the verify path", "methods": ["laffi"],
                    "laffi_answer_path": {"kind": "verify", "draft_by": "self"}}]}))
    study = load_study(study_file)
    assert [t["name"] for t in study.trials] == ["sft", "sft-without-Velmar_bridge", "sft-without-Ada_Brill", "lv",
                                                 "lv-without-Velmar_bridge", "lv-without-Ada_Brill"]
    run_study(study, log=lambda m: None)
    kept = json.loads((out / "sft-without-Velmar_bridge.json").read_text())
    assert kept["eval_articles"] == "Velmar_bridge" and kept["n"] == 3
    records = kept["answerability"][recipe_variant(kept)]
    assert [r[0] for r in records] == ["q1", "q2", "q3"] and all(len(r) == 7 for r in records)
    text = (out / "sft-without-Velmar_bridge.json").read_text()
    assert "Velmar bridge opened" not in text and "When did" not in text  # no passage, no question
    summary = json.loads((out / "thresholds.json").read_text())
    sft, lv, base_row = summary["recipes"]
    assert (sft["recipe"], lv["recipe"], base_row["recipe"]) == ("sft", "lv", "base")
    # the verify-path recipe: its verdicts' scores beside its direct one, so the combined score is chosen
    fold = json.loads((out / "lv-without-Ada_Brill.json").read_text())
    lv_records = fold["answerability"][recipe_variant(fold)]
    assert all(len(r) == 9 for r in lv_records) and lv["combined"] is not None
    assert sft["combined"] is None and base_row["combined"] is None
    assert sft["folds_done"] == ["Ada_Brill", "Velmar_bridge"] and sft["folds_missing"] == []
    assert sft["pool"]["n"] == 3 + 2 + 2  # both folds' held-out questions and the validation article's

    def trained(name):
        r = json.loads((out / f"{name}.json").read_text())
        return r["answerability"][recipe_variant(r)]

    pool = trained("sft-without-Velmar_bridge") + trained("sft-without-Ada_Brill") + trained("sft")
    assert sft["threshold"] == best_threshold(pool) and sft["variant"].startswith("sft-")
    applied = sft["applied"][0]
    assert applied["own"]["n"] == 2 and applied["loao"]["threshold"] == sft["threshold"]
    assert (out / "applied").is_dir() and "Thresholds by leave-one-article-out" in (out / "thresholds.md").read_text()
    # a new machine: runs/ gone, the committed numbers rebuild the same summary without training anything
    import shutil

    shutil.rmtree(tmp_path / "run")
    shutil.rmtree(tmp_path / "adapters")
    said = []
    run_study(load_study(study_file), log=said.append)
    assert sum("its result is kept in" in m for m in said) == 6 and not (tmp_path / "adapters").exists()
    assert json.loads((out / "thresholds.json").read_text()) == summary
