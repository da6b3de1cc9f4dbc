"""The study's committed results as the Results tab shows them (laffi.evaluation.published): the newest summary
of each kind, the always-"no answer" policy first, intervals as error bars, seeds as a band, and no verdict
accuracy for a variant whose feedback gives no verdicts."""

import json

import pytest

from laffi.evaluation.published import (CURVE, EVALUATION, RESULTS, answer_paths, curve_figure, curve_points,
                                        difference_rows, policy_figure, policy_rows, published, reading)
from laffi.inference.answerability import ALWAYS_NO_ANSWER


def write(folder, summary):
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))


def evaluation(n=100):
    ci = {"f1": [50.0, 60.0], "HasAns_f1": [20.0, 40.0], "abstain": [40.0, 50.0],
          "balanced_verdict_accuracy": [55.0, 70.0]}
    return {"kind": EVALUATION, "title": "Two <b>adapters</b>", "n": n, "articles": ["A"], "variants": {
        "sft": {"answer_path": "direct", "f1": 55.0, "HasAns_f1": 30.0, "abstain": 45.0,
                "balanced_verdict_accuracy": 50.0, "verdict_parsed": 0.0, "ci": ci},
        "laffi": {"answer_path": "direct", "f1": 57.0, "HasAns_f1": 35.0, "abstain": 44.0,
                  "balanced_verdict_accuracy": 62.0, "verdict_parsed": 98.0, "ci": ci},
        ALWAYS_NO_ANSWER: {"answer_path": "no model", "f1": 52.0, "HasAns_f1": 0.0, "abstain": 100.0, "ci": {}}},
        "comparisons": [{"a": "laffi", "b": "sft", "metric": "f1", "diff": 2.0, "lo": -1.0, "hi": 5.0,
                         "verdict": "no difference"}]}


def test_the_newest_summary_of_each_kind_is_shown(tmp_path):
    write(tmp_path / "2026-01-01-old", evaluation(10))
    write(tmp_path / "2026-02-01-new", evaluation(20))
    write(tmp_path / "2026-03-01-other", {"kind": "something else", "n": 30})
    (tmp_path / "2026-04-01-broken").mkdir()
    (tmp_path / "2026-04-01-broken" / "summary.json").write_text("{not json")
    shown, curve = published(tmp_path)
    assert shown["n"] == 20 and shown["folder"] == "2026-02-01-new" and curve is None
    assert published(tmp_path / "nowhere") == (None, None)


def test_policy_rows_put_the_trivial_policy_first_and_say_when_a_variant_gives_no_verdict():
    rows = policy_rows(evaluation())
    assert [r[0] for r in rows] == [ALWAYS_NO_ANSWER, "sft", "laffi"]
    assert rows[1][-1] == "gives no verdict" and rows[2][-1] == "62.0 [55.0, 70.0]"
    assert rows[2][1] == "57.0 [50.0, 60.0]" and rows[0][-1] == "–"
    assert answer_paths(evaluation()) == "sft: direct; laffi: direct"
    assert difference_rows(evaluation()) == [["laffi − sft", "f1", "+2.0", "[-1.0, +5.0]", "no difference"]]
    assert reading(evaluation()) == "laffi − sft: F1 +2.0 points [-1.0, +5.0], no difference."


def test_the_figure_draws_each_interval_as_an_error_bar():
    fig = policy_figure(evaluation())
    by_name = {t.name: t for t in fig.data}
    laffi = by_name["laffi"]
    assert list(laffi.y) == [57.0, 35.0, 44.0, 62.0]
    assert list(laffi.error_y.array) == [3.0, 5.0, 6.0, 8.0] and list(laffi.error_y.arrayminus) == [7.0, 15.0, 4.0, 7.0]
    assert len(by_name["sft"].y) == 3  # no verdict accuracy drawn for a variant that gives no verdicts


def test_the_learning_curve_averages_seeds_and_draws_their_range():
    points = [{"method": m, "questions": q, "seed": s, "f1": base + s + (q / 100)}
              for m, base in (("sft", 50.0), ("laffi", 52.0)) for q in (250, 500) for s in (0, 1, 2)]
    curve = {"kind": CURVE, "points": points, "trivial_f1": 51.5, "title": "F1 against training questions"}
    assert curve_points(curve, "sft", "f1") == [(250, 53.5, 52.5, 54.5), (500, 56.0, 55.0, 57.0)]
    fig = curve_figure(curve)
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    bands = [t for t in fig.data if t.fill == "toself"]
    assert [t.name for t in lines] == ["sft", "laffi"] and list(lines[1].y) == [55.5, 58.0]
    assert list(bands[0].y) == [54.5, 57.0, 55.0, 52.5]  # highest seeds out, lowest back
    assert fig.layout.shapes[0].y0 == 51.5  # the always-"no answer" line


def test_the_committed_evaluation_is_readable_and_complete():
    shown, _ = published(RESULTS)
    if shown is None:
        pytest.fail("results/ has no pooled evaluation summary")
    assert shown["complete"] and shown["n"] == 1596 and set(shown["articles"]) == {
        "Normans", "Steam_engine", "Immune_system", "Warsaw"}
    assert [r[0] for r in policy_rows(shown)] == [ALWAYS_NO_ANSWER, "sft", "laffi"]
    assert {(c["a"], c["b"]) for c in shown["comparisons"]} >= {("laffi", "sft"), ("laffi", ALWAYS_NO_ANSWER)}


