"""Training on N processes through `accelerate launch`, and the one Stop every training run obeys.

Usage:
    default_processes()                           # every visible CUDA GPU, 1 on a CPU
    plan = batch_plan(16, processes=2)            # BatchPlan(per_device=8, processes=2, accumulation=1)
    plan.describe()                               # "8 per device x 2 processes x 1 accumulation = 16 examples ..."
    cmd = launch_command(["train", "--data", "x.jsonl"], processes=2)   # the argv that runs it (shown as is)
    returncode = run_launched(cmd)                # waits; the ranks run `python -m laffi train ...`

accelerate is TRL's documented path to several GPUs (DDP; DeepSpeed ZeRO with the second config), so laffi does
not launch ranks itself: it builds one `accelerate launch --config_file configs/accelerate/... -m laffi ...` line,
runs exactly that line and shows exactly that line. One process needs no launcher: the command is plain
`python -m laffi ...`. On a machine without CUDA, the same multi-GPU config starts N CPU processes through torchrun
and the Trainer's `use_cpu` makes them talk over gloo (accelerate's own `--cpu` would start just one process).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from laffi.commandline import flags, python_laffi
from laffi.errors import LaffiError
from laffi.settings import REPO

CONFIG_DIR = REPO / "configs" / "accelerate"
MULTI_GPU, DEEPSPEED = "multi_gpu.yaml", "deepspeed_zero2.yaml"


def default_processes() -> int:
    """One process per visible CUDA GPU (CUDA_VISIBLE_DEVICES narrows them), 1 on a CPU."""
    import torch

    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def deepspeed_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("deepspeed") is not None


@dataclass(frozen=True)
class BatchPlan:
    """Examples per optimiser step = per_device x processes x accumulation, which is what the user asked for."""

    per_device: int
    processes: int
    accumulation: int

    @property
    def effective(self) -> int:
        return self.per_device * self.processes * self.accumulation

    def describe(self) -> str:
        return (f"{self.per_device} per device × {self.processes} process{'es' if self.processes > 1 else ''} × "
                f"{self.accumulation} accumulation = {self.effective} examples per optimiser step")


def batch_plan(batch_size: int, processes: int = 1, micro_batch_size: int | None = None) -> BatchPlan:
    """Split `batch_size` examples per optimiser step over processes: each process takes micro_batch_size per
    forward pass (default: its whole share, no accumulation) and accumulation makes up the rest, so more devices
    mean less accumulation, never a larger batch."""
    processes = max(1, int(processes))
    if batch_size % processes:
        near = sorted({max(processes, batch_size // processes * processes), -(-batch_size // processes) * processes})
        raise LaffiError(f"A batch of {batch_size} examples can't be split evenly over {processes} processes; use a "
                         f"batch size of {' or '.join(map(str, near))}, or fewer processes.")
    share = batch_size // processes
    micro = micro_batch_size or share
    if micro < 1 or share % micro:
        raise LaffiError(f"The micro batch size {micro} must divide each process's share of the batch ({share} = "
                         f"{batch_size} examples / {processes} processes).")
    return BatchPlan(per_device=micro, processes=processes, accumulation=share // micro)


def config_file(use_deepspeed: bool = False) -> Path:
    """The accelerate config shipped in configs/accelerate/ (DeepSpeed ZeRO-2 only where deepspeed imports)."""
    if use_deepspeed and not deepspeed_available():
        raise LaffiError("DeepSpeed ZeRO-2 was asked for, but deepspeed is not installed: `pip install deepspeed` "
                         "(CUDA machines), or train without --deepspeed.")
    name = DEEPSPEED if use_deepspeed else MULTI_GPU
    # a checkout has them; an installed laffi reads them from the working directory's configs/accelerate/
    for folder in (CONFIG_DIR, Path.cwd() / "configs" / "accelerate"):
        if (folder / name).is_file():
            return folder / name
    raise LaffiError(f"The accelerate config {name} is missing: it ships in the laffi repository's "
                     "configs/accelerate/; run from a checkout, or copy that folder into the working directory.")


def accelerate_program() -> str:
    """`accelerate`, as installed beside this Python (a venv's bin/), else the one on PATH."""
    beside = Path(sys.executable).parent / "accelerate"
    return str(beside) if beside.is_file() else (shutil.which("accelerate") or "accelerate")


def launch_command(laffi_args: list[str], processes: int = 1, use_deepspeed: bool = False,
                   port: int | None = None) -> list[str]:
    """The argv that runs `python -m laffi <laffi_args>` on `processes` processes: plain Python for one, else
    `accelerate launch` with the repo's config (the ranks re-run the same laffi command and see WORLD_SIZE)."""
    if processes <= 1:
        return python_laffi(laffi_args)
    cmd = [accelerate_program(), "launch", "--config_file", str(config_file(use_deepspeed)),
           "--num_processes", str(processes)]
    if port:  # two launches on one machine need two rendezvous ports (tests run them side by side)
        cmd += ["--main_process_port", str(port)]
    return [*cmd, "-m", "laffi", *laffi_args]


def shown(cmd: list[str]) -> str:
    """A command for people: relative paths inside the checkout, the launcher and Python by their short names."""
    repo = REPO
    words = []
    for i, w in enumerate(cmd):
        if i == 0:
            w = "python" if w == sys.executable else Path(w).name
        elif w.startswith(str(repo) + os.sep):
            w = os.path.relpath(w, repo)
        words.append(shlex.quote(w))
    return " ".join(words)


def run_launched(cmd: list[str], log=None) -> int:
    """Run a launch command in this process group (a job's Stop reaches it) and wait; the ranks' output goes to
    ours (a job's job.log). SIGTERM meanwhile is forwarded, so the ranks save a checkpoint and end."""
    if log:
        log("launch: " + shown(cmd))
    proc = subprocess.Popen(cmd, cwd=os.getcwd())
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # Ctrl-C on `laffi train`: the launcher got it too; wait for the ranks to end
            continue


# --- laffi's training commands on N processes --------------------------------------------------------------------
def processes_for(tcfg) -> int:
    return tcfg.num_processes or default_processes()


def train_launch(tcfg, data_flags: list[str]) -> list[str]:
    """The command that trains `tcfg` on its processes: `python -m laffi train ...` or `accelerate launch ...`, with
    every TrainConfig setting as a flag (laffi.commandline) so the ranks train exactly this config."""
    return launch_command(["train", *data_flags, *flags(tcfg)], processes_for(tcfg), tcfg.deepspeed)


def needs_launch(tcfg, world_size: int = 1) -> bool:
    """Whether training `tcfg` here means launching processes: it asks for several, and this process is not
    already one rank of a launch (world_size > 1: accelerate/torchrun set WORLD_SIZE; the entry point reads it)."""
    return processes_for(tcfg) > 1 and world_size <= 1


def run_training(tcfg, data_flags: list[str], run_key: str | None = None, log=None):
    """Train `tcfg` through `accelerate launch` and wait: a TrainResult, "finished" with the adapter folder, or
    "stopped" with tcfg.work_dir when a Stop ended it (resumable: the ranks saved a checkpoint). A launch that
    fails otherwise is a LaffiError. data_flags carry the run key and whether to resume (TrainDataArgs)."""
    from laffi.adapter_folder import AdapterFolder, TrainResult

    cmd = train_launch(tcfg, data_flags)
    stopped = []
    try:  # a Stop (SIGTERM) meanwhile: note it, and let whoever handled it before still see it
        previous = signal.getsignal(signal.SIGTERM)

        def on_term(signum, frame):
            stopped.append(signum)
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread: signals are not ours to handle
        previous = None
    try:
        code = run_launched(cmd, log)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    final = AdapterFolder(Path(tcfg.adapters_dir) / tcfg.name)
    written = final.config()
    if written and (run_key is None or written.get("run_key") == run_key) and code == 0:
        return TrainResult("finished", final.path)
    if code == 0 or stopped:
        return TrainResult("stopped", Path(tcfg.work_dir))
    raise LaffiError(f"The {processes_for(tcfg)} training processes ended with status {code}; their output is above "
                     "(in the app: the job's log). Resume continues from the last checkpoint.")


def stop_callback(asked, on_step=None):
    """The one Stop of every training run: a TrainerCallback that, at each step's end, reports the step
    (on_step(state)) and stops with a checkpoint that Resume continues from when asked() says so. Under a launch
    the ranks agree first (all-reduce, max) so that every rank stops at the same step and saves the same
    checkpoint; one rank stopping alone would leave the others waiting in the next step's all-reduce."""
    from transformers import TrainerCallback

    class StopWhenAsked(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            import torch
            import torch.distributed as dist

            if on_step is not None:
                on_step(state)
            wanted = torch.tensor([1 if asked() else 0], device=args.device)
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(wanted, op=dist.ReduceOp.MAX)
            if wanted.item():
                control.should_training_stop = True
                control.should_save = True  # the checkpoint that a Resume (on every rank) continues from
            return control

    return StopWhenAsked()


def stop_everywhere_callback():
    """stop_callback for one rank of a launch: SIGTERM asks for the stop."""
    asked = {"stop": False}
    signal.signal(signal.SIGTERM, lambda *_: asked.update(stop=True))
    return stop_callback(lambda: asked["stop"])
