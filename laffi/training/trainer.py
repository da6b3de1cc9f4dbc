"""Stage 3: LoRA fine-tuning with TRL's SFTTrainer on prompt-completion data, loss on the completion only.

Usage:
    rows = training_rows(records, "laffi", tokenizer)     # SFT: target = gold answer; LaFFi: target = feedback
    result = train_adapter(records, TrainConfig(method="laffi", name="laffi"))   # result.status, result.path

SFT and LaFFi see the same questions, steps and LoRA settings unless told otherwise, so the comparison is fair:
- SFT    input = passage + question (the QA prompt),             target = the gold answer or "no answer";
- LaFFi  input = passage + question + the model's own answer,    target = the annotator's feedback.
- laffi+sft: both kinds of rows for every record ("beside" SFT rather than "instead of"); with epochs=0.5 it takes
  the same number of steps as either alone.
Prompts are rendered by laffi.inference.prompts exactly as at inference. Checkpoints go to work_dir (resumable); the
finished adapter is assembled in a temporary folder and renamed into adapters/<name>/, so the app never sees
half an adapter. Next to the weights: training_config.json, data_manifest.json, loss_log.jsonl, README.md.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from laffi.adapter_folder import CARD, CONFIG, LOSS_LOG, MANIFEST, PEFT_CONFIG, AdapterFolder, TrainResult, publish
from laffi.errors import LaffiError
from laffi.inference.models import ADAPTER_NAME_RE, BASE_VARIANT, ModelConfig
from laffi.settings import Settings
from laffi.training.rows import heldout_split, training_rows

METHODS = ("sft", "laffi", "laffi+sft")


@dataclass
class TrainConfig:
    """One LoRA training run. Defaults are the recipe the shipped adapters were trained with (configs/STUDY.md:
    LoRA r 16 / alpha 32 on every linear layer, no dropout, lr 1e-3, batch 4), at sizes a CPU can train."""

    method: str = field(default="laffi", metadata={"help": "'sft' (target = gold answer), 'laffi' (target = feedback) "
                                                           "or 'laffi+sft' (both kinds of rows)."})
    name: str | None = field(default=None, metadata={
        "help": "Adapter name = folder under adapters_dir (default: the method's name)."})
    base: str = field(default="embedded", metadata={"help": "Base model, as ModelConfig.base."})
    adapters_dir: str = field(default="adapters", metadata={"help": "Where the finished adapter folder is written."})
    work_dir: str | None = field(default=None, metadata={"help": "Checkpoints and logs (default: runs/train/<name>)."})
    r: int = field(default=16, metadata={"help": "LoRA rank."})
    alpha: int = field(default=32, metadata={"help": "LoRA alpha (scaling = alpha / r)."})
    dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    target_modules: str = field(default="all-linear",
                                metadata={"help": "Comma-separated module names to adapt, or 'all-linear'."})
    lr: float = field(default=1e-3, metadata={"help": "Peak learning rate (linear decay, short warm-up)."})
    epochs: float = field(default=1.0, metadata={"help": "Passes over the training examples."})
    max_steps: int = field(default=-1, metadata={"help": "Stop after this many optimiser steps (-1: use epochs)."})
    batch_size: int = field(default=4, metadata={"help": "Examples per optimiser step."})
    max_length: int = field(default=1024, metadata={"help": "Longest prompt + completion in tokens; longer examples "
                                                            "are left out (and counted), never cut."})
    seed: int = field(default=0, metadata={"help": "Seed for LoRA init and data order."})
    save_steps: int = field(default=25, metadata={"help": "Checkpoint (resumable) and score the held-out loss every N "
                                                          "steps (more often in short runs: 2 scores at least)."})
    heldout: int = field(default=32, metadata={
        "help": "Examples held out, never trained on (whole passages where there are several; at most a tenth of "
                "the data): their loss is scored at every checkpoint, and the adapter kept is the checkpoint with "
                "the best held-out loss. 0: no held-out loss; the last step is kept."})
    early_stopping: int = field(default=0, metadata={
        "help": "Stop after this many held-out scores without improvement (0: train to the end)."})
    pack: bool = field(default=True, metadata={
        "help": "Lay the examples of a step out as trees that share their passage (laffi.training.packing): the same loss "
                "and gradients as separate examples, 3-5x fewer tokens computed. Off: TRL's padded batches."})
    layers: str = field(default="all", metadata={
        "help": "Decoder layers that get LoRA: 'all', or a range such as '15-29' (upper layers only: lets every "
                "variant share the lower layers' prefill at inference)."})
    group_by_length: bool = field(default=True, metadata={
        "help": "Without pack: batch examples of similar length together (less padding, same examples; only "
                "their order within the epoch changes)."})
    overwrite: bool = field(default=False, metadata={
        "help": "Replace an existing adapter of this name (the old one stays in place until the new one is "
                "complete). Off: an existing name is refused before any work."})
    pad_to_max_length: bool = field(default=False, metadata={
        "help": "Pad every batch to max_length. Wastes compute: it is the bench's baseline, not for real runs."})
    num_processes: int | None = field(default=None, metadata={
        "help": "Training processes, one per GPU (default: every visible GPU, 1 on a CPU). More than 1 launches "
                "`accelerate launch --config_file configs/accelerate/multi_gpu.yaml`; batch_size stays the examples "
                "per optimiser step (laffi.training.distributed.batch_plan)."})
    micro_batch_size: int | None = field(default=None, metadata={
        "help": "Examples per process per forward pass (default: its whole share of batch_size); gradient "
                "accumulation makes up the rest."})
    task_weight: float | None = field(default=None, metadata={
        "help": "laffi+sft only: the SFT rows' share of each step's loss, each task's loss averaged over its own "
                "tokens (laffi.training.task_loss); none: one mean over every completion token."})
    deepspeed: bool = field(default=False, metadata={
        "help": "With several processes, DeepSpeed ZeRO-2 (configs/accelerate/deepspeed_zero2.yaml; needs "
                "`pip install deepspeed`)."})

    def __post_init__(self):
        self._as_declared_types()
        if self.method not in METHODS:
            raise LaffiError(f"TrainConfig.method must be 'sft', 'laffi' or 'laffi+sft', not {self.method!r}.")
        self.name = self.name or self.method.replace("+", "-")
        if not ADAPTER_NAME_RE.match(self.name) or self.name == BASE_VARIANT:
            raise LaffiError(f"TrainConfig.name {self.name!r} is not a valid adapter name: use letters, digits, '-' "
                             f"and '_' (no path characters, not '{BASE_VARIANT}').")
        checks = [("r", self.r >= 1, "at least 1"), ("alpha", self.alpha > 0, "positive"),
                  ("dropout", 0 <= self.dropout < 1, "in [0, 1)"), ("lr", 0 < self.lr < 1, "in (0, 1)"),
                  ("epochs", self.epochs > 0, "positive"), ("batch_size", self.batch_size >= 1, "at least 1"),
                  ("max_length", self.max_length >= 64, "at least 64"), ("save_steps", self.save_steps >= 1,
                                                                         "at least 1"),
                  ("max_steps", self.max_steps == -1 or self.max_steps >= 1, "-1 or at least 1"),
                  ("heldout", self.heldout >= 0, "0 or more"), ("early_stopping", self.early_stopping >= 0,
                                                                "0 or more"),
                  ("num_processes", self.num_processes is None or self.num_processes >= 1, "at least 1"),
                  ("micro_batch_size", self.micro_batch_size is None or self.micro_batch_size >= 1, "at least 1")]
        for name, ok, rule in checks:
            if not ok:
                raise LaffiError(f"TrainConfig.{name} must be {rule}, not {getattr(self, name)!r}.")
        if self.task_weight is not None and not (self.method == "laffi+sft" and self.pack
                                                 and 0 < self.task_weight < 1):
            raise LaffiError("TrainConfig.task_weight is the SFT rows' share of the loss in (0, 1), for packed "
                             f"laffi+sft training only, not {self.task_weight!r} with {self.method}.")
        if not self.target_modules.strip():
            raise LaffiError("TrainConfig.target_modules is empty; e.g. 'q_proj,v_proj' or 'all-linear'.")
        self.layer_range()  # validates `layers`
        if self.num_processes or self.micro_batch_size:  # a batch that can't be split: an error now, not in a rank
            from laffi.training.distributed import batch_plan

            batch_plan(self.batch_size, self.num_processes or 1, self.micro_batch_size)
        self.work_dir = self.work_dir or str(Path("runs") / "train" / self.name)

    def _as_declared_types(self) -> None:
        """Every number as its field's type, whoever made the config: a form's slider gives 16.0 for r, YAML reads
        1e-3 as text. The one place a setting is converted; a value that is no number is a sentence."""
        import typing

        for name, declared in typing.get_type_hints(type(self)).items():  # not Field.type: argparse rewrites it
            args = set(typing.get_args(declared)) or {declared}
            kind = next((k for k in (int, float) if k in args), None)
            value = getattr(self, name)
            if kind is None or (value is None and type(None) in args) or isinstance(value, bool):
                continue
            try:
                number = float(value) if isinstance(value, str) else value
                if kind is int and number != int(number):
                    raise ValueError
                setattr(self, name, kind(number))
            except (TypeError, ValueError) as e:
                raise LaffiError(f"TrainConfig.{name} must be {'a whole number' if kind is int else 'a number'}, "
                                 f"not {value!r}.") from e

    def modules(self) -> list[str] | str:
        t = self.target_modules.strip()
        return t if t == "all-linear" else [m.strip() for m in t.split(",") if m.strip()]

    def layer_range(self) -> list[int] | None:
        """The layer indices of `layers` (None = all)."""
        text = str(self.layers).strip()
        if text == "all":
            return None
        lo, sep, hi = text.partition("-")
        if not (lo.isdigit() and (not sep or hi.isdigit())) or (sep and int(hi) < int(lo)):
            raise LaffiError(f"TrainConfig.layers must be 'all' or a range such as '15-29', not {self.layers!r}.")
        return list(range(int(lo), int(hi or lo) + 1))


def check_destination(cfg: TrainConfig) -> None:
    """An existing adapter is never replaced unless cfg.overwrite says so: refuse before any work."""
    final = Path(cfg.adapters_dir) / cfg.name
    if final.exists() and not cfg.overwrite:
        raise LaffiError(f"An adapter named {cfg.name!r} already exists in {cfg.adapters_dir}/; choose another name, "
                         "or ask to replace it (--overwrite; in the app, tick 'Replace').")


def base_config(cfg: TrainConfig, settings: Settings | None = None, **kwargs) -> ModelConfig:
    """The base model a run trains on: cfg.base without adapters, from the model cache the entry point's settings
    name (defaults where none were passed)."""
    return ModelConfig(base=cfg.base, adapters_dir=None, cache_dir=str((settings or Settings()).cache), **kwargs)


def check_target_modules(model, cfg: TrainConfig) -> None:
    layers, count = cfg.layer_range(), getattr(model.config, "num_hidden_layers", None)
    if layers and count is not None and layers[-1] >= count:
        raise LaffiError(f"TrainConfig.layers: {cfg.layers!r} names layer {layers[-1]}, but this model's decoder "
                         f"layers are 0-{count - 1}.")
    wanted = cfg.modules()
    if wanted == "all-linear":
        return
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in wanted if m not in present]
    if missing:
        raise LaffiError(f"TrainConfig.target_modules: the model has no module named {missing[0]!r}; it has e.g. "
                         f"{', '.join(sorted(m for m in present if m.endswith('proj'))[:8])}.")


def lora_targets(model, cfg: TrainConfig) -> list[str] | str:
    """What LoraConfig.target_modules gets. PEFT refuses `layers_to_transform` with the string "all-linear", so a
    layer range names the linear layers of the decoder blocks (q_proj, ..., down_proj: what "all-linear" picks,
    which never includes the output layer)."""
    wanted = cfg.modules()
    if wanted != "all-linear" or cfg.layer_range() is None:
        return wanted
    import torch

    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) and ".layers." in f".{name}"}
    return sorted(names)


def training_dataset(rows: list[dict], cfg: TrainConfig, tokenizer, dtype, per_sequence: int | None = None):
    """(dataset, collator or None, rows kept, rows left out as too long) for SFTTrainer, tokenized once here.
    pack: one sequence per optimiser step holding batch_size examples as prefix trees (laffi.training.packing); else one
    example per row, prompt tokens masked out of the labels, padded per batch by TRL's own collator. per_sequence:
    examples packed per sequence (default batch_size; several processes each take a share)."""
    from datasets import Dataset

    from laffi.training.packing import PackedCollator, pack_rows, tokenize_rows

    tokenized = tokenize_rows(rows, tokenizer)
    kept = [r for r in tokenized if r["n_tokens"] <= cfg.max_length]
    if not kept:
        raise LaffiError(f"No training example fits in max_length={cfg.max_length} tokens; raise --max-length.")
    if cfg.pack:
        seqs = pack_rows(kept, per_sequence or cfg.batch_size, cfg.seed, by_task=cfg.task_weight is not None)
        return (Dataset.from_list(seqs), PackedCollator(pad_token_id=tokenizer.pad_token_id, mask_dtype=dtype),
                kept, len(tokenized) - len(kept))
    items = [{"input_ids": r["input_ids"], "labels": [-100] * r["n_prompt"] + r["input_ids"][r["n_prompt"]:]}
             for r in kept]
    return Dataset.from_list(items), None, kept, len(tokenized) - len(kept)


def train_adapter(records: list[dict], cfg: TrainConfig, resume: bool = True, extra_callbacks=(),
                  run_key: str | None = None, extra_files: dict | None = None,
                  settings: Settings | None = None) -> TrainResult:
    """Train one LoRA adapter on `records` and write adapters/<name>/ with its config, manifest and loss log.
    extra_files ({file name: JSON}, e.g. answer_path.json) are written into the folder before it is published.
    settings: the entry point's (the model cache; world_size, this rank's share of a launch).
    Returns a TrainResult: "finished" with the adapter folder, or "stopped" on request with cfg.work_dir
    (resumable from its checkpoint)."""
    check_destination(cfg)
    import torch
    from peft import LoraConfig
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    from laffi.inference.models import load_base
    from laffi.training.distributed import batch_plan
    from laffi.training.logs import LossLogger

    # The frozen base weights in the precision the machine runs fastest (laffi.inference.precision: bfloat16 on a
    # CPU that computes it natively, measured; LAFFI_DTYPE overrides); PEFT keeps the LoRA weights, their gradients
    # and the optimiser state in float32 whatever the base is.
    settings = settings or Settings()
    from laffi.inference.models import resolve_precision

    base = base_config(cfg, settings, dtype=settings.dtype)
    resolved = resolve_precision(base)
    model, tokenizer = load_base(base, resolved)
    precision = resolved[1]
    check_target_modules(model, cfg)
    tokenizer.padding_side = "right"  # training pads on the right; generation (left) uses its own tokenizer copy
    # under accelerate launch each rank sees WORLD_SIZE; batch_size stays the examples per optimiser step
    plan = batch_plan(cfg.batch_size, settings.world_size, cfg.micro_batch_size)
    train_rows, held = heldout_split(training_rows(records, cfg.method, tokenizer), cfg.heldout, cfg.seed)
    dataset, collator, rows, too_long = training_dataset(train_rows, cfg, tokenizer, model.dtype, plan.per_device)
    heldout = training_dataset(held, cfg, tokenizer, model.dtype, plan.per_device)[0] if held else None
    # checkpoints (and held-out scores) every save_steps; with a held-out slice at least twice in a short run
    per_epoch = len(dataset) if cfg.pack else -(-len(dataset) // plan.per_device)
    total = cfg.max_steps if cfg.max_steps > 0 else max(1, int(per_epoch * cfg.epochs / plan.accumulation))
    every = min(cfg.save_steps, max(1, total // 2)) if heldout is not None else cfg.save_steps
    work = Path(cfg.work_dir)
    ckpt_dir = work / "checkpoints"
    on_cpu = str(model.device) == "cpu"
    last = get_last_checkpoint(str(ckpt_dir)) if resume and ckpt_dir.is_dir() else None
    args = SFTConfig(
        output_dir=str(ckpt_dir), per_device_train_batch_size=1 if cfg.pack else plan.per_device,
        gradient_accumulation_steps=plan.accumulation, ddp_find_unused_parameters=False,
        learning_rate=cfg.lr, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps, lr_scheduler_type="linear",
        warmup_steps=0.03, logging_steps=1, save_steps=every, save_total_limit=2, seed=cfg.seed,
        eval_strategy="steps" if heldout is not None else "no", eval_steps=every if heldout is not None else None,
        per_device_eval_batch_size=1 if cfg.pack else plan.per_device, prediction_loss_only=True,
        load_best_model_at_end=heldout is not None, metric_for_best_model="eval_loss", greater_is_better=False,
        data_seed=cfg.seed, report_to="none", max_length=cfg.max_length, dataloader_num_workers=0,
        # bfloat16 base weights on a CPU: autocast (bf16=True) runs the small LoRA products in bfloat16 too and keeps
        # the loss's log-softmax in float32; the LoRA weights and the optimiser stay float32 either way
        gradient_checkpointing=False, use_cpu=on_cpu, bf16=on_cpu and model.dtype == torch.bfloat16, fp16=False,
        # packed sequences carry a 4D mask, so count their tokens (no padding: one sequence per step) directly
        include_num_input_tokens_seen="all" if cfg.pack else "non_padding",
        dataset_kwargs={"skip_prepare_dataset": True}, remove_unused_columns=False,
        # Padding is wasted compute: batches of similar lengths (or, for the bench's baseline, all padded to max).
        train_sampling_strategy="group_by_length" if cfg.group_by_length and not cfg.pad_to_max_length
        and not cfg.pack else "random",
        pad_to_multiple_of=cfg.max_length if cfg.pad_to_max_length else None,
    )
    lora = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=lora_targets(model, cfg), layers_to_transform=cfg.layer_range(),
                      task_type="CAUSAL_LM")
    logger = LossLogger(work / LOSS_LOG)
    callbacks, early = [logger, *extra_callbacks], None
    if heldout is not None and cfg.early_stopping:
        from transformers import EarlyStoppingCallback

        early = EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping)
        callbacks.append(early)
    from laffi.training.cpu_steps import faster_steps
    from laffi.training.task_loss import TaskWeightedTrainer

    weighted = {} if cfg.task_weight is None else {"task_weight": cfg.task_weight}
    trainer = (TaskWeightedTrainer if weighted else SFTTrainer)(
        model=model, args=args, train_dataset=dataset, eval_dataset=heldout, processing_class=tokenizer,
        peft_config=lora, data_collator=collator, callbacks=callbacks, **weighted)
    main = trainer.accelerator.is_main_process  # rank 0 alone writes logs and the adapter (Trainer: checkpoints)
    if main and not last and (work / LOSS_LOG).exists():
        (work / LOSS_LOG).unlink()  # a fresh run starts a fresh log
    started = time.time()
    with faster_steps(trainer.model, autocast=args.bf16):  # the same maths, fewer copies (cpu_steps)
        result = trainer.train(resume_from_checkpoint=last)
    # the held-out loss stopped improving (not a Stop): a finished run, kept at its best checkpoint
    stopped_early = early is not None and early.early_stopping_patience_counter >= cfg.early_stopping
    if trainer.state.global_step < trainer.state.max_steps and not stopped_early:
        return TrainResult("stopped", work)  # the stop callback saved a checkpoint that `resume` continues from
    if not main:
        return TrainResult("finished", Path(cfg.adapters_dir) / cfg.name)  # where rank 0 writes it
    manifest = {
        "method": cfg.method, "examples": len(rows), "left_out_too_long": too_long,
        "articles": dict(Counter(r["title"] for r in rows)),
        "feedback_sources": dict(Counter(r["feedback_source"] for r in rows)),
        "draft_kinds": dict(Counter(r["draft_kind"] for r in rows)),
        "questions": len({r["qid"] for r in rows}),
        "prompt_plus_completion_tokens": sum(r["n_tokens"] for r in rows),
        "tokens_computed": trainer.state.num_input_tokens_seen,
        "qids": [r["qid"] for r in rows],
        "feedback_rows": sorted({r["feedback_row_id"] for r in rows + held if r.get("feedback_row_id") is not None}),
        "heldout_examples": len(held), "heldout_qids": [r["qid"] for r in held],
    }
    best = trainer.state.best_model_checkpoint
    stats = {"global_step": trainer.state.global_step, "train_loss": result.training_loss,
             "seconds": round(time.time() - started, 1), "resumed_from": last, "processes": plan.processes,
             "batch": plan.describe(), "stopped_early": bool(stopped_early),
             "best_step": int(best.rsplit("-", 1)[-1]) if best else None,
             "best_heldout_loss": trainer.state.best_metric if best else None, "precision": precision.as_dict()}
    return TrainResult("finished", finish_adapter(trainer.model, cfg, manifest, stats, work, run_key, extra_files))


def finish_adapter(model, cfg: TrainConfig, manifest: dict, stats: dict, work: Path,
                   run_key: str | None = None, extra: dict | None = None) -> Path:
    """Assemble adapters/<name>/ atomically: weights, config, manifest, loss log and model card. An adapter of the
    same name that appeared meanwhile is replaced only with cfg.overwrite; otherwise the new one is kept in
    work_dir/adapter and the error says so (nothing trained is lost)."""
    from laffi.training.logs import model_card

    final = Path(cfg.adapters_dir) / cfg.name
    tmp = final.with_name(f".{cfg.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    import peft
    import torch
    import transformers
    import trl

    config = {"train": asdict(cfg), "stats": stats, "run_key": run_key, "versions": {
        "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
        "trl": trl.__version__, "python": platform.python_version()}}
    staged = AdapterFolder(tmp)
    peft_config = staged.read(PEFT_CONFIG) or {}
    if Path(str(peft_config.get("base_model_name_or_path", ""))).is_absolute():  # PEFT records this machine's path
        staged.write(PEFT_CONFIG, {**peft_config, "base_model_name_or_path": cfg.base})
    staged.write(CONFIG, config)
    staged.write(MANIFEST, manifest)
    if (work / LOSS_LOG).exists():
        shutil.copy(work / LOSS_LOG, tmp / LOSS_LOG)
    for name, value in (extra or {}).items():  # e.g. answer_path.json: in the folder before it appears
        staged.write(name, value)
    (tmp / CARD).write_text(model_card(asdict(cfg), manifest, stats, metrics=None))
    try:
        publish(tmp, final, cfg.overwrite)
    except FileExistsError:
        kept = work / "adapter"
        shutil.rmtree(kept, ignore_errors=True)
        shutil.move(str(tmp), str(kept))
        raise LaffiError(f"An adapter named {cfg.name!r} appeared in {cfg.adapters_dir}/ while this one trained; the "
                         f"new adapter is kept in {kept} (copy it under another name).") from None
    return final
