"""The bench command runs end to end on the tiny model and reports every measurement (no timing is asserted)."""

import json

from laffi.cli import main

MEASURES = {"side_by_side", "attention", "evaluation", "quality", "startup", "memory", "training", "app_first_answer"}


def test_bench_runs_on_the_tiny_model_and_emits_every_field(tiny_dir, tiny_adapters, small_squad, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--base", str(tiny_dir), "--adapters-dir", str(tiny_adapters), "--squad", str(small_squad),
                 "--quick", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    results = {r["name"]: r for r in report["results"]}
    assert set(results) == MEASURES
    for name, r in results.items():
        assert {"value", "unit", "target", "met"} <= set(r), name
    # everything that can be measured on a tiny folder model was measured
    for name in MEASURES - {"startup"}:
        assert results[name]["value"] is not None and results[name]["value"] >= 0, name
    assert results["startup"]["value"] is None and "not a GGUF" in results["startup"]["reason"]
    assert results["side_by_side"]["variants"] == ["base", "laffi", "sft"]
    assert results["training"]["real_tokens"] > 0 and results["training"]["tokens_per_s"] > 0
    assert set(results["quality"]["f1"]) == {"base", "laffi", "sft"}
    assert report["machine"]["dtype"] in ("float32", "bfloat16")
    printed = capsys.readouterr().out
    assert "| side_by_side |" in printed and "| training |" in printed  # the readable table
