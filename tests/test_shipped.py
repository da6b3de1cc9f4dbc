"""The shipped adapters (adapters/sft, adapters/laffi) load onto the embedded model and answer. Marked slow."""

import json

import pytest

from laffi.cli import main

from .conftest import REPO

pytestmark = pytest.mark.slow

PASSAGE = ("Marisol Ortega trained as a chemist before she began writing crime novels. Her third book, Nine Quiet "
           "Rooms, won the Arden Prize in 2011.")


@pytest.mark.parametrize("name", ["sft", "laffi"])
def test_adapter_folder_is_complete(name):
    folder = REPO / "adapters" / name
    for f in ("adapter_config.json", "adapter_model.safetensors", "training_config.json", "data_manifest.json",
              "loss_log.jsonl", "metrics.json", "README.md"):
        assert (folder / f).is_file(), f
    config = json.loads((folder / "training_config.json").read_text())
    assert config["train"]["method"] in {"sft": ("sft",), "laffi": ("laffi", "laffi+sft")}[name]
    assert config["train"]["base"] == "embedded"
    manifest = json.loads((folder / "data_manifest.json").read_text())
    from laffi.squad.data import ARTICLE_SPLITS

    assert set(manifest["articles"]) <= set(ARTICLE_SPLITS["train"])  # never an evaluation article
    # its threshold was chosen on the validation article, and its numbers are read against the trivial policy
    from laffi.inference.answerability import read_calibration

    cal = read_calibration(folder)
    assert cal is not None and cal.chosen_on["articles"] == "validation" and 0 <= cal.threshold <= 1
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["eval_articles"] == "eval" and metrics["calibrated"] and "HasAns_f1" in metrics
    assert any(c["b"] == "always no answer" and c["metric"] == "f1" for c in metrics["comparisons"])


def test_shipped_adapters_answer_with_feedback(capsys):
    assert main(["ask", "--context", PASSAGE, "--question", "Which book won the Arden Prize?", "--feedback",
                 "--json", "--adapters-dir", str(REPO / "adapters")]) == 0
    answers = json.loads(capsys.readouterr().out)["answers"]
    assert {"base", "sft", "laffi"} <= set(answers)
    assert all(answers[v]["raw"].strip() for v in ("base", "sft", "laffi"))  # "" answer = abstained, still a reply
    assert answers["sft"]["raw"] != answers["base"]["raw"]  # the adapter changes what the model says
    from laffi.inference.prompts import parse_feedback

    assert parse_feedback(answers["laffi"]["feedback"])[0] is not None  # LaFFi learned the feedback format
