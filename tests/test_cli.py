"""`python -m laffi ask|eval` on the tiny model; user mistakes exit 2 with one sentence and no traceback."""

import json
import subprocess
import sys

import pytest

from laffi.cli import main
from laffi.inference.answerability import ALWAYS_NO_ANSWER
from laffi.squad.data import load_squad
from laffi.squad.metric import squad_v2_scores

from .conftest import REPO


@pytest.fixture
def model_args(tiny_dir, tiny_adapters):
    return ["--base", str(tiny_dir), "--adapters-dir", str(tiny_adapters), "--max-new-tokens", "6"]


def test_ask_json(model_args, capsys):
    assert main(["ask", "--context", "The bridge is old.", "--question", "What is old?", "--json", *model_args]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["answers"]) == {"base", "sft", "laffi"}
    assert all(isinstance(a["answer"], str) for a in out["answers"].values())


def test_ask_answers_the_same_without_cpu_kernels(model_args, capsys):
    argv = ["ask", "--context", "The bridge is old.", "--question", "What is old?", "--json", *model_args]
    assert main(argv) == 0
    fast = json.loads(capsys.readouterr().out)["answers"]
    assert main([*argv, "--no-cpu-kernels"]) == 0
    plain = json.loads(capsys.readouterr().out)["answers"]
    # the same text everywhere; probabilities equal up to float32 summation order (oneDNN vs torch's kernels)
    without = lambda answers: {v: {k: x for k, x in a.items() if k != "na_prob"} for v, a in answers.items()}  # noqa
    assert without(plain) == without(fast)
    assert all(abs(plain[v]["na_prob"] - fast[v]["na_prob"]) < 1e-5 for v in fast)


def test_ask_some_variants_as_text(model_args, capsys):
    assert main(["ask", "--context", "c", "--question", "q", "--variants", "sft,base", *model_args]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines if not line.startswith(" ")] == ["sft", "base"]
    sure = [line.strip() for line in lines if line.startswith(" ")]  # under each: what it thinks, even abstaining
    assert len(sure) == 2 and all(s.startswith("best span: ") and " · answerable " in s for s in sure)


def test_ask_with_a_passage_over_the_limit_reads_the_part_that_matches_and_says_so(model_args, capsys):
    context = " ".join(f"Line {i} is about rain." for i in range(400)) + " The bridge opened in 1931."
    assert main(["ask", "--context", context, "--question", "When did the bridge open?", "--max-context-tokens",
                 "60", *model_args]) == 0
    err = capsys.readouterr().err
    assert "laffi: note: The passage is" in err and "best match for the question" in err


def test_eval_writes_official_files_and_numbers_match_them(model_args, small_squad, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["eval", "--data", str(small_squad), "--json", "--out", str(out), "--batch-size", "4", *model_args])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n"] == 5 and set(printed["variants"]) == {"base", "sft", "laffi", ALWAYS_NO_ANSWER}
    examples, _ = load_squad(str(small_squad))
    nothing = printed["variants"].pop(ALWAYS_NO_ANSWER)
    assert nothing["f1"] == pytest.approx(100 * sum(not e.answers for e in examples) / len(examples))
    assert nothing["abstain"] == 100.0
    for v, m in printed["variants"].items():
        # the official --na-prob-file and the spans it thresholds give back the shown answers' scores
        na_probs = json.loads((out / v / "na_probs.json").read_text())
        spans = json.loads((out / v / "span_predictions.json").read_text())
        assert set(na_probs) == set(spans) == {e.qid for e in examples}
        assert all(0 <= p <= 1 for p in na_probs.values()) and all(isinstance(s, str) for s in spans.values())
        official = squad_v2_scores(examples, spans, na_probs, m["threshold"] if m["calibrated"] else 0.5)
        assert m["f1"] == pytest.approx(official["f1"]) and m["best_f1"] == pytest.approx(official["best_f1"])
        assert 0 <= m["auc"] <= 1 and "span_HasAns_f1" in m
        preds = json.loads((out / v / "predictions.json").read_text())
        assert set(preds) == {e.qid for e in examples} and all(isinstance(p, str) for p in preds.values())
        rescored = squad_v2_scores(examples, preds)
        for k in ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact"):
            assert m[k] == pytest.approx(rescored[k])
        rows = [json.loads(line) for line in (out / v / "examples.jsonl").read_text().splitlines()]
        assert [r["qid"] for r in rows] == [e.qid for e in examples]
        assert {"question", "gold_answers", "prediction", "em", "f1"} <= set(rows[0])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["variants"]["base"]["exact"] == printed["variants"]["base"]["exact"]


def test_eval_limit_seed_and_articles(model_args, small_squad, capsys):
    assert main(["eval", "--data", str(small_squad), "--limit", "2", "--seed", "3", "--articles", "Velmar_bridge",
                 "--variants", "base", "--json", *model_args]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 2


@pytest.mark.parametrize("argv,message", [
    (["ask", "--context", "c", "--question", "q", "--variants", "base,dpo"], "Unknown variant 'dpo'"),
    (["ask", "--context", "  ", "--question", "q"], "--context is empty"),
    (["eval", "--data", "missing/file.json"], "does not exist"),
])
def test_user_errors_exit_2_with_one_sentence(model_args, capsys, argv, message):
    assert main(argv + model_args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_malformed_data_exits_2(model_args, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [ {"title": ')
    assert main(["eval", "--data", str(bad), *model_args]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_real_process_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "laffi", "eval", "--data", str(tmp_path / "none.json")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("laffi: error:") and "Traceback" not in proc.stderr


def test_help_for_every_command():
    for cmd in ("ask", "eval"):
        proc = subprocess.run([sys.executable, "-m", "laffi", cmd, "--help"], cwd=REPO, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0 and "--base" in proc.stdout


def test_eval_compares_pairs_and_the_trivial_policy(model_args, small_squad, tmp_path, capsys):
    assert main(["eval", "--data", str(small_squad), "--compare", "laffi:sft", "--out", str(tmp_path / "r"),
                 "--variants", "base,sft,laffi", *model_args]) == 0
    out = capsys.readouterr().out
    assert "laffi − sft: f1 " in out and f"sft − {ALWAYS_NO_ANSWER}: f1 " in out
    saved = json.loads((tmp_path / "r" / "comparisons.json").read_text())
    assert {(c["a"], c["b"]) for c in saved} == {("laffi", "sft"), ("base", ALWAYS_NO_ANSWER),
                                                   ("sft", ALWAYS_NO_ANSWER), ("laffi", ALWAYS_NO_ANSWER)}
    assert main(["eval", "--data", str(small_squad), "--compare", "laffi:dpo", *model_args]) == 2
    assert "--compare takes pairs of evaluated variants" in capsys.readouterr().err
