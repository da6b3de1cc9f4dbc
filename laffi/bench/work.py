"""The bench's heavier parts: evaluation speed, the quality guard and training throughput (see laffi.bench).

Usage:
    from laffi.bench.work import evaluation_speed
    evaluation_speed(lm, BenchConfig(eval_questions=32))
"""

from __future__ import annotations

import tempfile
import time

from laffi.adapter_folder import AdapterFolder
from laffi.bench.common import BenchConfig, cold, result, squad_path, squad_sample, timed

GUARD_F1, GUARD_AUC = 1.0, 0.01  # bfloat16 serves only if every variant's F1 and AUC stay this close to float32's
GUARD_TARGET = f"|F1 - float32| <= {GUARD_F1:g}, |AUC - float32| <= {GUARD_AUC:g}"


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
                     max(1, cfg.repeats - 1), cold(lm))

    batched, single = at(in_order, default), at(in_order, 1)
    sampled_batched, sampled_single = at(sampled, default), at(sampled, 1)
    ratio = single / batched
    return result("evaluation", ratio, ">= 3", ratio >= 3, variant=variant, questions=len(in_order),
                  default_batch=default, q_per_s_batched=round(len(in_order) / batched, 2),
                  q_per_s_batch1=round(len(in_order) / single, 2), data=source,
                  sampled_ratio=round(sampled_single / sampled_batched, 2))


def quality_guard(lm, reference, cfg: BenchConfig) -> list[dict]:
    """Every variant on the first `quality_questions` validation questions (whole passages, so the shared prefill,
    the mixed-adapter batch and the rank/verify candidate scoring all run), in the precision the machine chose
    (`lm`) and in float32 with the same defaults (`reference`): two rows from the same two evaluations.
    quality: each variant's F1 within GUARD_F1 and answerability AUC within GUARD_AUC of float32's, or it fails;
    the verdicts are written beside the variants (precision_guard.json) when cfg.write_guard, and a failed one
    makes the app and the CLI keep float32 (laffi.inference.models.resolve_precision).
    evaluation_precision: float32's seconds over the chosen precision's, for the same evaluation."""
    from laffi.evaluation.evaluate import evaluate_variants

    dtype = lm.precision.dtype
    if cfg.quality_questions == 0:
        return [result("quality", None, GUARD_TARGET, None, unit="F1", reason="skipped (--quality-questions 0)"),
                result("evaluation_precision", None, ">= 3", None, reason="skipped (--quality-questions 0)")]
    examples, source = squad_sample(cfg, "validation", cfg.quality_questions, seed=None)
    evaluate_variants(lm, examples[:2], lm.variants)  # warm-up: first calls of every shape, both models alike
    evaluate_variants(reference, examples[:2], lm.variants)
    started = time.perf_counter()
    fast = evaluate_variants(lm, examples, lm.variants)["variants"]
    fast_s = time.perf_counter() - started
    started = time.perf_counter()
    plain = evaluate_variants(reference, examples, lm.variants)["variants"]
    plain_s = time.perf_counter() - started
    per = {v: guard_record(fast[v], plain[v], dtype, len(examples), source) for v in lm.variants}
    if cfg.write_guard and dtype != "float32":
        write_guard(lm, per)
    worst = max(abs(r["f1"][dtype] - r["f1"]["float32"]) for r in per.values())
    passed = all(r["passed"] for r in per.values())
    speed = plain_s / fast_s
    return [result("quality", worst, GUARD_TARGET, passed, unit="F1", questions=len(examples), data=source,
                   compared=f"{dtype} vs float32, same defaults", variants={v: r["summary"] for v, r in per.items()},
                   f1={v: r["f1"] for v, r in per.items()}, auc={v: r["auc"] for v, r in per.items()},
                   guard_written=bool(cfg.write_guard and dtype != "float32")),
            result("evaluation_precision", speed, ">= 3", speed >= 3, questions=len(examples), data=source,
                   variants=lm.variants, compared=f"{dtype} vs float32",
                   q_per_s={dtype: round(len(examples) / fast_s, 3), "float32": round(len(examples) / plain_s, 3)},
                   seconds={dtype: round(fast_s, 1), "float32": round(plain_s, 1)})]


