"""The performance bench: every speed claim of the README measured in one run, as ratios on the same machine.

Usage:
    python -m laffi bench                         # embedded model + shipped adapters; JSON + table on stdout
    python -m laffi bench --out bench/last_run.json --quick   # fewer repeats and questions (a smoke run)

Each ratio compares two ways of doing the same work in this process, one right after the other, as the median
of several repeats after a warm-up, so the machine's speed cancels out. Nothing here asserts a timing: the
result carries each target and whether it was met; the README's Performance table is the last run's output.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from laffi.errors import LaffiError

PASSAGE = (  # our own text, ~200 tokens with the prompt template: the "side by side" probe size
    "The Halvard Observatory stands on a basalt ridge above the fishing town of Merrow. It was founded in 1911 by "
    "the astronomer Petra Lindqvist, who paid for the first telescope by selling her family's orchard. The "
    "observatory's great refractor, a 60-centimetre lens ground in Jena, was installed in 1923 and is still used "
    "on clear nights for public viewings. In 1958 a fire destroyed the library wing, but the instruments were "
    "saved by students who carried them down the ridge in the rain. Today the observatory belongs to the "
    "University of Merrow and runs a summer school for secondary-school pupils every July."
)
QUESTION = "Who founded the Halvard Observatory?"


@dataclass
class BenchConfig:
    """What the bench measures on, and how hard it tries."""

    base: str = field(default="embedded", metadata={"help": "Base model (as ModelConfig.base)."})
    adapters_dir: str = field(default="adapters", metadata={"help": "Adapters to load beside the base."})
    squad: str | None = field(default=None, metadata={"help": "SQuAD v2 file for the eval and quality parts "
                                                                   "(default: ../shared dev set when present)."})
    repeats: int = field(default=3, metadata={"help": "Timed repeats per measurement (median), after a warm-up."})
    new_tokens: int = field(default=32, metadata={"help": "Tokens generated per answer in the side-by-side test."})
    eval_questions: int = field(default=32, metadata={"help": "Questions timed at each eval batch size."})
    quality_questions: int = field(default=100, metadata={"help": "Fixed evaluation-article sample for the "
                                                                      "quality guard (0 skips it)."})
    train_steps: int = field(default=3, metadata={"help": "Optimiser steps timed per training mode."})
    app: bool = field(default=True, metadata={"help": "Also time `python app.py` from launch to first answer."})

    def __post_init__(self):
        for name in ("repeats", "new_tokens", "eval_questions", "train_steps"):
            if getattr(self, name) < 1:
                raise LaffiError(f"BenchConfig.{name} must be at least 1, not {getattr(self, name)}.")
        if self.quality_questions < 0:
            raise LaffiError(f"BenchConfig.quality_questions must be 0 or more, not {self.quality_questions}.")


def timed(fn, repeats: int) -> float:
    """Median wall time of fn() over `repeats` calls, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def result(name: str, value, target: str, met, unit: str = "x", **details) -> dict:
    return {"name": name, "value": None if value is None else round(value, 3), "unit": unit, "target": target,
            "met": met, **details}


def side_by_side(lm, cfg: BenchConfig) -> dict:
    """3 variants in one mixed batch vs the same 3 one after another: same prompt, same tokens generated."""
    from laffi.generation import generate_rows
    from laffi.prompts import qa_prompt

    variants = lm.variants[:3]
    prompt = qa_prompt(lm.tokenizer, PASSAGE, QUESTION)
    n = cfg.new_tokens

    def one_batch():
        generate_rows(lm, [prompt] * len(variants), variants, n, stop_at_newline=False, min_new_tokens=n)

    def one_after_another():
        for v in variants:
            generate_rows(lm, [prompt], [v], n, stop_at_newline=False, min_new_tokens=n)

    batch = timed(one_batch, cfg.repeats)
    sequential = timed(one_after_another, cfg.repeats)
    ratio = sequential / batch
    return result("side_by_side", ratio, ">= 2.5", ratio >= 2.5, variants=variants, batch_s=round(batch, 3),
                  sequential_s=round(sequential, 3), prompt_tokens=len(lm.tokenizer(prompt)["input_ids"]),
                  new_tokens=n)


def startup(cfg: BenchConfig) -> dict:
    """Loading the embedded model from its safetensors cache vs dequantising the GGUF again."""
    from laffi.models import ModelConfig, embedded_gguf_path, load_base, resolve_source

    mcfg = ModelConfig(base=cfg.base, adapters_dir=None)
    gguf = embedded_gguf_path() if cfg.base == "embedded" else Path(cfg.base) if cfg.base.endswith(".gguf") else None
    if gguf is None:
        return result("startup", None, ">= 10", None, reason="the base is not a GGUF file: nothing to dequantise")
    resolve_source(mcfg)  # make sure the cache exists before timing it

    def from_gguf():
        from transformers import AutoModelForCausalLM

        AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)

    gguf_s = timed(from_gguf, 1)  # ~20 s each on a laptop: one timed repeat after the warm-up
    cached_s = timed(lambda: load_base(mcfg), cfg.repeats)
    ratio = gguf_s / cached_s
    return result("startup", ratio, ">= 10", ratio >= 10, gguf_s=round(gguf_s, 2), cached_s=round(cached_s, 2))


