"""The stage runner (laffi.pipeline.stages): stages are cached by their settings, predictions are kept per question, adapters
carry their key and are never replaced unless asked, the equivalent command lines are real commands."""

import json
import shlex

import pytest

from laffi.errors import LaffiError
from laffi.inference.answerability import ALWAYS_NO_ANSWER
from laffi.pipeline.config import PipelineConfig
from laffi.pipeline.stages import Stages


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


def test_the_train_stage_runs_on_the_objects_its_command_line_shows(cfg, monkeypatch):
    """What Stages.train hands the stage body (the TrainConfig and the data it reads) is what `commands` renders:
    the shown line parses back into exactly those objects; and the stage says it began (progress done=0) before
    any model loads."""
    from pathlib import Path

    import laffi.pipeline.stages as stages_module
    from laffi.adapter_folder import TrainResult
    from laffi.cli import parse

    got, events = {}, []

    def body(records, tcfg, data, callbacks, log, extra, settings):
        got.update(tcfg=tcfg, data=data, n=len(records()))
        return TrainResult("stopped", Path(tcfg.work_dir))

    monkeypatch.setattr(stages_module, "train_records", body)
    run = Stages(cfg(methods=["sft"], train_limit=3), progress=lambda *e: events.append(e), log=lambda m: None)
    assert run.train("sft") is None  # stopped: resumable
    assert events == [("train", 0, 3)]
    tcfg, data = parse("train", shlex.split(run.commands("sft"))[4:])
    assert tcfg == got["tcfg"]
    assert data.data == got["data"].data and data.articles == got["data"].articles and data.limit == 3


def test_synthetic_drafts_alone_need_no_predictions(cfg, tmp_path, monkeypatch):
    """With drafts 'synthetic' the model's own answers are all dropped, so the base model is never asked for them
    (on the whole split that was an hour of answering for nothing); the drafts are those predict would have led to."""
    run = Stages(cfg(drafts="synthetic", train_limit=3), log=lambda m: None)
    monkeypatch.setattr(Stages, "predict", lambda self: pytest.fail("predict ran for synthetic drafts"))
    annotated = run.annotate()
    assert len(annotated) == 3 and all(r["predicted_by"] == "synthetic" for r in annotated)
    assert not (tmp_path / "run" / "predictions.jsonl").exists()
    monkeypatch.undo()
    other = Stages(cfg(drafts="synthetic", train_limit=3, out_dir=str(tmp_path / "other")), log=lambda m: None)
    records = other.predict()  # the old way: every answer, then dropped
    from laffi.feedback.drafts import add_drafts

    again, _ = add_drafts(records, "synthetic", seed=other.cfg.seed, k=other.cfg.synthetic_per_question)
    assert [(r["qid"], r["prediction"], r["draft_kind"]) for r in again] == [
        (r["qid"], r["prediction"], r["draft_kind"]) for r in annotated]


