"""The four stages through the CLI on the tiny model, self-feedback at inference, and the pipeline end to end."""

import json

import pytest

from laffi.cli import main
from laffi.inference.answerability import ALWAYS_NO_ANSWER


@pytest.fixture
def model_args(tiny_dir, tiny_adapters):
    return ["--base", str(tiny_dir), "--adapters-dir", str(tiny_adapters), "--max-new-tokens", "6"]


def test_predict_writes_a_dataset(model_args, small_squad, tmp_path):
    import datasets

    out = tmp_path / "pred.jsonl"
    assert main(["predict", "--data", str(small_squad), "--out", str(out), *model_args]) == 0
    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    assert ds.num_rows == 5
    assert {"qid", "title", "context", "question", "answers", "prediction"} <= set(ds.column_names)


def test_annotate_reference_and_hybrid_from_csv(model_args, small_squad, tmp_path, capsys):
    pred = tmp_path / "pred.jsonl"
    main(["predict", "--data", str(small_squad), "--out", str(pred), *model_args])
    human = tmp_path / "human.csv"
    human.write_text("qid,question,prediction,feedback,annotator\n"
                     "q1,,1930,\"Incorrect: it opened in 1931, so the answer should be 1931.\",ana\n"
                     ",Who designed the bridge?,,\"Correct: nobody is named, so the right reply is: no answer.\",bo\n"
                     "q9,,x,,carl\n")
    out = tmp_path / "ann.jsonl"
    assert main(["annotate", "--predictions", str(pred), "--human", str(human), "--human-fraction", "1.0",
                 "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["mix"]["human"] == 2 and report["mix"]["ai"] == 3
    assert "line 4" in captured.err  # the malformed row is reported, not dropped silently
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_id = {r["qid"]: r for r in rows}
    assert by_id["q1"]["feedback_source"] == "human" and by_id["q1"]["annotator"] == "ana"
    assert by_id["q1"]["prediction"] == "1930"
    assert by_id["q3"]["feedback_source"] == "human" and by_id["q2"]["feedback_source"] == "reference"


def test_ask_feedback_adds_feedback_and_revised_answer(model_args, capsys):
    assert main(["ask", "--context", "The bridge is old.", "--question", "What is old?", "--json", "--feedback",
                 *model_args]) == 0
    answers = json.loads(capsys.readouterr().out)["answers"]
    for v in ("base", "sft", "laffi"):
        assert {"answer", "feedback", "revised_answer"} <= set(answers[v])


def test_eval_feedback_reports_revised_f1_and_verdict_agreement(model_args, small_squad, capsys):
    assert main(["eval", "--data", str(small_squad), "--feedback", "--json", *model_args]) == 0
    m = json.loads(capsys.readouterr().out)["variants"]["sft"]
    assert 0 <= m["revised_f1"] <= 100 and 0 <= m["verdict_agreement"] <= 100


def test_feedback_metrics_by_hand():
    from laffi.evaluation.evaluate import feedback_metrics
    from laffi.inference.selffeedback import Feedback
    from laffi.squad.data import QAExample

    exs = [QAExample("a", "t", "c", "q", ("1931",)), QAExample("b", "t", "c", "q", ()),
           QAExample("c", "t", "c", "q", ("Drun",))]
    drafts = ["1931", "1931", "port"]
    fbs = [Feedback("Correct ...", "correct", "1931", True),          # right answer, says correct: agree
           Feedback("Correct ...", "correct", "", True),              # wrong answer, says correct: disagree
           Feedback("blah", None, "port", False)]                     # no verdict: counts as disagreement
    m = feedback_metrics(exs, drafts, fbs)
    assert m["verdict_agreement"] == pytest.approx(100 / 3) and m["verdict_parsed"] == pytest.approx(200 / 3)
    assert m["revised_exact"] == pytest.approx(200 / 3)  # "1931" right, "" right (unanswerable), "port" wrong
    # right drafts: only the first, called correct (1/1); wrong drafts: 2, of which 1 not called correct (1/2)
    assert m["balanced_verdict_accuracy"] == pytest.approx(75.0)


def test_pipeline_end_to_end(tiny_dir, small_squad, tmp_path, capsys):
    config = tmp_path / "p.yaml"
    config.write_text(f"""
data: {small_squad}
base: {tiny_dir}
train_articles: Velmar_bridge
eval_articles: Ada_Brill
train_limit: null
eval_limit: null
out_dir: {tmp_path / "run"}
adapters_dir: {tmp_path / "adapters"}
train: {{r: 4, alpha: 8, batch_size: 2, max_steps: 2, max_length: 2048}}
""")
    assert main(["pipeline", "--config", str(config)]) == 0
    table = capsys.readouterr().out
    assert "| variant | answer | EM | F1 | HasAns F1 | NoAns EM | abstain % |" in table
    result = json.loads((tmp_path / "run" / "results" / "results.json").read_text())
    assert set(result["variants"]) == {"base", "sft", "laffi", ALWAYS_NO_ANSWER} and result["n"] == 2
    assert {c["a"] + "-" + c["b"] for c in result["comparisons"]} == {
        "laffi-sft", "sft-base", "laffi-base", f"sft-{ALWAYS_NO_ANSWER}", f"laffi-{ALWAYS_NO_ANSWER}"}
    assert ALWAYS_NO_ANSWER in result["pooled"] and f"| {ALWAYS_NO_ANSWER} | no model |" in table
    for name in ("sft", "laffi"):
        folder = tmp_path / "adapters" / name
        assert json.loads((folder / "metrics.json").read_text())["n"] == 2
        assert "## Evaluation" in (folder / "README.md").read_text()
    # a second run reuses every stage: the adapters it would train are there, trained with the same settings
    assert main(["pipeline", "--config", str(config)]) == 0
    err = capsys.readouterr().err
    assert "train sft (seed 0): reusing" in err and "train laffi (seed 0): reusing" in err


def test_pipeline_config_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: x.json\nlearning_rate: 3\n")
    assert main(["pipeline", "--config", str(bad)]) == 2
    assert "unknown key(s): learning_rate" in capsys.readouterr().err


def one_sft_step(data, tiny_dir, tmp_path, **more) -> dict:
    """Pipeline settings of a tiny SFT run (one step per seed, no feedback evaluation) on `data`: Velmar_bridge
    trained, Ada_Brill evaluated; `more` adds or replaces keys."""
    return {"data": str(data), "base": str(tiny_dir), "train_articles": "Velmar_bridge", "eval_articles": "Ada_Brill",
            "methods": ["sft"], "out_dir": str(tmp_path / "run"), "adapters_dir": str(tmp_path / "adapters"),
            "eval_feedback": False, "train": {"r": 4, "alpha": 8, "batch_size": 2, "max_steps": 1, "max_length": 2048},
            **more}


def test_pipeline_chooses_every_trained_adapters_threshold_on_validation_first(tiny_dir, small_squad, tmp_path,
                                                                               capsys, monkeypatch):
    """calibrate_articles: each trained adapter (every seed) gets calibration.json from questions neither trained
    on nor scored, the evaluation answers at that threshold, and a rerun keeps it."""
    from laffi.inference.answerability import read_calibration
    from tests.conftest import three_articles

    squad = three_articles(small_squad, tmp_path / "three.json")
    import yaml

    config = tmp_path / "p.yaml"
    body = one_sft_step(squad, tiny_dir, tmp_path, seeds=[0, 1])
    config.write_text(yaml.safe_dump({**body, "calibrate_articles": "Drun_port"}))
    assert main(["pipeline", "--config", str(config)]) == 0
    assert "calibrate: sft, sft-seed1 on 2 Drun_port questions" in capsys.readouterr().err
    for folder in (tmp_path / "adapters" / "sft", tmp_path / "run" / "seeds" / "sft-seed1"):
        cal = read_calibration(folder)
        assert cal is not None and cal.chosen_on["articles"] == "Drun_port" and cal.chosen_on["dataset"] == "three.json"
        assert json.loads((folder / "metrics.json").read_text())["threshold"] == cal.threshold
    assert main(["pipeline", "--config", str(config)]) == 0
    assert "threshold was chosen on these 2 questions in float32 already" in capsys.readouterr().err
    # served in another precision (LAFFI_DTYPE), the float32 threshold is not kept: bfloat16's is chosen beside it
    monkeypatch.setenv("LAFFI_DTYPE", "bfloat16")
    assert main(["pipeline", "--config", str(config)]) == 0
    assert "calibrate: sft, sft-seed1 on 2 Drun_port questions in bfloat16" in capsys.readouterr().err
    for folder in (tmp_path / "adapters" / "sft", tmp_path / "run" / "seeds" / "sft-seed1"):
        assert read_calibration(folder, precision="bfloat16").precision == "bfloat16"
        assert read_calibration(folder, precision="float32").precision in (None, "float32")
    config.write_text(yaml.safe_dump({**body, "calibrate_articles": "Ada_Brill"}))  # the evaluation's own: refused
    assert main(["pipeline", "--config", str(config)]) == 2
    assert "must differ from the training and the evaluation articles" in capsys.readouterr().err


def test_a_study_of_training_sizes_and_seeds_becomes_the_results_tabs_learning_curve(tiny_dir, small_squad,
                                                                                     tmp_path):
    import yaml

    from laffi.evaluation.published import curve_figure, curve_points, published
    from laffi.pipeline.study import load_study, run_study

    results = tmp_path / "results"
    study_file = tmp_path / "curve.yaml"
    study_file.write_text(yaml.safe_dump({
        "curve": {"out": str(results / "2026-12-04-curve"), "title": "F1 against training questions"},
        "base": one_sft_step(small_squad, tiny_dir, tmp_path, seeds=[0, 1]),
        "trials": [{"name": "n2", "why": "two questions", "train_limit": 2},
                   {"name": "all", "why": "every question"}]}))
    run_study(load_study(study_file), log=lambda m: None)
    _, curve = published(results)
    assert curve is not None and curve["title"] == "F1 against training questions" and curve["n"] == 2
    assert sorted((p["trial"], p["questions"], p["seed"]) for p in curve["points"]) == [
        ("all", 3, 0), ("all", 3, 1), ("n2", 2, 0), ("n2", 2, 1)]
    assert all(p["method"] == "sft" and p["f1"] is not None for p in curve["points"])
    assert curve["trivial_f1"] == 50.0  # Ada_Brill: one of its two questions is unanswerable
    assert [q for q, *_ in curve_points(curve, "sft", "f1")] == [2, 3]
    assert len(curve_figure(curve).data) == 2  # sft's band and line
    # each trial's numbers are kept beside the summary: a new machine (no runs/, no adapters) reruns nothing
    import shutil

    kept = sorted(p.name for p in (results / "2026-12-04-curve").iterdir())
    if shutil.which("chromium"):  # the README's image of the same figure, drawn beside the numbers
        assert kept == ["all.json", "curve.png", "n2.json", "summary.json"]
        assert (results / "2026-12-04-curve" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert kept == ["all.json", "n2.json", "summary.json"]
    kept_n2 = json.loads((results / "2026-12-04-curve" / "n2.json").read_text())
    assert kept_n2["precision"]["dtype"] == "float32"  # the tiny model on CPU, and every point says so
    assert {p["precision"] for p in curve["points"]} == {"float32"}
    assert len(kept_n2["questions"]["qids"]) == 2 and set(kept_n2["questions"]["runs"]) >= set(kept_n2["seeds"])
    said, first = [], (results / "2026-12-04-curve" / "n2.json").stat().st_mtime_ns
    run_study(load_study(study_file), log=said.append)  # again on this machine: nothing is evaluated again
    assert sum("its result is kept in" in m for m in said) == 2 and not any("evaluate" in m for m in said)
    assert (results / "2026-12-04-curve" / "n2.json").stat().st_mtime_ns == first
    shutil.rmtree(tmp_path / "run")
    shutil.rmtree(tmp_path / "adapters")
    said = []
    run_study(load_study(study_file), log=said.append)
    assert sum("its result is kept in" in m for m in said) == 2 and not (tmp_path / "adapters").exists()
    assert published(results)[1]["points"] == curve["points"]


def test_extra_training_articles_are_balanced_to_the_training_articles_share_of_unanswerable(tiny_dir, small_squad,
                                                                                              tmp_path, capsys):
    """extra_data (the official training set's articles: mostly answerable) joins the training questions with its
    answerable questions cut so that a third stay unanswerable, as in the training articles here; recorded."""
    from laffi.squad.combine import balanced
    from tests.conftest import write_squad

    ctx = "The Oska river is 300 km long and flows past Drun, Velm and Pask into the Grey Sea."
    qas = [{"id": f"x{i}", "question": q, "is_impossible": False,
            "answers": [{"text": a, "answer_start": ctx.index(a)}]}
           for i, (q, a) in enumerate([("How long is the river?", "300 km"), ("Where does it flow?", "the Grey Sea"),
                                       ("What town does it pass first?", "Drun"), ("What is long?", "The Oska")])]
    qas.append({"id": "x9", "question": "Who named the river?", "is_impossible": True, "answers": []})
    extra = write_squad(tmp_path / "extra.json", [{"title": "Oska_river", "paragraphs": [{"context": ctx,
                                                                                          "qas": qas}]}])
    articles, counts = balanced(json.loads(extra.read_text())["data"], 1 / 3, seed=0)
    assert counts == {"questions": 5, "unanswerable": 1, "kept_answerable": 2, "kept": 3, "share_unanswerable": 0.3333}
    assert "x9" in {q["id"] for q in articles[0]["paragraphs"][0]["qas"]}
    import yaml

    config = tmp_path / "p.yaml"
    config.write_text(yaml.safe_dump(one_sft_step(small_squad, tiny_dir, tmp_path, extra_data=str(extra))))
    assert main(["pipeline", "--config", str(config)]) == 0
    assert "train sft (seed 0): sft on 6 records" in capsys.readouterr().err  # 3 + 3 of the 5 extra
    record = json.loads((tmp_path / "run" / "data" / "combined-record.json").read_text())
    assert record["extra"]["kept"] == 3 and record["training_share_unanswerable"] == 0.3333
    assert record["extra_data"]["dataset"] == "extra.json" and record["extra_articles"] == ["Oska_river"]
    result = json.loads((tmp_path / "run" / "results" / "results.json").read_text())
    assert result["n"] == 2 and result["train_questions"] == 6  # evaluated on the same Ada_Brill questions


def test_a_split_curve_runs_each_method_and_seed_as_a_trial_of_its_own(tmp_path):
    import yaml

    from laffi.pipeline.study import load_study, trial_stages

    study_file = tmp_path / "curve.yaml"
    study_file.write_text(yaml.safe_dump({
        "curve": {"out": str(tmp_path / "results"), "split": True},
        "base": {"seeds": [0, 1], "out_dir": str(tmp_path / "run"), "adapters_dir": str(tmp_path / "adapters")},
        "trials": [{"name": "n2", "why": "two questions", "train_limit": 2},
                   {"name": "sft-only", "why": "sft alone", "methods": ["sft"]}]}))
    study = load_study(study_file)
    assert [t["name"] for t in study.trials] == ["n2-sft-s0", "n2-laffi-s0", "sft-only-sft-s0",
                                                 "n2-sft-s1", "n2-laffi-s1", "sft-only-sft-s1"]
    first, later = study.trials[0], study.trials[3]
    assert first["methods"] == ["sft"] and first["seeds"] == [0] and later["seeds"] == [1]
    assert first["train_limit"] == 2 and "seed 0" in first["why"]
    # a sub-trial's adapter is the one the whole trial trains for that seed: same settings, same name
    whole = load_study(study_file)
    whole.curve, whole.trials = None, [{"name": "n2", "why": "", "train_limit": 2}]
    assert trial_stages(study, first, log=lambda m: None).train_key("sft", 0) == trial_stages(
        whole, whole.trials[0], log=lambda m: None).train_key("sft", 0)


def test_paired_differences_between_trials_come_from_the_committed_per_question_scores():
    """A curve's trials land on different machines: LaFFi against SFT is computed from the scores each trial's
    results.json keeps per question (its runs/ folder is gone), on the questions both were scored on."""
    from laffi.evaluation.report import question_record
    from laffi.pipeline.study import run_differences

    qids, has = ["q1", "q2", "q3", "q4"], [True, True, False, False]
    sft = question_record({"qids": qids, "has_answer": has},
                          {"sft-a": {"f1": [0.0, 0.5, 1.0, 0.0], "abstain": [1.0, 0.0, 1.0, 0.0]}})
    laffi = question_record({"qids": qids[::-1], "has_answer": has[::-1]},  # another order: matched by qid
                            {"laffi-b": {"f1": [0.0, 1.0, 1.0, 0.5], "abstain": [0.0, 1.0, 0.0, 0.0]}})
    rows = [{"trial": "n2-sft", "run": "sft-a"}, {"trial": "n2-laffi", "run": "laffi-b"},
            {"trial": "n2-laffi", "run": "base"}]
    pairs = {p["metric"]: p for p in run_differences({"n2-sft": {"questions": sft}, "n2-laffi": {"questions": laffi}},
                                                     rows)}
    assert {p["a"] for p in pairs.values()} == {"n2-laffi/laffi-b"} and pairs["f1"]["n"] == 4
    # laffi's F1 on q1..q4: 0.5, 1, 1 (abstained), 0 against SFT's 0 (abstained), 0.5, 1 (abstained), 0: +25
    assert pairs["f1"]["diff"] == pytest.approx(25.0)
    assert pairs["HasAns_f1"]["diff"] == pytest.approx(50.0) and pairs["NoAns_exact"]["diff"] == pytest.approx(0.0)
    assert pairs["abstain"]["diff"] == pytest.approx(-25.0)
    # a result from before the scores were kept gives no pair rather than a wrong one
    assert run_differences({"n2-sft": {}, "n2-laffi": {"questions": laffi}}, rows) == []


def test_the_curve_reads_laffi_against_sft_at_each_size_over_the_seeds_that_landed():
    from laffi.evaluation.published import curve_difference_rows
    from laffi.evaluation.report import question_record
    from laffi.pipeline.study import curve_differences

    qids, has = ["q1", "q2", "q3", "q4"], [True, True, False, False]

    def trial(method: str, size: int, f1: list[float], abstain: list[float]) -> dict:
        run = f"{method}-x"
        return {"config": {"sft_name": "sft-x"}, "train_questions": size, "seeds": {run: [run]},
                "questions": question_record({"qids": qids, "has_answer": has}, {run: {"f1": f1, "abstain": abstain}})}

    results = [("n2-sft-s0", trial("sft", 2, [0, 0, 1, 0], [1, 1, 1, 0])),
               ("n2-sft-s1", trial("sft", 2, [1, 0, 1, 1], [0, 1, 1, 1])),  # seed 1: mean per question .5, 0, 1, .5
               ("n2-laffi-s0", trial("laffi", 2, [1, 1, 0, 0], [0, 0, 0, 0])),
               ("n4-sft-s0", trial("sft", 4, [1, 1, 1, 1], [0, 0, 1, 1]))]  # no LaFFi at 4 yet: no row
    rows = {d["metric"]: d for d in curve_differences(results)}
    assert {d["questions"] for d in rows.values()} == {2} and rows["f1"]["seeds"] == {"sft": 2, "laffi": 1}
    assert rows["f1"]["diff"] == pytest.approx(25.0 * (0.5 + 1 - 1 - 0.5))  # laffi 1, 1, 0, 0 against the means
    assert rows["HasAns_f1"]["diff"] == pytest.approx(75.0) and rows["abstain"]["diff"] == pytest.approx(-75.0)
    assert curve_difference_rows({"differences": list(rows.values())})[0][:5] == ["2", "laffi", "1 / 2", "f1", "+0.0"]
    # a weighted recipe is its own curve, against the same SFT seeds, not pooled with the unweighted one
    weighted = trial("laffi", 2, [1, 1, 1, 1], [0, 0, 0, 0])
    weighted["config"]["laffi"] = {"task_weight": 0.5}
    both_recipes = curve_differences([*results, ("n2-a05-laffi-s0", weighted)])
    assert {d["method"] for d in both_recipes} == {"laffi", "laffi α 0.5"}
    f1s = {d["method"]: d for d in both_recipes if d["metric"] == "f1"}
    assert f1s["laffi"]["diff"] == pytest.approx(0.0) and f1s["laffi α 0.5"]["diff"] == pytest.approx(50.0)
    assert f1s["laffi α 0.5"]["seeds"] == {"sft": 2, "laffi": 1}
    # a whole trial of two seeds at size 4 (its run is their mean) against SFT alone: it counts as two seeds
    both = trial("laffi", 4, [0.5, 0.5, 1, 1], [0.5, 0.5, 1, 1])
    both["seeds"] = {"laffi-x": ["laffi-x", "laffi-x-seed1"]}
    at4 = {d["metric"]: d for d in curve_differences([*results, ("n4-laffi", both)]) if d["questions"] == 4}
    assert at4["f1"]["seeds"] == {"sft": 1, "laffi": 2} and at4["f1"]["diff"] == pytest.approx(-25.0)
    results[2][1]["questions"] = None  # a trial from before per-question scores were kept
    assert curve_differences(results) == []


def test_each_point_of_the_curve_is_read_against_always_no_answer_over_its_seeds():
    """One interval per method and size, from the seeds' per-question mean: one lucky seed is not a method
    beating the policy that needs no model."""
    from laffi.evaluation.published import curve_trivial_rows
    from laffi.evaluation.report import question_record
    from laffi.inference.answerability import ALWAYS_NO_ANSWER
    from laffi.pipeline.study import curve_against_trivial

    qids, has = ["q1", "q2", "q3", "q4"], [True, True, False, False]

    def trial(method: str, f1: list[float]) -> dict:
        run = f"{method}-x"
        return {"config": {"sft_name": "sft-x"}, "train_questions": 2, "seeds": {run: [run]},
                "questions": question_record({"qids": qids, "has_answer": has},
                                             {run: {"f1": f1, "abstain": [0, 0, 1, 1]},
                                              ALWAYS_NO_ANSWER: {"f1": [0, 0, 1, 1], "abstain": [1, 1, 1, 1]}})}

    results = [("n2-laffi-s0", trial("laffi", [1, 1, 0, 0])), ("n2-sft-s0", trial("sft", [1, 1, 1, 1])),
               ("n2-sft-s1", trial("sft", [0, 0, 1, 1]))]  # SFT: per-question mean .5, .5, 1, 1
    rows = curve_against_trivial(results)
    assert [(r["method"], r["seeds"]) for r in rows] == [("sft", 2), ("laffi", 1)]  # SFT first at each size
    assert rows[0]["diff"] == pytest.approx(25.0) and rows[1]["diff"] == pytest.approx(0.0)
    assert {r["metric"] for r in rows} == {"f1"} and rows[0]["lo"] <= rows[0]["diff"] <= rows[0]["hi"]
    assert curve_trivial_rows({"against_trivial": rows})[0][:4] == ["2", "sft", "2", "+25.0"]
    results[0][1]["questions"] = None  # kept no per-question scores: no row rather than a wrong one
    assert [r["method"] for r in curve_against_trivial(results)] == ["sft"]