def app_first_answer(cfg: BenchConfig) -> dict:
    """Seconds from `python app.py` to the first answer received by a gradio_client (model cache warm)."""
    import socket

    from gradio_client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as data:
        env = dict(os.environ, LAFFI_BASE=cfg.base, LAFFI_ADAPTERS_DIR=cfg.adapters_dir, LAFFI_DATA_DIR=data,
                   GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False")
        app = Path(__file__).resolve().parent.parent / "app.py"
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(app)], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            client = None
            while client is None:
                if proc.poll() is not None:
                    return result("app_first_answer", None, "(reported)", None, unit="s", reason="app exited")
                if time.perf_counter() - start > 300:
                    return result("app_first_answer", None, "(reported)", None, unit="s", reason="no answer in 300 s")
                try:
                    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                except Exception:
                    time.sleep(0.2)
            ready = time.perf_counter() - start
            client.predict(PASSAGE, QUESTION, api_name="/ask")
            total = time.perf_counter() - start
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return result("app_first_answer", total, "(reported)", None, unit="s", server_ready_s=round(ready, 2))


_RSS_SCRIPT = """
import json, re, resource, sys
from laffi.models import ModelConfig, load_model
from laffi.generation import generate_rows
lm = load_model(ModelConfig(base=sys.argv[1], adapters_dir=sys.argv[2] or None))
generate_rows(lm, ["Passage: a b c\\nQuestion: what?\\nAnswer:"] * len(lm.variants), lm.variants, 4)
now = int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
print(json.dumps({"peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "rss_kb": now,
                  "variants": lm.variants}))
"""


def memory(cfg: BenchConfig) -> dict:
    """Peak RSS of a fresh process with base + every adapter (after one mixed batch) vs base alone (the peak
    comes from loading; the resident size after the batch is reported beside it)."""
    def peak(adapters_dir: str) -> dict:
        out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, cfg.base, adapters_dir], capture_output=True,
                             text=True, check=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
        return json.loads(out.stdout.strip().splitlines()[-1])

    alone, every = peak(""), peak(cfg.adapters_dir)
    ratio = every["peak_rss_kb"] / alone["peak_rss_kb"]
    return result("memory", ratio, "<= 1.15", ratio <= 1.15, base_peak_mb=round(alone["peak_rss_kb"] / 1024),
                  all_adapters_peak_mb=round(every["peak_rss_kb"] / 1024), base_now_mb=round(alone["rss_kb"] / 1024),
                  all_adapters_now_mb=round(every["rss_kb"] / 1024), variants=every["variants"])


def attention(lm, cfg: BenchConfig) -> dict:
    """A ~400-token prompt, attention of all layers computed and drawn as the heatmap figure."""
    from laffi.attention import attention_view, heatmap_figure

    context = " ".join([PASSAGE] * 4)
    while len(lm.tokenizer(context)["input_ids"]) > 360:
        context = context.rsplit(" ", 8)[0]
    variant = lm.variants[-1]
    tokens = {}

    def run():
        view = attention_view(lm, context, QUESTION, "Petra Lindqvist", variant)
        tokens["n"] = len(view.tokens)
        heatmap_figure(view, layer=view.heat.shape[0] - 1, head="mean")

    seconds = timed(run, cfg.repeats)
    return result("attention", seconds, "<= 3", seconds <= 3, unit="s", tokens=tokens["n"], variant=variant)


def run_bench(cfg: BenchConfig, log=print) -> dict:
    """Every measurement in turn; returns the JSON-able report."""
    import torch

    from laffi.bench_work import evaluation_speed, quality_guard, training_speed
    from laffi.kernels import routed
    from laffi.models import ModelConfig, load_model, resolve_device_dtype

    lm = load_model(ModelConfig(base=cfg.base, adapters_dir=cfg.adapters_dir))
    device, dtype = resolve_device_dtype(lm.config)
    onednn = any(map(routed, lm.model.modules()))
    report = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(device),
                          "dtype": str(dtype).replace("torch.", ""), "onednn_linears": onednn,
                          "python": sys.version.split()[0], "torch": torch.__version__},
              "config": cfg.__dict__, "results": []}
    steps = [("side_by_side", lambda: side_by_side(lm, cfg)), ("attention", lambda: attention(lm, cfg)),
             ("evaluation", lambda: evaluation_speed(lm, cfg)), ("quality", lambda: quality_guard(lm, cfg)),
             ("startup", lambda: startup(cfg)), ("memory", lambda: memory(cfg)),
             ("training", lambda: training_speed(cfg))]
    if cfg.app:
        steps.append(("app_first_answer", lambda: app_first_answer(cfg)))
    for name, step in steps:
        log(f"bench: {name} ...")
        started = time.perf_counter()
        report["results"].append(step())
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


def cmd_bench(args) -> int:
    cfg = BenchConfig(base=args.base, adapters_dir=args.adapters_dir, squad=args.squad, app=not args.no_app,
                      **({"repeats": 1, "eval_questions": 8, "quality_questions": 10, "train_steps": 2}
                         if args.quick else {}))
    report = run_bench(cfg, log=lambda m: print(m, file=sys.stderr))
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    print(table(report))
    return 0


def add_command(sub, positive_int) -> None:
    p = sub.add_parser("bench", help="Measure the speed-ups (ratios, one run) and the quality guard.")
    p.add_argument("--base", default="embedded", help="Base model (default: the embedded SmolLM2-135M).")
    p.add_argument("--adapters-dir", default="adapters", help="Adapters loaded beside the base.")
    p.add_argument("--squad", help="SQuAD v2 file for eval/quality/training data (default: ../shared dev set).")
    p.add_argument("--quick", action="store_true", help="One repeat, few questions: a smoke run, not for the README.")
    p.add_argument("--no-app", action="store_true", help="Skip timing `python app.py` to its first answer.")
    p.add_argument("--out", help="Also write the JSON report to this file.")
    p.set_defaults(func=cmd_bench)