def guard_record(fast: dict, plain: dict, dtype: str, n: int, source: str) -> dict:
    """One variant's guard verdict: F1 and AUC in both precisions, passed when both are within the limits."""
    f1 = {dtype: round(fast["f1"], 2), "float32": round(plain["f1"], 2)}
    auc = {dtype: fast.get("auc"), "float32": plain.get("auc")}
    d_f1 = f1[dtype] - f1["float32"]
    d_auc = None if None in auc.values() else auc[dtype] - auc["float32"]
    passed = abs(d_f1) <= GUARD_F1 and (d_auc is None or abs(d_auc) <= GUARD_AUC)
    summary = f"F1 {d_f1:+.2f}" + ("" if d_auc is None else f", AUC {d_auc:+.4f}") + f" vs float32 on {n} questions"
    return {"passed": passed, "dtype": dtype, "f1": f1, "auc": auc, "questions": n, "data": source,
            "limits": {"f1": GUARD_F1, "auc": GUARD_AUC}, "summary": summary}


def write_guard(lm, records: dict) -> None:
    """Each variant's verdict beside it: precision_guard.json in its adapter folder; the base model's as
    base-precision_guard.json in the first adapters folder (beside base-calibration.json)."""
    from laffi.adapter_folder import BASE_PRECISION_GUARD, PRECISION_GUARD
    from laffi.inference.models import BASE_VARIANT, adapter_folders

    for v, record in records.items():
        if v == BASE_VARIANT:
            folders = adapter_folders(lm.config.adapters_dir)
            if folders:
                AdapterFolder(folders[0]).write(BASE_PRECISION_GUARD, record)
        else:
            AdapterFolder(lm.adapters[v]).write(PRECISION_GUARD, record)


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


def training_speed(cfg: BenchConfig, settings, dtype: str, rates: dict, params: int, tokenizer) -> list[dict]:
    """`train` as shipped (packed, all linear layers, batch 4) on the first questions of the training articles in
    file order (whole passages, as training reads the split), in the machine's precision and in float32.
    training: the issue's measure, example tokens x 4 x params FLOPs / the float32 matmul rate / step seconds
    (how many times faster than a float32 run at the matmul limit); beside it the share of the limit in the
    chosen precision (computed tokens). training_whole_split: minutes for the whole training split at that speed."""
    from dataclasses import replace

    n = 4 * cfg.train_steps
    examples, source = squad_sample(cfg, "train", n, seed=None)
    records = [ex.to_dict() for ex in examples]
    recipe = {"batch_size": 4, "pack": True, "target_modules": "all-linear", "dropout": 0.0}
    runs = {d: timed_training(records, cfg, replace(settings, dtype=d), **recipe) for d in dict.fromkeys([dtype,
                                                                                                          "float32"])}
    chosen, fp32 = runs[dtype], runs["float32"]
    flops = 4 * params  # forward + backward through frozen weights, per token
    limit_ratio = chosen["example_tokens"] * flops / (rates["float32"] * 1e9) / chosen["seconds"]
    share = chosen["computed_tokens"] * flops / (rates[dtype] * 1e9) / chosen["seconds"]
    whole_tokens = whole_split_tokens(cfg, tokenizer)
    minutes = whole_tokens / chosen["tokens_per_s"] / 60 if whole_tokens else None
    common = dict(examples=len(records), data=source, dtype=dtype, recipe="packed, batch 4, LoRA r 16 all linear")
    return [result("training", limit_ratio, ">= 3", limit_ratio >= 3, **common,
                   tokens_per_s={dtype: round(chosen["tokens_per_s"], 1), "float32": round(fp32["tokens_per_s"], 1)},
                   vs_float32=round(chosen["tokens_per_s"] / fp32["tokens_per_s"], 2),
                   share_of_matmul_limit=round(share, 3), matmul_gflops=rates, seconds=round(chosen["seconds"], 3),
                   steps=chosen["steps"], step_s=round(
                       chosen["seconds"] / max(chosen["steps"], 1), 2), example_tokens=chosen["example_tokens"],
                   computed_tokens=chosen["computed_tokens"],
                   measured="example tokens x 4 x params / float32 matmul rate / step seconds"),
            result("training_whole_split", minutes, "<= 15", None if minutes is None else minutes <= 15, unit="min",
                   **common, example_tokens=whole_tokens, measured="projected: the whole training split's example "
                   "tokens at the timed steps' tokens/s (optimiser steps only)")]


def whole_split_tokens(cfg: BenchConfig, tokenizer) -> int | None:
    """Example tokens (prompt + completion, as timed_training counts them) of SFT on every question of the
    training articles; None without a SQuAD file."""
    from laffi.training.packing import tokenize_rows
    from laffi.training.rows import training_rows

    if squad_path(cfg) is None:
        return None
    examples, _ = squad_sample(cfg, "train", None, seed=None)
    rows = tokenize_rows(training_rows([ex.to_dict() for ex in examples], "sft", tokenizer), tokenizer)
    return sum(r["n_tokens"] for r in rows)
