"""Training jobs in a separate process, one at a time, that survive page refreshes and report progress on disk.

Usage:
    jobs = JobManager("runs/app/jobs")
    job = jobs.start(JobSpec(method="laffi", name="laffi-live", data="squad.json", limit=24))
    jobs.status()          # {"id", "state": running|stopped|finished|failed, "phase", "step", "max_steps", ...}
    jobs.stop()            # the job saves a checkpoint at the end of its current step and exits "stopped"
    jobs.resume()          # the same job continues from that checkpoint

State lives in files (current.json, and per job spec.json, status.json, loss_log.jsonl, job.log), so any app
process, or a browser that re-opens the page, sees the same job. A job whose process died is reported as failed
with the end of its log, never as running - unless a Stop asked it to end: then it is "stopped" (a SIGTERM that
came before the runner could catch it ends the process at once; Resume starts it again).

This module imports nothing heavy (no torch, transformers or peft at import time): the runner process imports it
first (`python -m laffi.pipeline.job_runner`), and its SIGTERM handler must be in place a moment after Start.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from laffi.errors import LaffiError
from laffi.io import read_jsonl, write_json_atomic

if TYPE_CHECKING:  # laffi.training.trainer imports transformers: only for the annotation
    from laffi.training.trainer import TrainConfig

STOP_REQUESTED = "stop_requested"  # a file in the job folder: a Stop was asked for since the last (re)start


@dataclass
class JobSpec:
    """A training run from the app: which questions, which feedback, which settings (one PipelineConfig's train
    stage for one method)."""

    method: str = "laffi"
    name: str = "laffi-live"
    data: str = ""
    articles: str | None = "train"
    limit: int = 24
    seed: int = 0
    human: str | None = None  # the app's feedback store (SQLite) or a CSV/JSONL file
    human_fraction: float = 0.0
    feedback: str | None = None  # the app's store: every row a training row (PipelineConfig.feedback_rows)
    drafts: str = "own"
    base: str = "embedded"
    adapters_dir: str = "adapters"
    overwrite: bool = False  # replace an adapter of the same name (asked for explicitly in the app)
    train: dict = field(default_factory=dict)  # TrainConfig settings (r, alpha, lr, epochs, batch_size, ...)

    def __post_init__(self):
        if not 1 <= int(self.limit) <= 100_000:
            raise LaffiError(f"JobSpec.limit must be at least 1, not {self.limit}.")
        tcfg = self.train_config(Path("."))  # validates the method, name, drafts, fraction and every setting
        self.train = {k: getattr(tcfg, k) for k in self.train}  # as TrainConfig's types (a form gives 16.0 for 16)

    @property
    def which(self) -> str:
        """The pipeline run this job trains: sft, or laffi (whose method may be laffi+sft)."""
        return "sft" if self.method == "sft" else "laffi"

    def pipeline(self, work: Path):
        from laffi.pipeline.config import PipelineConfig

        overrides = {} if self.method in ("sft", "laffi") else {"method": self.method}
        return PipelineConfig(
            data=self.data, base=self.base, train_articles=self.articles or "all", train_limit=int(self.limit),
            seed=self.seed, human_feedback=self.human, human_fraction=float(self.human_fraction),
            feedback_rows=self.feedback,
            drafts=self.drafts, methods=[self.which], sft_name=self.name, laffi_name=self.name,
            train=dict(self.train), laffi=overrides, seeds=[self.seed], out_dir=str(work),
            adapters_dir=self.adapters_dir, overwrite=self.overwrite)

    def stages(self, work: Path, **kwargs):
        from laffi.pipeline.stages import Stages

        return Stages(self.pipeline(work), **kwargs)

    def train_config(self, work: Path) -> TrainConfig:
        return self.stages(work).train_config(self.which, self.seed)

    def cli(self, work: Path) -> str:
        """The equivalent command lines, to show next to every run."""
        return self.stages(work).commands(self.which)


def spec_work_log(job: Path, name: str) -> Path:
    """Where a job's training writes its loss log (the train stage's work folder: laffi.pipeline.stages)."""
    from laffi.adapter_folder import LOSS_LOG

    return job / "work" / "train" / name / LOSS_LOG


class JobManager:
    def __init__(self, root: str | Path, stop_grace_seconds: float | None = None):
        from laffi.settings import Settings

        self.root = Path(root)
        # how long a Stop waits before SIGKILL: the entry point's setting (the app: LAFFI_STOP_GRACE_SECONDS)
        self.stop_grace_seconds = Settings().stop_grace_seconds if stop_grace_seconds is None else stop_grace_seconds
        self.root.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _locked(self):
        with open(self.root / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # two Start clicks at once: the second waits, then sees the first job
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _current(self) -> dict | None:
        path = self.root / "current.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def status(self) -> dict | None:
        cur = self._current()
        if not cur:
            return None
        job = Path(cur["dir"])
        st = json.loads((job / "status.json").read_text()) if (job / "status.json").is_file() else {}
        st = {**cur, **st}
        from laffi.processes import alive

        if st.get("state") in (None, "running") and not alive(cur["pid"]):
            if (job / STOP_REQUESTED).exists():  # ended by the Stop before the runner could catch the signal
                st.update(state="stopped", phase="stopped", detail="stopped before training began; Resume starts "
                          "it again and reuses the stages that finished")
            else:
                tail = (job / "job.log").read_text(errors="replace")[-1500:] if (job / "job.log").is_file() else ""
                st.update(state="failed", error=st.get("error") or "The training process ended unexpectedly "
                          "(killed, or out of memory). Its last checkpoint can be resumed.", log_tail=tail)
            write_json_atomic(job / "status.json", {k: v for k, v in st.items() if k not in cur})
        st["loss"] = read_jsonl(spec_work_log(job, cur["name"]), lenient=True)  # as laffi.training.logs writes it
        return st

    def spec(self) -> JobSpec | None:
        """The settings of the current (last started) job, or None."""
        cur = self._current()
        path = Path(cur["dir"]) / "spec.json" if cur else None
        return JobSpec(**json.loads(path.read_text())) if path and path.is_file() else None

    def start(self, spec: JobSpec) -> dict:
        from laffi.training.preflight import preflight

        preflight(spec.train_config(Path(".")))  # bad modules / max_length: an error now, not a failed job later
        with self._locked():
            st = self.status()
            if st and st["state"] == "running":
                raise LaffiError(f"A training job ({st['name']}) is already running; wait for it or stop it first.")
            job_id = time.strftime("%Y%m%d-%H%M%S") + f"-{spec.name}"
            job = self.root / job_id
            job.mkdir(parents=True)
            write_json_atomic(job / "spec.json", asdict(spec))
            return self._launch(job, spec, job_id)

    def resume(self) -> dict:
        with self._locked():
            st = self.status()
            if not st:
                raise LaffiError("There is no training job to resume; start one first.")
            if st["state"] == "running":
                raise LaffiError("The training job is still running.")
            if st["state"] == "finished":
                raise LaffiError("The training job has finished; start a new one.")
            job = Path(st["dir"])
            spec = JobSpec(**json.loads((job / "spec.json").read_text()))
            return self._launch(job, spec, st["id"])

    def _launch(self, job: Path, spec: JobSpec, job_id: str) -> dict:
        (job / STOP_REQUESTED).unlink(missing_ok=True)
        write_json_atomic(job / "status.json", {"state": "running", "phase": "starting"})
        log = open(job / "job.log", "a")
        proc = subprocess.Popen([sys.executable, "-m", "laffi.pipeline.job_runner", str(job)], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=os.getcwd())
        log.close()
        cur = {"id": job_id, "dir": str(job), "pid": proc.pid, "name": spec.name, "started": time.time(),
               "cli": spec.cli(job / "work")}
        write_json_atomic(self.root / "current.json", cur)
        return cur

    def stop(self, grace: float | None = None) -> dict:
        """SIGTERM to the job's process group and every process below it (the ranks of an accelerate launch live
        in sessions of their own): each saves a checkpoint at the end of its step. What is still alive after
        `grace` seconds (default: the manager's, LAFFI_STOP_GRACE_SECONDS in the app) gets SIGKILL; Resume continues from the last checkpoint."""
        from laffi.processes import stop_tree

        st = self.status()
        if not st or st["state"] != "running":
            raise LaffiError("No training job is running.")
        (Path(st["dir"]) / STOP_REQUESTED).touch()
        stop_tree(st["pid"], self.stop_grace_seconds if grace is None else grace)
        return st
