"""The bench command runs end to end on the tiny model and reports every measurement (no timing is asserted)."""

import json

import pytest

from laffi.cli import main

pytestmark = pytest.mark.slow  # every bench step on the tiny model, and `python app.py` started once: minutes

MEASURES = {"side_by_side", "side_by_side_passages", "ask_latency", "ask_total", "ask_latency_new_passage",
            "ask_total_new_passage", "attention", "evaluation", "quality",
            "evaluation_precision", "startup", "memory", "training", "training_whole_split", "server_ready",
            "app_first_answer", "room_8", "room_20", "room_first_token"}


def test_bench_runs_on_the_tiny_model_and_emits_every_field(tiny_dir, tiny_adapters, small_squad, tmp_path, capsys):
    import shutil

    out = tmp_path / "bench.json"
    adapters = shutil.copytree(tiny_adapters, tmp_path / "adapters")  # the guard may write beside them
    code = main(["bench", "--base", str(tiny_dir), "--adapters-dir", str(adapters), "--squad", str(small_squad),
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
    passages = results["side_by_side_passages"]  # whole passages, natural stopping: both ways timed in one run
    # the first 8 questions in file order, of the passages the tiny file has: at most 8
    assert passages["same_answers"] is True and 0 < passages["questions"] <= 8
    assert passages["variants"] == ["base", "laffi", "sft"]
    assert abs(passages["value"] - passages["sequential_s"] / passages["together_s"]) <= 0.01 * passages["value"] + 0.01
    assert passages["forced_mixed_s"] > 0
    ask = results["ask_latency"]  # the Ask tab's streamed answers, then self-feedback
    assert ask["variants"] == ["base", "sft", "laffi"]
    assert 0 <= ask["value"] <= ask["total_s"] and 0 < ask["answers_s"] <= ask["total_s"]
    assert ask["feedback_first_token_s"] is not None
    app = results["app_first_answer"]
    assert app["server_ready_s"] == results["server_ready"]["value"] <= app["value"]
    assert app["first_token_s"] is not None and app["first_token_s"] <= app["value"]
    assert ask["total_s"] == results["ask_total"]["value"]
    new = results["ask_latency_new_passage"]  # the same Ask with the prefix cache emptied first: both timed
    assert 0 <= new["value"] <= new["total_s"] == results["ask_total_new_passage"]["value"]
    for n in (8, 20):  # the room: everyone answered, in fewer calls than one per participant and stage
        room = results[f"room_{n}"]
        assert room["answered"] == room["participants"] == n and room["calls"] < 2 * n
        assert room["value"] == pytest.approx(room["last_s"] / room["alone_s"], rel=0.02, abs=0.01)  # both rounded
    assert results["room_first_token"]["value"] is not None
    training = results["training"]
    assert training["example_tokens"] > training["computed_tokens"] > 0  # packed: passages computed once per step
    assert set(training["tokens_per_s"]) == {training["dtype"], "float32"}
    rates = report["machine"]["matmul_gflops"]
    expected = training["example_tokens"] * 4 * report["machine"]["parameters"] / (rates["float32"] * 1e9) / training[
        "seconds"]
    assert training["value"] == pytest.approx(expected, rel=0.02, abs=0.002) and 0 < training["share_of_matmul_limit"]
    assert results["training_whole_split"]["example_tokens"] >= training["example_tokens"]  # the tiny file: all of it
    quality = results["quality"]
    assert set(quality["f1"]) == {"base", "laffi", "sft"} and all(set(f) >= {"float32"} for f in quality["f1"].values())
    assert results["evaluation_precision"]["seconds"]["float32"] > 0
    written = report["machine"]["dtype"] != "float32"
    assert quality["guard_written"] is written and (adapters / "sft" / "precision_guard.json").is_file() is written
    assert report["machine"]["dtype"] in ("float32", "bfloat16") and report["machine"]["precision"]["reason"]
    assert report["machine"]["parameters"] > 0
    printed = capsys.readouterr().out
    assert "| side_by_side |" in printed and "| training |" in printed  # the readable table
