"""The process behind one training job: predict -> annotate (+ human) -> train, reporting into JOB/status.json.

Usage:  python -m laffi.jobrunner JOB_DIR        (started by laffi.jobs.JobManager; JOB_DIR holds spec.json)

SIGTERM asks for a stop: at the end of the current optimiser step the trainer saves a checkpoint and the job
ends as "stopped"; starting it again resumes from there. Stage outputs already in the job folder are reused.
"""

from __future__ import annotations

import json
import signal
import sys
import traceback
from pathlib import Path

from transformers import TrainerCallback

from laffi.errors import LaffiError
from laffi.evaluation import write_json_atomic, write_jsonl_atomic


class StopOnSignal(TrainerCallback):
    def __init__(self, status):
        self.requested = False
        self.status = status
        signal.signal(signal.SIGTERM, self._request)

    def _request(self, *_):
        self.requested = True

    def on_step_end(self, args, state, control, **kwargs):
        self.status(phase="training", step=state.global_step, max_steps=state.max_steps)
        if self.requested:
            control.should_training_stop = True
            control.should_save = True  # the checkpoint that Resume continues from
        return control


def run(job: Path) -> int:
    from laffi.annotation import annotate_with_human
    from laffi.data import load_squad, sample_examples, select_articles
    from laffi.jobs import JobSpec
    from laffi.models import ModelConfig, load_model
    from laffi.pipeline import predict, read_jsonl
    from laffi.training import train_adapter

    spec = JobSpec(**json.loads((job / "spec.json").read_text()))
    work = job / "work"
    work.mkdir(exist_ok=True)
    state = {"state": "running"}

    def status(**kw):
        state.update(kw)
        write_json_atomic(job / "status.json", state)

    stopper = StopOnSignal(status)
    try:
        preds = work / "predictions.jsonl"
        if not preds.is_file():
            status(phase="predicting", detail=f"base model answers {spec.limit} questions")
            examples, _ = load_squad(spec.data)
            examples = sample_examples(select_articles(examples, spec.articles), spec.limit, spec.seed)
            lm = load_model(ModelConfig(base=spec.base, adapters_dir=None))
            write_jsonl_atomic(preds, predict(lm, examples, progress=lambda d, t: status(
                phase="predicting", detail=f"{d}/{t} answers")))
            del lm
        status(phase="annotating", detail="")
        records, report = annotate_with_human(read_jsonl(preds), "reference", seed=spec.seed, human=spec.human,
                                              human_fraction=spec.human_fraction)
        write_jsonl_atomic(work / "annotated.jsonl", records)
        write_json_atomic(work / "annotation_report.json", report)
        status(phase="training", detail="loading the model")
        out = train_adapter(records, spec.train_config(work), extra_callbacks=[stopper])
        if stopper.requested and out == work:
            status(state="stopped", phase="stopped", detail="checkpoint saved; Resume continues from it")
        else:
            status(state="finished", phase="finished", detail=f"adapter written to {out}", adapter=str(out))
        return 0
    except Exception as e:  # shown in the app as failed, with the reason; the checkpoint stays resumable
        traceback.print_exc()  # into job.log, for whoever runs the machine
        status(state="failed", phase="failed", error=describe_failure(e, state))
        return 1


def describe_failure(e: Exception, state: dict) -> str:
    """One or two sentences for the app: what went wrong and what to do; the traceback stays in job.log."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    where = f" at step {state['step']}" if state.get("phase") == "training" and state.get("step") else ""
    if isinstance(e, MemoryError) or "out of memory" in text.lower() or "can't allocate memory" in text.lower():
        return (f"Out of memory{where}: lower the batch size or the max length, then Resume (training continues "
                f"from the last checkpoint). ({text[:300]})")
    if isinstance(e, LaffiError):
        return text[:1000]
    return f"{type(e).__name__}{where}: {text}"[:1000]


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
