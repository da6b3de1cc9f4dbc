"""Command lines from config dataclasses (laffi.commandline): what a stage runs, a launch's ranks train and the app
shows are the same objects rendered as flags, and each command parses them back into equal objects."""

import pytest

from laffi.cli import parse
from laffi.commandline import flags, laffi_argv
from laffi.errors import LaffiError
from laffi.inference.models import ModelConfig
from laffi.pipeline.steps import AnnotateArgs, PredictArgs, TrainDataArgs
from laffi.squad.data import DataArgs
from laffi.training.trainer import TrainConfig


def test_every_training_setting_survives_the_command_line():
    tcfg = TrainConfig(method="laffi+sft", name="x1", r=8, alpha=4, dropout=0.1, target_modules="q_proj,v_proj",
                       lr=2e-4, epochs=2.5, max_steps=7, batch_size=6, max_length=512, seed=3, save_steps=2,
                       heldout=0, early_stopping=2, pack=False, layers="3-5", group_by_length=False, overwrite=True,
                       num_processes=3, micro_batch_size=1)
    data = TrainDataArgs(data="a.jsonl", articles="Normans", limit=9, data_seed=4, no_resume=True, run_key="k")
    parsed_cfg, parsed_data = parse("train", flags(tcfg, data))
    assert parsed_cfg == tcfg and parsed_data == data


def test_the_stage_inputs_parse_back_as_their_commands():
    model, sel, out = ModelConfig(base="some/model"), DataArgs(data="d.json", articles="eval", limit=5, seed=2), \
        PredictArgs(out="p.jsonl", variant="sft")
    parsed = parse("predict", laffi_argv("predict", model, sel, out, changed=True, keep=("base", "split"))[4:])
    assert parsed[0].base == "some/model" and parsed[3] == sel and parsed[4] == out
    ann = AnnotateArgs(predictions="p.jsonl", out="a.jsonl", human="h.csv", human_fraction=0.25,
                       drafts="own+synthetic", synthetic_per_question=2, seed=5, annotator="reference")
    assert parse("annotate", flags(ann, changed=True))[1] == ann


def test_changed_leaves_out_defaults_but_keeps_what_it_is_told():
    assert flags(PredictArgs(out="p.jsonl"), changed=True) == ["--out", "p.jsonl"]
    assert flags(ModelConfig(), changed=True, keep=("base",)) == ["--base", "embedded"]
    assert flags(TrainDataArgs(data="x", no_resume=True), changed=True) == ["--data", "x", "--no_resume", "true"]
    assert "--run_key" not in flags(TrainDataArgs(data="x"))  # None: not set, never the text "None"


@pytest.mark.parametrize("given, expected", [({"r": 16.0}, 16), ({"lr": "1e-3"}, 1e-3), ({"epochs": 2}, 2.0),
                                             ({"num_processes": 1.0}, 1)])
def test_training_settings_become_their_declared_types_in_one_place(given, expected):
    """A form's slider gives 16.0 for r and YAML reads 1e-3 as text: TrainConfig makes each its type."""
    cfg = TrainConfig(**given)
    value = getattr(cfg, next(iter(given)))
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("given, words", [({"r": 1.5}, "TrainConfig.r must be a whole number"),
                                          ({"lr": None}, "TrainConfig.lr must be a number"),
                                          ({"batch_size": "four"}, "TrainConfig.batch_size must be a whole number")])
def test_a_setting_that_is_no_number_is_a_sentence(given, words):
    with pytest.raises(LaffiError, match=words):
        TrainConfig(**given)
