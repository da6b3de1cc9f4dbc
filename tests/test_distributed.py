"""Training on N processes without a GPU: the launch command for 1, 2 and 4 processes, the batch plan (the
effective batch stays what was asked), a 2-process CPU run (gloo) that writes the same adapter format as 1
process, and a Stop that ends a parent and its children (SIGTERM, then SIGKILL after the grace period)."""

import json
import os
import subprocess
import sys
import time

import pytest

from laffi.errors import LaffiError
from laffi.processes import alive, stop_tree
from laffi.training.distributed import CONFIG_DIR, batch_plan, launch_command, shown


@pytest.mark.parametrize("n", [1, 2, 4])
def test_the_launch_command_for_n_processes(n):
    cmd = launch_command(["train", "--data", "x.jsonl"], n)
    if n == 1:  # one process needs no launcher
        assert cmd == [sys.executable, "-m", "laffi", "train", "--data", "x.jsonl"]
        assert shown(cmd) == "python -m laffi train --data x.jsonl"
        return
    assert os.path.basename(cmd[0]) == "accelerate" and cmd[1] == "launch"
    assert cmd[cmd.index("--config_file") + 1] == str(CONFIG_DIR / "multi_gpu.yaml")
    assert (CONFIG_DIR / "multi_gpu.yaml").is_file()
    assert cmd[cmd.index("--num_processes") + 1] == str(n)
    assert cmd[-5:] == ["-m", "laffi", "train", "--data", "x.jsonl"]
    assert shown(cmd) == (f"accelerate launch --config_file configs/accelerate/multi_gpu.yaml --num_processes {n} "
                          "-m laffi train --data x.jsonl")


def test_deepspeed_is_used_only_where_it_imports():
    from laffi.training.distributed import deepspeed_available

    if deepspeed_available():
        cmd = launch_command(["train"], 2, use_deepspeed=True)
        assert cmd[cmd.index("--config_file") + 1].endswith("deepspeed_zero2.yaml")
    else:
        with pytest.raises(LaffiError, match="deepspeed is not installed"):
            launch_command(["train"], 2, use_deepspeed=True)
    assert (CONFIG_DIR / "deepspeed_zero2.yaml").is_file()


@pytest.mark.parametrize("batch, n, micro, want", [(16, 1, None, (16, 1)), (16, 2, None, (8, 1)),
                                                   (16, 4, None, (4, 1)), (16, 2, 2, (2, 4)), (16, 4, 2, (2, 2))])
def test_the_effective_batch_stays_what_was_asked(batch, n, micro, want):
    plan = batch_plan(batch, n, micro)
    assert (plan.per_device, plan.accumulation) == want and plan.processes == n
    assert plan.effective == batch
    assert plan.describe().endswith(f"= {batch} examples per optimiser step")


def test_a_batch_that_cant_be_split_is_refused_with_what_to_do():
    with pytest.raises(LaffiError, match="can't be split evenly over 4 processes; use a batch size of 4 or 8"):
        batch_plan(6, 4)
    from laffi.training.trainer import TrainConfig

    with pytest.raises(LaffiError, match="over 4 processes"):
        TrainConfig(batch_size=6, num_processes=4)


def test_the_train_tab_and_pipeline_show_the_real_launch_line(tmp_path, small_squad):
    import shlex

    from laffi.cli import parse
    from laffi.pipeline.config import PipelineConfig
    from laffi.pipeline.stages import Stages

    cfg = PipelineConfig(data=str(small_squad), train_articles="all", methods=["sft"], out_dir=str(tmp_path),
                         adapters_dir=str(tmp_path / "adapters"), train={"num_processes": 2, "batch_size": 4})
    run = Stages(cfg, log=lambda m: None)
    line = run.commands("sft").splitlines()[-1]
    assert line.startswith("accelerate launch --config_file configs/accelerate/multi_gpu.yaml --num_processes 2 "
                           "-m laffi train --data ")
    argv = shlex.split(line)
    laffi_args = argv[argv.index("laffi") + 1:]
    assert parse("train", laffi_args[1:])[0] == run.train_config("sft", 0)  # the ranks train exactly this
    assert "num_processes" not in json.dumps(run.train_key("sft", 0))  # how many processes: not what is learned
    one = Stages(PipelineConfig(**{**cfg.__dict__, "train": {"batch_size": 4, "num_processes": 1}}))
    assert one.train_key("sft", 0) == run.train_key("sft", 0)


