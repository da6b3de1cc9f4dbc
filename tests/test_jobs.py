"""Training jobs in a separate process on the tiny model: start -> progress -> stop (checkpoint) -> resume ->
finished adapter; one job at a time; a killed job shows as failed."""

import json
import os
import signal
import threading
import time

import pytest

from laffi.errors import LaffiError
from laffi.pipeline.jobs import JobManager, JobSpec


def wait_for(jobs, predicate, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = jobs.status()
        if st and predicate(st):
            return st
        time.sleep(0.3)
    raise AssertionError(f"timed out; last status: {jobs.status()}")


@pytest.fixture
def spec(tiny_dir, small_squad, tmp_path):
    def make(**kw):
        base = dict(method="laffi", name="live", data=str(small_squad), articles=None, limit=5, base=str(tiny_dir),
                    adapters_dir=str(tmp_path / "adapters"),
                    train=dict(r=4, alpha=8, batch_size=1, epochs=40, max_length=2048, save_steps=1000,
                               heldout=0))  # every example trained on (held-out scoring: test_training)
        base.update(kw)
        return JobSpec(**base)
    return make


@pytest.mark.slow  # a training process start to finish: tens of seconds
def test_start_progress_stop_resume_finish(spec, tmp_path):
    jobs = JobManager(tmp_path / "jobs")
    jobs.start(spec())
    st = wait_for(jobs, lambda s: len(s["loss"]) >= 3)
    assert st["state"] == "running" and st["phase"] == "training" and "python -m laffi train" in st["cli"]
    jobs.stop()
    st = wait_for(jobs, lambda s: s["state"] != "running")
    assert st["state"] == "stopped", st
    stopped_at = st["loss"][-1]["step"]
    work = tmp_path / "jobs" / st["id"] / "work" / "train" / "live" / "checkpoints"
    assert any(p.name == f"checkpoint-{stopped_at}" for p in work.iterdir())
    assert not (tmp_path / "adapters" / "live").exists()

    jobs.resume()
    st = wait_for(jobs, lambda s: s["state"] != "running", timeout=300)
    assert st["state"] == "finished", st
    steps = [r["step"] for r in st["loss"] if "loss" in r]  # (held-out scores have lines of their own)
    assert steps == list(range(1, steps[-1] + 1)) and steps[-1] == 200  # 5 examples x 40 epochs, no step twice
    config = json.loads((tmp_path / "adapters" / "live" / "training_config.json").read_text())
    assert config["stats"]["resumed_from"].endswith(f"checkpoint-{stopped_at}")


@pytest.mark.parametrize("after", [0.0, 1.0])
def test_a_stop_right_after_start_is_stopped_not_failed(spec, tmp_path, after):
    """A Stop while the job process starts (before its SIGTERM handler, or while it imports) ends "stopped", with
    what Resume does; the package the runner imports first stays light, so the handler is in place at once."""
    jobs = JobManager(tmp_path / "jobs")
    jobs.start(spec())
    time.sleep(after)
    jobs.stop()
    st = wait_for(jobs, lambda s: s["state"] != "running", timeout=60)
    assert st["state"] == "stopped", st
    assert "Resume" in st["detail"] and not st.get("error")


def test_the_job_package_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, laffi.pipeline.jobs; "
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'trl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_two_starts_at_once_give_one_job(spec, tmp_path):
    jobs = JobManager(tmp_path / "jobs")
    results = []

    def start():
        try:
            results.append(jobs.start(spec()))
        except LaffiError as e:
            results.append(e)

    threads = [threading.Thread(target=start) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    errors = [r for r in results if isinstance(r, LaffiError)]
    assert len(errors) == 1 and "already running" in str(errors[0])
    os.kill(jobs.status()["pid"], signal.SIGKILL)


@pytest.mark.slow  # a training process start to finish: tens of seconds
def test_a_killed_job_is_shown_failed_and_the_app_can_start_another(spec, tmp_path):
    jobs = JobManager(tmp_path / "jobs")
    jobs.start(spec())
    st = wait_for(jobs, lambda s: len(s["loss"]) >= 1)
    os.kill(st["pid"], signal.SIGKILL)
    st = wait_for(jobs, lambda s: s["state"] != "running")
    assert st["state"] == "failed" and "ended unexpectedly" in st["error"]
    jobs.start(spec(name="again", train=dict(r=4, alpha=8, batch_size=1, epochs=1, max_length=2048)))
    st = wait_for(jobs, lambda s: s["state"] != "running")
    assert st["state"] == "finished" and st["name"] == "again"


def test_bad_settings_are_rejected_before_any_process_starts(spec, tmp_path):
    with pytest.raises(LaffiError, match="TrainConfig.lr"):
        spec(train=dict(lr=0))
    with pytest.raises(LaffiError, match="TrainConfig.name"):
        spec(name="../x")
    for bad in (dict(r=0), dict(batch_size=0), dict(epochs=0)):
        with pytest.raises(LaffiError, match=f"TrainConfig.{next(iter(bad))} must be"):
            spec(train=bad)
    assert not (tmp_path / "jobs").exists()
    jobs = JobManager(tmp_path / "jobs")  # these need the model's architecture and tokenizer: checked at start
    with pytest.raises(LaffiError, match="no module named 'nope_proj'"):
        jobs.start(spec(train=dict(target_modules="q_proj,nope_proj")))
    with pytest.raises(LaffiError, match="max_length 64 is shorter than the laffi prompt"):
        jobs.start(spec(train=dict(max_length=64)))
    assert jobs.status() is None and not [p for p in (tmp_path / "jobs").iterdir() if p.is_dir()]


@pytest.mark.slow  # a training process start to finish: tens of seconds
def test_bad_data_fails_with_its_reason_and_another_job_can_start(spec, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe not json at all")
    jobs = JobManager(tmp_path / "jobs")
    jobs.start(spec(data=str(bad)))
    st = wait_for(jobs, lambda s: s["state"] != "running")
    assert st["state"] == "failed" and "bad.json" in st["error"] and "Traceback" not in st["error"]
    jobs.start(spec(name="again", train=dict(r=4, alpha=8, batch_size=1, epochs=1, max_length=2048)))
    assert wait_for(jobs, lambda s: s["state"] != "running")["state"] == "finished"


OOM_AT_STEP_3 = '''
import laffi.training.trainer as training
from transformers import TrainerCallback

class _OutOfMemory(TrainerCallback):
    def on_step_begin(self, args, state, control, **kw):
        if state.global_step == 3:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

_real = training.train_adapter
training.train_adapter = lambda records, cfg, resume=True, extra_callbacks=(), **kw: _real(
    records, cfg, resume, [*extra_callbacks, _OutOfMemory()], **kw)
'''


@pytest.mark.slow  # a training process start to finish: tens of seconds
def test_out_of_memory_is_shown_failed_and_the_checkpoint_resumes(spec, tmp_path, monkeypatch):
    """The job process gets a sitecustomize that makes step 3 fail the way torch does when memory runs out."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(OOM_AT_STEP_3)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", ""), os.getcwd()]))
    jobs = JobManager(tmp_path / "jobs")
    jobs.start(spec(train=dict(r=4, alpha=8, batch_size=1, epochs=1, max_length=2048, save_steps=2)))
    st = wait_for(jobs, lambda s: s["state"] != "running")
    assert st["state"] == "failed" and st["error"].startswith("Out of memory at step 3: lower the batch size")
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", "").split(os.pathsep, 1)[1])
    jobs.resume()  # without the fault: continues from checkpoint-2 and finishes
    st = wait_for(jobs, lambda s: s["state"] != "running")
    assert st["state"] == "finished", st
    config = json.loads((tmp_path / "adapters" / "live" / "training_config.json").read_text())
    assert config["stats"]["resumed_from"].endswith("checkpoint-2")


def test_a_job_learns_its_phase_from_progress_events_not_from_its_log(tmp_path, monkeypatch):
    """The runner's status follows the stages' progress events; the log is for people and its wording can
    change (a message that reads like the training stage's moves nothing)."""
    import json
    from dataclasses import asdict

    from laffi.pipeline import job_runner

    phases = []

    def phase():
        return json.loads((tmp_path / "status.json").read_text())["phase"]

    class Stages:
        def __init__(self, log, progress, **_):
            self.log, self.progress = log, progress

        def train(self, which):
            self.log("train laffi (seed 0): laffi on 3 records -> adapters/live")
            phases.append(phase())
            self.progress("annotate", 2, 3)
            phases.append(phase())
            self.progress("train", 0, 3)
            phases.append(phase())
            return tmp_path / "adapters" / "live"

    (tmp_path / "spec.json").write_text(json.dumps(asdict(JobSpec(name="live", data="squad.json"))))
    real = JobSpec.stages  # still what validates a spec; the runner's own call gets the stand-in
    monkeypatch.setattr(JobSpec, "stages", lambda self, work, **kw: Stages(**kw) if "progress" in kw
                        else real(self, work, **kw))
    assert job_runner.run(tmp_path) == 0
    assert phases == ["starting", "annotating", "training"] and phase() == "finished"
