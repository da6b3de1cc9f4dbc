"""The process behind one training job: the pipeline's predict -> annotate -> train stages for one adapter
(laffi.pipeline.stages), reporting into JOB/status.json.

Usage:  python -m laffi.pipeline.job_runner JOB_DIR     (started by laffi.pipeline.jobs.JobManager; JOB_DIR: spec.json)

SIGTERM asks for a stop, whenever it comes: the handler is installed before anything slow is imported, so a Stop
a second after Start is a stop, not a crash. During training the trainer saves a checkpoint at the end of the
current step and the job ends "stopped"; Resume continues from that checkpoint. Before training begins (loading,
predicting), the job ends "stopped" at the next progress report; Resume starts it again and reuses every stage
that finished (their outputs stay in the job folder).
"""

from __future__ import annotations

import signal
import sys

STOP = {"requested": False}
signal.signal(signal.SIGTERM, lambda *_: STOP.update(requested=True))  # first: see the docstring

import json  # noqa: E402  (after the handler, on purpose)
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

from laffi.errors import LaffiError  # noqa: E402
from laffi.io import write_json_atomic  # noqa: E402

PHASES = {"predict": "predicting", "annotate": "annotating", "train": "training"}  # status.json's words


class Stopped(Exception):
    """Raised between stages when a stop was asked for before training began."""


def run(job: Path) -> int:
    from laffi.pipeline.jobs import JobSpec

    spec = JobSpec(**json.loads((job / "spec.json").read_text()))
    state = {"state": "running"}

    def status(**kw):
        state.update(kw)
        write_json_atomic(job / "status.json", state)

    def progress(stage: str, done: int, total: int) -> None:  # the stages' progress events (done=0: it began)
        if stage == "train":  # training reports its steps itself (report, below); until then it loads
            status(phase=PHASES[stage], detail="loading the model and the data")
            return
        status(phase=PHASES.get(stage, stage), detail=f"{done}/{total} {'answers' if stage == 'predict' else 'rows'}")
        if STOP["requested"]:
            raise Stopped

    def log(message: str) -> None:
        print(message, flush=True)  # into job.log: for people, never parsed

    try:
        if STOP["requested"]:
            raise Stopped
        status(phase="starting", detail="loading")
        from laffi.settings import Settings
        from laffi.training.distributed import stop_callback

        def report(st):  # each step, for the app's status line
            status(phase=PHASES["train"], detail="", step=st.global_step, max_steps=st.max_steps)

        stages = spec.stages(job / "work", log=log, progress=progress, settings=Settings.from_env(),
                             callbacks=[stop_callback(lambda: STOP["requested"], report)])
        out = stages.train(spec.which)
        if out is None:
            step = state.get("step")
            status(state="stopped", phase="stopped",
                   detail=f"checkpoint saved at step {step}; Resume continues from it" if step else
                   "checkpoint saved; Resume continues from it")
        else:
            status(state="finished", phase="finished", detail=f"adapter written to {out}", adapter=str(out))
        return 0
    except Stopped:
        status(state="stopped", phase="stopped", detail="stopped before training began; Resume starts it again "
                                                        "and reuses the stages that finished")
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