PARENT = r"""
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN if sys.argv[1] == "stubborn" else signal.SIG_DFL)
code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN if %r == 'stubborn' else signal.SIG_DFL); " \
       "time.sleep(600)" % sys.argv[1]
# one child in our group, one in a session of its own (as torchrun starts its ranks)
kids = [subprocess.Popen([sys.executable, "-c", code]),
        subprocess.Popen([sys.executable, "-c", code], start_new_session=True)]
print(" ".join(str(k.pid) for k in kids), flush=True)
time.sleep(600)
"""


def family(kind):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, kind], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    kids = [int(p) for p in parent.stdout.readline().split()]
    assert len(kids) == 2 and all(alive(p) for p in [parent.pid, *kids])
    return parent, kids


@pytest.mark.parametrize("kind", ["obedient", "stubborn"])
def test_stop_ends_a_parent_and_its_children(kind):
    parent, kids = family(kind)
    killed = []
    started, grace = time.monotonic(), 30.0 if kind == "obedient" else 2.0
    stop_tree(parent.pid, grace=grace, on_kill=killed.extend).join(timeout=60)
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(alive(p) for p in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(parent.pid) and not any(alive(p) for p in kids)
    if kind == "obedient":  # SIGTERM was enough: nothing was killed, before the grace period ended
        assert killed == [] and time.monotonic() - started < grace
    else:  # they ignored SIGTERM: SIGKILL after the grace period, all three
        assert sorted(killed) == sorted([parent.pid, *kids]) and time.monotonic() - started >= 2.0


def test_the_job_managers_stop_reaches_the_children(tmp_path):
    from laffi.io import write_json_atomic
    from laffi.pipeline.jobs import STOP_REQUESTED, JobManager

    parent, kids = family("stubborn")
    job = tmp_path / "jobs" / "j1"
    job.mkdir(parents=True)
    write_json_atomic(job / "status.json", {"state": "running", "phase": "training"})
    write_json_atomic(tmp_path / "jobs" / "current.json", {"id": "j1", "dir": str(job), "pid": parent.pid,
                                                           "name": "x", "started": time.time(), "cli": ""})
    jobs = JobManager(tmp_path / "jobs")
    jobs.stop(grace=1.0)
    assert (job / STOP_REQUESTED).exists()
    parent.wait(timeout=20)
    deadline = time.monotonic() + 20
    while any(alive(p) for p in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in kids)
    assert jobs.status()["state"] == "stopped"


def adapter_format(folder):
    from safetensors import safe_open

    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    return sorted(p.name for p in folder.iterdir()), shapes


@pytest.mark.slow
@pytest.mark.timeout(2400)  # about a minute on two free cores; far longer where the CPU is shared
def test_two_cpu_processes_write_one_adapter_like_one_process(tiny_dir, small_squad, tmp_path):
    """`laffi train --num_processes 2` on a CPU: accelerate launch starts two ranks (gloo); rank 0 alone writes the
    loss log and the adapter, whose files, tensor names and shapes are those of a 1-process run."""
    from laffi.cli import main

    common = ["train", "--method", "sft", "--data", str(small_squad), "--base", str(tiny_dir), "--r", "4",
              "--alpha", "8", "--batch_size", "2", "--max_steps", "2", "--save_steps", "1000", "--max_length", "2048",
              "--target_modules", "q_proj,v_proj"]
    runs = {}
    for n in (1, 2):
        out = tmp_path / f"n{n}"
        assert main([*common, "--adapters_dir", str(out / "adapters"), "--work_dir", str(out / "work"),
                     "--num_processes", str(n)]) == 0
        runs[n] = out
    one, two = (runs[n] / "adapters" / "sft" for n in (1, 2))
    assert adapter_format(two) == adapter_format(one)
    assert [p.name for p in (runs[2] / "adapters").iterdir()] == ["sft"]  # one adapter, no half-written copies
    config = json.loads((two / "training_config.json").read_text())
    assert config["stats"]["processes"] == 2 and config["stats"]["global_step"] == 2
    assert config["stats"]["batch"].startswith("1 per device × 2 processes × 1 accumulation = 2")
    steps = [r["step"] for r in map(json.loads, (runs[2] / "work" / "loss_log.jsonl").read_text().splitlines())
             if "loss" in r]  # (held-out scores have lines of their own)
    assert steps == [1, 2]  # one writer: rank 0
