"""The real embedded SmolLM2-135M-Instruct (GGUF -> cached safetensors). Marked slow: tens of seconds."""

import json

import pytest

from laffi.cli import main
from laffi.squad.data import load_squad
from laffi.squad.metric import squad_v2_scores

pytestmark = pytest.mark.slow

PASSAGE = ("The Halvard lighthouse stands on a granite islet off the town of Nesby. It was lit in 1874, and its "
           "lamp was converted from paraffin to electricity in 1952.")


@pytest.fixture(scope="module")
def embedded_dir(tmp_path_factory):
    """Base-only runs: an empty adapters folder, so the result does not depend on what adapters/ holds."""
    return tmp_path_factory.mktemp("no-adapters")


def test_gguf_is_cached_as_safetensors():
    from laffi.inference.model_files import embedded_gguf_path
    from laffi.inference.models import ModelConfig, default_cache_dir, resolve_source

    folder = resolve_source(ModelConfig())
    assert folder.startswith(str(default_cache_dir())) and embedded_gguf_path().stem in folder
    assert resolve_source(ModelConfig()) == folder  # second call: same cache entry, no re-conversion


def test_ask_embedded_gives_an_answer(embedded_dir, capsys):
    code = main(["ask", "--context", PASSAGE, "--question", "When was the lighthouse lit?", "--json",
                 "--adapters-dir", str(embedded_dir)])
    assert code == 0
    answer = json.loads(capsys.readouterr().out)["answers"]["base"]["answer"]
    assert answer.strip()


@pytest.mark.data
def test_eval_20_shared_questions(shared_squad, embedded_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["eval", "--data", str(shared_squad), "--limit", "20", "--variants", "base", "--json",
                 "--out", str(out), "--adapters-dir", str(embedded_dir)])
    assert code == 0
    m = json.loads(capsys.readouterr().out)["variants"]["base"]
    examples, _ = load_squad(str(shared_squad))
    preds = json.loads((out / "base" / "predictions.json").read_text())
    assert len(preds) == 20
    rescored = squad_v2_scores([e for e in examples if e.qid in preds], preds)
    assert m["f1"] == pytest.approx(rescored["f1"]) and m["exact"] == pytest.approx(rescored["exact"])
    assert 0 <= m["exact"] <= m["f1"] <= 100
