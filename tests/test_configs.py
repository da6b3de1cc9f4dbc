"""Every shipped config in configs/ loads and runs end to end on the tiny model (the same keys, with the data, the
model and the sizes swapped for the test's), so a config the README points at can't rot."""

import json
from pathlib import Path

import pytest

from laffi.inference.answerability import ALWAYS_NO_ANSWER

from .conftest import REPO

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def tiny_overrides(tiny_dir, small_squad, tmp_path) -> dict:
    return {"data": str(small_squad), "base": str(tiny_dir), "train_articles": "Velmar_bridge",
            "eval_articles": "Ada_Brill", "train_limit": None, "eval_limit": None, "out_dir": str(tmp_path / "run"),
            "adapters_dir": str(tmp_path / "adapters"),
            "calibrate_articles": None}  # two articles only: the calibration stage has its own test (test_pipeline)


def tiny_train(settings: dict) -> dict:
    """The config's own training settings, cut to two short steps on a model that has no all-linear problem."""
    return {**settings, "max_steps": 2, "batch_size": 2, "max_length": 2048, "r": 4, "alpha": 8}


def test_there_are_shipped_configs():
    assert {p.name for p in CONFIGS} >= {"study.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_runs_on_the_tiny_model(path, tiny_dir, small_squad, tmp_path):
    import yaml

    from laffi.pipeline.config import PipelineConfig
    from laffi.pipeline.stages import Stages
    from laffi.pipeline.study import Study, load_study, run_study

    raw = yaml.safe_load(path.read_text())
    over = tiny_overrides(tiny_dir, small_squad, tmp_path)
    if "trials" in raw:
        study = load_study(path)
        methods_seen, trials = set(), []
        for trial in study.trials:  # one trial per method is enough to run every kind of stage
            methods = tuple(trial.get("methods", study.base.get("methods", ["sft", "laffi"])))
            if methods not in methods_seen:
                methods_seen.add(methods)
                trials.append({**trial, **{k: over[k] for k in trial if k in over},  # e.g. eval_articles: eval
                               **{k: tiny_train(v) for k, v in trial.items() if k in ("train", "sft", "laffi")}})
        base = {**study.base, **over, "train": tiny_train(study.base.get("train", {}))}
        rows = run_study(Study(base=base, trials=trials), log=lambda m: None)
        assert {r["trial"] for r in rows} == {t["name"] for t in trials}
        assert all(r["f1"] is not None and "f1" in r["ci"] for r in rows)
        if {"sft", "laffi"} <= {m for t in trials for m in t.get("methods", [])}:  # LaFFi read against SFT
            summary = json.loads((Path(base["out_dir"]) / "study.json").read_text())
            assert {(p["metric"], p["n"]) for p in summary["differences"]} >= {("f1", 2), ("abstain", 2)}
    else:
        cfg = PipelineConfig.from_yaml(path, **over, train=tiny_train(raw.get("train", {})),
                                       **{k: tiny_train(raw[k]) for k in ("sft", "laffi") if k in raw})
        result = Stages(cfg, log=lambda m: None).all()
        names = {"sft": cfg.sft_name, "laffi": cfg.laffi_name}
        assert set(result["pooled"]) == {ALWAYS_NO_ANSWER, "base", *(names[m] for m in cfg.methods)}
        assert json.loads((Path(cfg.out_dir) / cfg.run_name / "results.json").read_text())["n"] == 2
