"""The stage runner (laffi.pipeline.stages): stages are cached by their settings, predictions are kept per question, adapters
carry their key and are never replaced unless asked, the equivalent command lines are real commands."""

import json
import shlex

import pytest

from laffi.errors import LaffiError
from laffi.inference.answerability import ALWAYS_NO_ANSWER
from laffi.pipeline.stages import PipelineConfig, Stages


@pytest.fixture
def cfg(tiny_dir, small_squad, tmp_path):
    def make(**kw):
        base = dict(data=str(small_squad), base=str(tiny_dir), train_articles="all", eval_articles="Ada_Brill",
                    out_dir=str(tmp_path / "run"), adapters_dir=str(tmp_path / "adapters"), eval_feedback=False,
                    train=dict(r=4, alpha=8, batch_size=2, max_steps=1, max_length=2048))
        return PipelineConfig(**{**base, **kw})
    return make


def test_predictions_are_kept_per_question(cfg):
    logs = []
    Stages(cfg(train_limit=2, seed=1), log=logs.append).predict()
    assert "answers 2 training questions" in logs[-1]
    Stages(cfg(train_limit=None), log=logs.append).predict()  # all 5: only the 3 not yet answered
    assert "answers 3 training questions (2 answered before)" in logs[-1]
    records = Stages(cfg(train_limit=2, seed=1), log=logs.append).predict()
    assert "reusing" in logs[-1] and len(records) == 2


def test_a_trained_adapter_is_reused_and_never_replaced_unless_asked(cfg, tmp_path):
    logs = []
    first = Stages(cfg(methods=["sft"]), log=logs.append).train("sft")
    key = json.loads((first / "training_config.json").read_text())["run_key"]
    assert Stages(cfg(methods=["sft"]), log=logs.append).train("sft") == first and "reusing" in logs[-1]
    other = cfg(methods=["sft"], sft={"lr": 2e-3})
    with pytest.raises(LaffiError, match="already exists"):
        Stages(other).train("sft")
    assert json.loads((first / "training_config.json").read_text())["run_key"] == key  # untouched
    replaced = Stages(PipelineConfig(**{**other.__dict__, "overwrite": True})).train("sft")
    assert json.loads((replaced / "training_config.json").read_text())["run_key"] != key


def test_extra_seeds_go_beside_the_first(cfg, tmp_path):
    run = Stages(cfg(methods=["sft"], seeds=[0, 1], train_articles="Velmar_bridge"), log=lambda m: None)
    result = run.all()
    assert (tmp_path / "adapters" / "sft").is_dir() and (tmp_path / "run" / "seeds" / "sft-seed1").is_dir()
    assert result["seeds"] == {"sft": ["sft", "sft-seed1"]} and result["pooled"]["sft"]["seeds"] == 2
    assert {c["a"] + "-" + c["b"] for c in result["comparisons"]} == {"sft-base", f"sft-{ALWAYS_NO_ANSWER}"}


def test_the_equivalent_commands_parse_as_real_commands(cfg):
    from laffi.cli import parse

    run = Stages(cfg(drafts="own+synthetic", laffi={"method": "laffi+sft"}))
    lines = run.commands("laffi").splitlines()
    assert [shlex.split(line)[3] for line in lines] == ["predict", "annotate", "train"]
    for line in lines:  # every flag is one the command accepts
        argv = shlex.split(line)[3:]
        parsed = parse(argv[0], argv[1:])
        assert parsed
    train_cfg = parse("train", shlex.split(lines[-1])[4:])[0]
    assert train_cfg == run.train_config("laffi", 0)