def test_the_thresholds_tables_say_which_recipes_are_provisional(tmp_path):
    from laffi.evaluation.thresholds_view import applied_rows, combined_rows, newest_thresholds, threshold_rows

    m = {"f1": 54.6, "HasAns_f1": 42.6, "abstain": 54.0, "always_no_answer_f1": 48.0, "ci": {"f1": [47.7, 61.2]}}
    recipe = {"recipe": "sft", "variant": "sft-1", "folds_done": ["A"], "folds_missing": ["B"], "complete": False,
              "threshold": 0.4582, "validation_threshold": 0.4858, "combined": None,
              "transfer": {"loao_threshold_f1": 58.2, "validation_threshold_f1": 57.0,
                           "loao_minus_validation": {"diff": 1.2, "ci": [-0.5, 3.0]}},
              "applied": [{"folder": "runs/x", "own": m, "loao": m, "best": m,
                           "loao_minus_own": {"diff": 2.0, "ci": [0.5, 4.0]}}]}
    for name, summary in (("2026-01-01-a", {"recipes": []}), ("2026-02-01-b", {"over": "train", "recipes": [recipe]})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "thresholds.json").write_text(json.dumps(summary))
    (tmp_path / "2026-03-01-broken").mkdir()
    (tmp_path / "2026-03-01-broken" / "thresholds.json").write_text("{no")
    shown = newest_thresholds(tmp_path)
    assert shown["folder"] == "2026-02-01-b" and newest_thresholds(tmp_path / "nowhere") is None
    _, rows = threshold_rows(shown)
    assert rows == [["sft (sft-1)", "1 of 2 (incomplete: provisional)", "0.4582", "0.4858", "58.2", "57.0",
                     "+1.2 [-0.5, +3.0]"]]
    _, rows = applied_rows(shown)
    assert rows[0][3] == "54.6 [47.7, 61.2], 42.6, 54 % (provisional)" and rows[0][5] == "+2.0 [+0.5, +4.0]"
    assert combined_rows(shown)[1] == []
    shown["recipes"][0].update(complete=True, folds_missing=[])
    assert threshold_rows(shown)[1][0][1] == "1 of 1" and not applied_rows(shown)[1][0][3].endswith("(provisional)")


def test_the_study_trials_table_puts_the_policy_first_and_reads_older_rows_scores_beside_them(tmp_path):
    from laffi.evaluation.study_view import newest_study, study_difference_rows, trial_rows

    policy = {"trial": "sft", "run": ALWAYS_NO_ANSWER, "n": 200, "f1": 47.5, "HasAns_f1": 0.0, "abstain": 100.0,
              "ci": {"f1": [40.0, 54.0]}}
    rows = [policy, {"trial": "sft", "run": "base", "n": 200, "f1": 10.2, "HasAns_f1": 13.7, "abstain": 6.5},
            {"trial": "sft", "why": "SFT <b>shipped</b>", "run": "sft-1", "n": 200, "f1": 66.1, "HasAns_f1": 54.6,
             "abstain": 52.5, "auc": 0.811, "best_f1": 68.0, "ci": {"f1": [59.5, 72.3]}},
            {**policy, "trial": "a05"},
            {"trial": "a05", "why": "alpha 0.5", "run": "laffi-2", "n": 200, "f1": 66.9, "HasAns_f1": 62.6,
             "abstain": 46.5}]  # written before rows carried AUC: read from a05.json
    folder = tmp_path / "2026-02-01-best"
    folder.mkdir()
    (folder / "study.json").write_text(json.dumps({"runs": rows, "differences": [
        {"a": "a05/laffi-2", "b": "sft/sft-1", "n": 200, "metric": "HasAns_f1", "diff": 8.1, "lo": 1.0, "hi": 15.9,
         "verdict": "better"}]}))
    (folder / "a05.json").write_text(json.dumps({"pooled": {"laffi-2": {"auc": 0.8134, "best_f1": 68.3}},
                                                 "variants": {"laffi-2": {"threshold": None, "calibrated": False}}}))
    (folder / "sft.json").write_text(json.dumps({"variants": {"sft-1": {"threshold": 0.48583, "calibrated": True}}}))
    (tmp_path / "2026-01-01-older").mkdir()
    (tmp_path / "2026-01-01-older" / "study.json").write_text(json.dumps({"runs": []}))
    (tmp_path / "2026-03-01-broken").mkdir()
    (tmp_path / "2026-03-01-broken" / "study.json").write_text("{no")
    shown = newest_study(tmp_path)
    assert shown["folder"] == "2026-02-01-best" and newest_study(tmp_path / "nowhere") is None
    _, table = trial_rows(shown)
    assert [r[1] for r in table] == [ALWAYS_NO_ANSWER, "base", "sft-1", "laffi-2"]  # the policy once, first
    assert table[0][3] == "47.5 [40.0, 54.0]" and table[2][2] == "SFT <b>shipped</b>"  # shown as text
    assert table[2][7:] == ["0.811", "68.0"] and table[3][7:] == ["0.813", "68.3"]
    assert table[0][7] == "–" and table[1][7] == "–"
    assert [r[4] for r in table] == ["–", "–", "0.486 (chosen on these questions)", "0.5 (none chosen)"]
    assert study_difference_rows(shown)[1] == [["a05/laffi-2 − sft/sft-1", "HasAns F1", "+8.1", "[+1.0, +15.9]",
                                                "better"]]