def test_own_drafts_from_evaluation_folders_need_no_model_and_key_the_annotations(cfg, tmp_path, monkeypatch):
    from laffi.io import write_jsonl_atomic

    examples = Stages(cfg(), log=lambda m: None).examples("train")
    folder = tmp_path / "sft-without-x" / "eval" / "sft-abc"
    folder.mkdir(parents=True)
    write_jsonl_atomic(folder / "examples.jsonl", [{"qid": e.qid, "span": "Drun", "direct": ""} for e in examples])
    run = Stages(cfg(drafts="own+balanced", draft_predictions=[str(tmp_path / "sft-without-*" / "eval" / "sft-*")]),
                 log=lambda m: None)
    import laffi.inference.models

    monkeypatch.setattr(laffi.inference.models, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    annotated = run.annotate()
    own = [r for r in annotated if r["draft_kind"] == "own"]
    assert len(own) == len(examples) and {(r["prediction"], r["predicted_by"]) for r in own} == {("Drun", "sft-abc")}
    assert len(annotated) > len(own)  # balancing drafts beside them
    assert run.annotate_key() != Stages(cfg(drafts="own+balanced"), log=lambda m: None).annotate_key()
    before = run.annotate_key()
    write_jsonl_atomic(folder / "examples.jsonl", [{"qid": e.qid, "span": "1931"} for e in examples])
    assert run.annotate_key() != before  # other answers: other annotations, another adapter
    with pytest.raises(LaffiError, match="draft_predictions"):
        cfg(drafts="synthetic", draft_predictions=["x"])


def run_shown_feedback_commands(run, out):
    """Runs the predict/annotate lines `commands` shows, in this process, writing under `out`; returns the
    annotations they wrote."""
    from laffi.cli import main
    from laffi.io import read_jsonl

    lines = run.commands("laffi").splitlines()[:-1]  # the train line last
    for line in lines:
        argv = [a.replace(str(run.out), str(out)) for a in shlex.split(line)[3:]]
        assert main(argv) == 0
    return [shlex.split(line)[3] for line in lines], read_jsonl(out / "annotated.jsonl")


def drafts_of(records):
    return [(r["qid"], r["prediction"], r["draft_kind"], r["feedback"]) for r in records]


def test_synthetic_drafts_commands_annotate_the_questions_themselves(cfg, tmp_path):
    """The lines shown for synthetic drafts name no predict (the stage asks no model) and, run, give the stage's own
    annotations, the seeded sample included."""
    run = Stages(cfg(drafts="synthetic", train_limit=3, seed=2, laffi={"method": "laffi+sft"}), log=lambda m: None)
    commands, annotated = run_shown_feedback_commands(run, tmp_path / "cli")
    assert commands == ["annotate"]
    assert drafts_of(annotated) == drafts_of(run.annotate()) and len({r["qid"] for r in annotated}) == 3


def test_own_drafts_commands_read_the_evaluated_answers(cfg, tmp_path, monkeypatch):
    """With draft_predictions the shown predict reads the evaluation folders (no model), and the two lines give the
    stage's annotations."""
    from laffi.io import write_jsonl_atomic

    examples = Stages(cfg(), log=lambda m: None).examples("train")
    folder = tmp_path / "sft-without-x" / "eval" / "sft-abc"
    folder.mkdir(parents=True)
    write_jsonl_atomic(folder / "examples.jsonl", [{"qid": e.qid, "span": "Drun", "direct": ""} for e in examples])
    run = Stages(cfg(drafts="own+balanced", draft_predictions=[str(tmp_path / "sft-without-*" / "eval" / "sft-*")],
                     laffi={"method": "laffi+sft"}), log=lambda m: None)
    import laffi.inference.models

    monkeypatch.setattr(laffi.inference.models, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    commands, annotated = run_shown_feedback_commands(run, tmp_path / "cli")
    assert commands == ["predict", "annotate"]
    assert {r["predicted_by"] for r in annotated if r["draft_kind"] == "own"} == {"sft-abc"}
    assert drafts_of(annotated) == drafts_of(run.annotate())


def test_a_result_stored_before_a_new_setting_existed_is_still_this_run():
    from dataclasses import asdict

    from laffi.pipeline.study import same_config

    now = json.loads(json.dumps(asdict(PipelineConfig(data="d.json"))))
    old = {k: v for k, v in now.items() if k != "draft_predictions"}
    assert same_config(now, now) and same_config(old, now)
    assert not same_config(old, {**now, "draft_predictions": ["runs/x"]})  # set now: not the stored run
    assert not same_config({**now, "gone": 1}, now) and not same_config({**old, "seed": 5}, now)
    assert not same_config(None, now)


def test_a_reused_adapter_keeps_its_answer_path_and_another_trials_path_is_only_evaluated(cfg, tmp_path):
    from laffi.io import read_jsonl
    from laffi.inference.selffeedback import AnswerPath, read_answer_path

    direct = dict(methods=["laffi"], drafts="synthetic", train_articles="Velmar_bridge",
                  laffi_answer_path={"kind": "direct", "draft_by": "self"})
    first = Stages(cfg(**direct), log=lambda m: None)
    path = first.train("laffi")
    first.evaluate({"laffi": {0: path}})
    metrics = (path / "metrics.json").read_text()
    said = []
    verify = Stages(cfg(**{**direct, "laffi_answer_path": {"kind": "verify", "draft_by": "self"},
                           "run_name": "verify"}), log=said.append)
    assert verify.train("laffi") == path  # the same training: reused
    verify.evaluate({"laffi": {0: path}})
    assert read_answer_path(path) == AnswerPath("direct", "self")  # the folder still serves as it was trained
    rows = read_jsonl(tmp_path / "run" / "verify" / "eval" / path.name / "examples.jsonl")
    assert {r["path_kind"] for r in rows} == {"verify"}  # this run asked for its own path
    assert (path / "metrics.json").read_text() == metrics and any("stay in" in m for m in said)
