"""The pipeline's calibration stage: every trained adapter (every seed) gets its no-answer threshold chosen on
validation questions before it is evaluated, so a curve of many trainings never reads an uncalibrated threshold
or one chosen on the questions it is scored on.

Usage:
    calibrate_trained(stages, {"sft": {0: Path("adapters/sft")}})   # PipelineConfig.calibrate_articles set
    # or in a pipeline/study YAML:  calibrate_articles: validation   calibrate_limit: 200

An adapter whose calibration.json was chosen on exactly these questions (data digest, articles, limit, seed) is
left as it is: rerunning a study calibrates only what is new.
"""

from __future__ import annotations

from pathlib import Path

from laffi.errors import LaffiError


def calibration_questions(stages) -> tuple[list, dict]:
    """(the validation questions, the chosen_on record calibration.json keeps of them). Their passages must be
    neither trained on nor evaluated: a threshold chosen there would be optimistic."""
    from laffi.squad.data import DataArgs, dataset_record

    c = stages.cfg
    if c.calibrate_articles in (c.eval_articles, c.train_articles):
        raise LaffiError(f"calibrate_articles ({c.calibrate_articles!r}) must differ from the training and the "
                         "evaluation articles: a threshold is chosen on questions neither trained on nor scored.")
    examples, problems = DataArgs(data=c.data, articles=c.calibrate_articles, limit=c.calibrate_limit,
                                  seed=c.seed).select()
    for p in problems[:5]:
        stages.log(f"warning: skipped {p}")
    passages = {e.context for e in examples}
    if passages & {e.context for which in ("train", "eval") for e in stages.examples(which)}:
        raise LaffiError("The calibration articles share passages with the training or evaluation articles.")
    return examples, {**dataset_record(c.data), "articles": c.calibrate_articles, "limit": c.calibrate_limit,
                      "seed": c.seed}


def calibrate_trained(stages, trained: dict[str, dict[int, Path]]) -> dict[str, str]:
    """Choose the threshold of every trained adapter not yet calibrated on these questions in the precision the
    evaluation runs in; {adapter name: "chosen" or "kept"}. A threshold chosen in another precision is not kept:
    its no-answer probabilities differ a little, and the file keeps one entry per precision. Does nothing
    (returns {}) when PipelineConfig.calibrate_articles is None."""
    from laffi.evaluation.evaluate import calibrate_variants
    from laffi.inference.answerability import precision_of, read_calibration
    from laffi.inference.generation import GenerationConfig
    from laffi.inference.models import load_model, resolve_precision

    if stages.cfg.calibrate_articles is None:
        return {}
    examples, chosen_on = calibration_questions(stages)
    serving = resolve_precision(stages.model_config())[1].dtype
    status, todo = {}, {}
    for which, by_seed in trained.items():
        for seed, path in by_seed.items():
            name = stages.adapter_name(which, seed)
            cal = read_calibration(path, precision=serving)
            done = (cal is not None and precision_of({"precision": cal.precision}) == serving
                    and {k: cal.chosen_on.get(k) for k in chosen_on} == chosen_on)
            status[name] = "kept" if done else "chosen"
            if not done:
                todo[name] = path
    if not todo:
        stages.log(f"calibrate: every adapter's threshold was chosen on these {len(examples)} questions in "
                   f"{serving} already")
        return status
    lm = load_model(stages.model_config())
    for name, path in todo.items():
        lm.attach(name, path)
    stages.log(f"calibrate: {', '.join(todo)} on {len(examples)} {stages.cfg.calibrate_articles} questions in {serving}")
    cals = calibrate_variants(lm, examples, list(todo), GenerationConfig(batch_size=stages.cfg.eval_batch_size),
                              chosen_on)
    for name, cal in cals.items():
        stages.log(f"calibrate: {name} abstains when na_prob > {cal.threshold:.4f} (F1 there "
                   f"{cal.validation['f1']:.1f})")
    return status
