"""The performance bench: every speed claim of the README measured in one run, as ratios on the same machine.

Usage:
    python -m laffi bench                         # embedded model + shipped adapters; JSON + table on stdout
    python -m laffi bench --out bench/last_run.json --quick   # fewer repeats and questions (a smoke run)
    report = run_bench(BenchConfig(...), settings); print(table(report))

    common       BenchConfig, the timer and the result rows, the bench's SQuAD sample
    measures     side-by-side generation, whole passages, start-up, memory, attention
    work         evaluation speed, the quality guard (bfloat16 vs float32), training speed
    app_timing   the app as a user meets it: server start to first answer, an Ask's latency

Each ratio compares two ways of doing the same work in this process, one right after the other, as the median
of several repeats after a warm-up, so the machine's speed cancels out. Nothing here asserts a timing: the
result carries each target and whether it was met; the README's Performance table is the last run's output.
"""

from __future__ import annotations

import os
import resource
import sys
import time

from laffi.bench.common import BenchConfig, result, timed
from laffi.errors import LaffiError

__all__ = ["BenchConfig", "run_bench", "table", "result", "timed"]


THROUGH_THE_APP = ("ask_latency", "room_8", "server_ready")  # steps whose model work the app's scheduler runs


def run_bench(cfg: BenchConfig, settings=None, log=print) -> dict:
    """Every measurement in turn; returns the JSON-able report. settings: the entry point's (laffi.settings: the
    model cache, the app's environment for the Ask timing); defaults where none are passed."""
    import torch

    from laffi.bench.app_timing import app_start, ask_latency, room
    from laffi.bench.measures import attention, memory, side_by_side, side_by_side_passages, startup
    from laffi.bench.work import evaluation_speed, quality_guard, training_speed
    from laffi.inference.kernels import routed
    from laffi.inference.model_thread import on_model_thread
    from laffi.inference.models import ModelConfig, load_model, resolve_precision
    from laffi.settings import Settings

    settings = settings or Settings()
    from laffi.inference.precision import cpu_model, matmul_rate, native_bf16_flags

    # The bench measures the precision this machine would choose, whatever a guard written earlier says, and
    # float32 beside it: the quality guard is how a choice is judged, so it can't depend on an earlier verdict
    # (no adapters folder: no verdict is read).
    def prepare():
        device, chosen = resolve_precision(ModelConfig(base=cfg.base, adapters_dir=None, dtype=settings.dtype))
        base = dict(base=cfg.base, adapters_dir=cfg.adapters_dir, cache_dir=str(settings.cache),
                    prefix_cache_mb=settings.prefix_cache_mb)  # LAFFI_PREFIX_CACHE_MB=0: the same bench without it
        lm = load_model(ModelConfig(**base, dtype=chosen.dtype))
        reference = lm if chosen.dtype == "float32" else load_model(ModelConfig(**base, dtype="float32"))
        rates = {d: round(matmul_rate(d, shape=(1024, 576, 1536)), 1)
                 for d in dict.fromkeys(["float32", chosen.dtype])}
        return device.type, chosen, lm, reference, rates

    # Every model call on the one model thread, as in the app (laffi.inference.model_thread): the Ask and room
    # steps answer through the app's scheduler, which calls it, so this thread runs no torch op of its own.
    device, chosen, lm, reference, rates = on_model_thread(prepare)
    onednn = any(map(routed, lm.model.modules()))
    params = sum(p.numel() for name, p in lm.model.named_parameters() if "lora_" not in name)  # the base's own
    report = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": device,
                          "cpu": cpu_model(), "native_bf16": native_bf16_flags(), "dtype": chosen.dtype,
                          "precision": chosen.as_dict(), "matmul_gflops": rates, "parameters": params,
                          "onednn_linears": onednn, "prefix_cache_mb": settings.prefix_cache_mb,
                          "python": sys.version.split()[0], "torch": torch.__version__},
              "config": cfg.__dict__, "results": []}
    steps = [("side_by_side", lambda: side_by_side(lm, cfg)),
             ("side_by_side_passages", lambda: side_by_side_passages(lm, cfg)),
             ("ask_latency, ask_total, ask_latency_new_passage, ask_total_new_passage",
              lambda: ask_latency(lm, cfg, settings, reference)),
             ("room_8, room_20, room_first_token", lambda: room(lm, cfg, settings)),
             ("attention", lambda: attention(lm, cfg)),
             ("evaluation", lambda: evaluation_speed(lm, cfg)),
             ("quality, evaluation_precision", lambda: quality_guard(lm, reference, cfg)),
             ("startup", lambda: startup(lm.config, cfg.repeats)), ("memory", lambda: memory(cfg, lm.config.cache_dir)),
             ("training, training_whole_split", lambda: training_speed(cfg, settings, chosen.dtype, rates, params,
                                                                                lm.tokenizer))]
    if cfg.app:  # last: the app's process then has the machine to itself
        steps.append(("server_ready, app_first_answer", lambda: app_start(cfg)))
    if cfg.only:
        wanted = {w.strip() for w in cfg.only.split(",") if w.strip()}
        known = {name.split(",")[0] for name, _ in steps}
        if wanted - known:
            raise LaffiError(f"BenchConfig.only: no step named {sorted(wanted - known)[0]!r}; the steps are "
                             f"{', '.join(sorted(known))}.")
        steps = [(name, step) for name, step in steps if name.split(",")[0] in wanted]
        report["only"] = sorted(wanted)
    for name, step in steps:
        log(f"bench: {name} ...")
        started = time.perf_counter()
        done = step() if name.startswith(THROUGH_THE_APP) else on_model_thread(step)
        report["results"] += done if isinstance(done, list) else [done]  # some steps give two rows from one run
        log(f"bench: {name} done in {time.perf_counter() - started:.0f} s")
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return report


def table(report: dict) -> str:
    """The report as a Markdown table (the README's Performance section)."""
    rows = ["| measure | value | target | met | details |", "|---|---|---|---|---|"]
    for r in report["results"]:
        value = "n/a" if r["value"] is None else f"{r['value']:g} {r['unit']}".replace(" x", "×")
        met = {True: "yes", False: "**no**", None: "-"}[r["met"]]
        details = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("name", "value", "unit", "target", "met"))
        rows.append(f"| {r['name']} | {value} | {r['target']} | {met} | {details} |")
    return "\n".join(rows)
