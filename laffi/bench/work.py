"""The bench's heavier parts: evaluation speed, the quality guard and training throughput (see laffi.bench).

Usage:
    from laffi.bench.work import evaluation_speed
    evaluation_speed(lm, BenchConfig(eval_questions=32))
"""

from __future__ import annotations

import tempfile
import time

from laffi.adapter_folder import AdapterFolder
from laffi.bench.common import BenchConfig, result, squad_sample, timed


def evaluation_speed(lm, cfg: BenchConfig) -> dict:
    """Questions/s of `eval` (one variant) at the default batch size vs batch size 1: on questions in file order
    (whole passages, as `laffi eval` reads a split: the target) and, as a detail, on a seeded random sample
    (`--limit`: few questions share a passage, so only the decoding gains)."""
    from laffi.evaluation.evaluate import evaluate_variants
    from laffi.inference.generation import GenerationConfig, batch_size_for

    in_order, source = squad_sample(cfg, "eval", cfg.eval_questions, seed=None)
    sampled, _ = squad_sample(cfg, "eval", cfg.eval_questions, seed=1)
    variant = lm.variants[-1]
    default = batch_size_for(lm, GenerationConfig())
    evaluate_variants(lm, in_order[:4], [variant], GenerationConfig(batch_size=1))  # warm-up (tokenizer caches)

    def at(examples, batch_size: int) -> float:
        return timed(lambda: evaluate_variants(lm, examples, [variant], GenerationConfig(batch_size=batch_size)),
                     max(1, cfg.repeats - 1))

    batched, single = at(in_order, default), at(in_order, 1)
    sampled_batched, sampled_single = at(sampled, default), at(sampled, 1)
    ratio = single / batched
    return result("evaluation", ratio, ">= 3", ratio >= 3, variant=variant, questions=len(in_order),
                  default_batch=default, q_per_s_batched=round(len(in_order) / batched, 2),
                  q_per_s_batch1=round(len(in_order) / single, 2), data=source,
                  sampled_ratio=round(sampled_single / sampled_batched, 2))


def quality_guard(lm, cfg: BenchConfig) -> dict:
    """F1 of every variant on the first questions of the evaluation articles (whole passages, so the shared
    prefill is exercised): the defaults - oneDNN float32 kernels on a CPU, shared prefixes, stacked LoRA, default
    batch; half precision on a GPU - vs the plainest float32 computation: torch's kernels, batch 1, nothing shared."""
    from laffi.evaluation.evaluate import evaluate_variants
    from laffi.inference.generation import GenerationConfig, batch_size_for
    from laffi.inference.models import ModelConfig, load_model

    if cfg.quality_questions == 0:
        return result("quality", None, "F1 drop <= 0.5", None, unit="F1", reason="skipped (--quality-questions 0)")
    examples, source = squad_sample(cfg, "eval", cfg.quality_questions, seed=None)
    reference_lm = load_model(ModelConfig(base=lm.config.base, adapters_dir=lm.config.adapters_dir, dtype="float32",
                                          device=lm.config.device, cpu_kernels=False))
    fast = evaluate_variants(lm, examples, lm.variants)["variants"]
    plain = GenerationConfig(batch_size=1, share_prefixes=False)
    reference = evaluate_variants(reference_lm, examples, lm.variants, plain)["variants"]
    f1 = {v: {"default": round(fast[v]["f1"], 2), "plain": round(reference[v]["f1"], 2)} for v in lm.variants}
    drop = max(reference[v]["f1"] - fast[v]["f1"] for v in lm.variants)
    verdict = "passes the guard" if drop <= 0.5 else "fails the guard: F1 drops too much"
    dtype = str(next(lm.model.parameters()).dtype).replace("torch.", "")
    return result("quality", drop, "F1 drop <= 0.5", drop <= 0.5, unit="F1", questions=len(examples), data=source,
                  compared=f"defaults ({dtype}, kernels, shared prefixes, batch "
                           f"{batch_size_for(lm, GenerationConfig())}) vs plain float32 batch 1 ({verdict})", f1=f1)


def timed_training(records, cfg: BenchConfig, settings=None, **train) -> dict:
    """One epoch of SFT over `records` with these TrainConfig settings: seconds inside optimiser steps, and the
    examples' own tokens (prompt + completion, no padding, passages counted once per example) per second - the
    same work measure whichever way the batches are laid out."""
    from transformers import TrainerCallback

    from laffi.training.trainer import TrainConfig, train_adapter

    class StepClock(TrainerCallback):
        seconds = 0.0
        started = 0.0
        steps = 0

        def on_step_begin(self, args, state, control, **kw):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.seconds += time.perf_counter() - self.started
            self.steps = state.global_step

    clock = StepClock()
    with tempfile.TemporaryDirectory() as tmp:
        tcfg = TrainConfig(method="sft", name="bench", base=cfg.base, adapters_dir=f"{tmp}/adapters",
                           work_dir=f"{tmp}/work", epochs=1, save_steps=10_000, heldout=0, **train)
        folder = train_adapter(records, tcfg, resume=False, extra_callbacks=[clock], settings=settings).path
        manifest = AdapterFolder(folder).manifest()
    tokens = manifest["prompt_plus_completion_tokens"]
    return {"seconds": clock.seconds, "steps": clock.steps, "example_tokens": tokens,
            "computed_tokens": manifest["tokens_computed"], "tokens_per_s": tokens / clock.seconds}


def training_speed(cfg: BenchConfig, settings=None) -> dict:
    """Example tokens/s of `train` as shipped (packed: each passage computed once per step, laffi.training.packing) vs
    before (TRL's padded batches of similar lengths) and vs padding every batch to max_length: the same
    questions in file order (whole passages, as training reads the split), the same LoRA, batch of 16."""
    n = 16 * cfg.train_steps
    examples, source = squad_sample(cfg, "train", n, seed=None)
    records = [ex.to_dict() for ex in examples]
    common = {"batch_size": 16, "target_modules": "all-linear", "dropout": 0.0}
    packed = timed_training(records, cfg, settings, pack=True, **common)
    padded = timed_training(records, cfg, settings, pack=False, group_by_length=True, **common)
    to_max = timed_training(records, cfg, settings, pack=False, group_by_length=False, pad_to_max_length=True, **common)
    ratio = packed["tokens_per_s"] / padded["tokens_per_s"]
    return result("training", ratio, ">= 1.5", ratio >= 1.5, examples=len(records), data=source,
                  tokens_per_s=round(packed["tokens_per_s"], 1), before_tokens_per_s=round(padded["tokens_per_s"], 1),
                  pad_to_max_tokens_per_s=round(to_max["tokens_per_s"], 1), example_tokens=packed["example_tokens"],
                  computed_tokens_packed=packed["computed_tokens"], computed_tokens_before=padded["computed_tokens"])
