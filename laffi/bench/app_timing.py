"""The bench's app timings: `python app.py` from launch to a served page and to its first answer, and the Ask
tab's latency (every variant's streamed answer, then its self-feedback) in this process.

Usage:
    server_ready, first_answer = app_start(BenchConfig())   # two result() records, from one launch
    ask_latency(lm, BenchConfig())                         # time to the first token and to the end of an Ask
    room(lm, BenchConfig(), settings)                      # 8 and 20 participants at once against one alone
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from laffi.bench.common import PASSAGE, QUESTION, ROOM_QUESTIONS, BenchConfig, cold, result

PAGE_TARGET_S = 5.0  # issue 15: the page is served within ~5 s of `python app.py`
FIRST_TOKEN_TARGET_S = 1.0  # the first visible token of an Ask with 3 variants on a ~200-token passage
ASK_TOTAL_TARGET_S = 5.0  # the whole Ask: three variants' answers and their self-feedback
ROOM_TARGETS = {8: 2.5, 20: 4.0}  # issue 28: the last of n participants at once, as a multiple of one alone
JOINED_FIRST_TOKEN_TARGET_S = 3.0  # each participant's first token after its rows joined a batch


def first_answer_text(outputs) -> bool:
    """Whether an /ask update shows some variant's text: the API gives 5 values per card (title, answer, feedback,
    caveat, revised), then status, JSON and the feedback radio; placeholders start with '…'."""
    answers = [outputs[5 * i + 1] for i in range((len(outputs) - 3) // 5)]
    return any(isinstance(a, str) and a.strip() and not a.startswith(("…", "(")) for a in answers)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a running process has used (Linux /proc); None elsewhere."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, ValueError, IndexError):
        return None


def app_start(cfg: BenchConfig) -> list[dict]:
    """One launch of `python app.py` (model cache warm): seconds to the page answering HTTP 200, and to the first
    /ask answered (sent as soon as the page is there, so it includes waiting for the model), with its first
    streamed token as a detail."""
    import socket
    import urllib.request

    from gradio_client import Client

    from laffi.settings import REPO

    def failed(reason: str) -> list[dict]:
        return [result("server_ready", None, f"<= {PAGE_TARGET_S:g}", None, unit="s", reason=reason),
                result("app_first_answer", None, "(reported)", None, unit="s", reason=reason)]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory() as data:
        env = dict(os.environ, LAFFI_BASE=cfg.base, LAFFI_ADAPTERS_DIR=cfg.adapters_dir, LAFFI_DATA_DIR=data,
                   GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False")
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(REPO / "app.py")], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            while True:
                if proc.poll() is not None:
                    return failed("app exited")
                if time.perf_counter() - start > 900:  # a starved machine, not a slow app: it gave up
                    return failed("no page in 900 s")
                try:
                    with urllib.request.urlopen(url, timeout=5) as page:
                        if page.status == 200:
                            break
                except OSError:
                    time.sleep(0.05)
            ready = time.perf_counter() - start
            ready_cpu = cpu_seconds(proc.pid)
            try:  # a page served does not promise a quick /config on a busy machine: the client may time out
                job = Client(url, verbose=False, httpx_kwargs={"timeout": 300}).submit(PASSAGE, QUESTION,
                                                                                     api_name="/ask")
                first_token = None
                while not job.done():
                    if first_token is None and any(first_answer_text(o) for o in job.outputs()):
                        first_token = time.perf_counter() - start
                    time.sleep(0.02)
                job.result(timeout=300)
            except Exception as e:  # the page's time is still worth reporting
                reason = f"the /ask request failed: {type(e).__name__}: {str(e)[:200]}"
                return [result("server_ready", ready, f"<= {PAGE_TARGET_S:g}", ready <= PAGE_TARGET_S, unit="s",
                               cpu_s=ready_cpu),
                        result("app_first_answer", None, "(reported)", None, unit="s", reason=reason)]
            total = time.perf_counter() - start
            if first_token is None and any(first_answer_text(o) for o in job.outputs()):
                first_token = total  # it came and went between two looks: no later than the end
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return [result("server_ready", ready, f"<= {PAGE_TARGET_S:g}", ready <= PAGE_TARGET_S, unit="s",
                   cpu_s=ready_cpu, measured="process start of `python app.py` to the page answering HTTP 200 "
                                             "(cpu_s: the CPU time the app used by then, which other work on the "
                                             "machine does not stretch)"),
            result("app_first_answer", total, "(reported)", None, unit="s", server_ready_s=round(ready, 3),
                   first_token_s=None if first_token is None else round(first_token, 3),
                   measured="process start to the first /ask answered with self-feedback (sent when the page was "
                            "served: it waits for the model)")]


def ask_latency(lm, cfg: BenchConfig, settings, reference=None) -> list[dict]:
    """The Ask tab's work as the app does it (laffi.ui.ask.run_ask, streaming): seconds from the question to the
    first visible token of any variant (ask_latency), and to the end of every variant's self-feedback (ask_total);
    the median of `repeats` Asks after a warm-up one, in the machine's precision and (reference) float32. These
    ask about a passage the model has read before (kept by laffi.inference.prefix_cache), as every Ask on the
    example passage (read at start-up) and a room's on the presenter's do; the *_new_passage rows empty that cache
    before every Ask, as for a passage pasted a moment ago."""
    from laffi.inference.prompts import qa_prompt

    timings = asks(lm, cfg, settings)
    new = asks(lm, cfg, settings, kept=False) if lm.prefix_cache is not None else timings
    plain = asks(reference, cfg, settings) if reference is not None else None
    first, total = timings["first"], timings["total"]
    dtype = lm.precision.dtype if lm.precision is not None else None
    fp32 = {"float32_first_token_s": plain["first"], "float32_total_s": plain["total"]} if plain else {}
    common = dict(unit="s", variants=timings["variants"], dtype=dtype, prompt_tokens=len(lm.tokenizer(qa_prompt(
        lm.tokenizer, PASSAGE, QUESTION))["input_ids"]), **fp32)
    return [result("ask_latency", first, f"<= {FIRST_TOKEN_TARGET_S:g}", None if first is None else
                   first <= FIRST_TOKEN_TARGET_S, answers_s=timings["answers"],
                   feedback_first_token_s=timings["feedback_first"], total_s=total,
                   measured="question to the first streamed token of any variant", **common),
            result("ask_total", total, f"<= {ASK_TOTAL_TARGET_S:g}", None if total is None else
                   total <= ASK_TOTAL_TARGET_S, measured="question to the end of every variant's self-feedback",
                   **common),
            result("ask_latency_new_passage", new["first"], f"<= {FIRST_TOKEN_TARGET_S:g}", None if new["first"] is
                   None else new["first"] <= FIRST_TOKEN_TARGET_S, total_s=new["total"], answers_s=new["answers"],
                   measured="as ask_latency, on a passage not read before (prefix cache emptied)", **common),
            result("ask_total_new_passage", new["total"], f"<= {ASK_TOTAL_TARGET_S:g}", None if new["total"] is
                   None else new["total"] <= ASK_TOTAL_TARGET_S,
                   measured="as ask_total, on a passage not read before (prefix cache emptied)", **common)]


def asks(lm, cfg: BenchConfig, settings, kept: bool = True) -> dict:
    """Median seconds of `repeats` Asks (after a warm-up one) to the first token, every answer, the first
    feedback token and the end; kept=False: the model's prefix cache is emptied before each."""
    from laffi.ui.ask import run_ask
    from laffi.ui.context import AppContext

    with tempfile.TemporaryDirectory() as data:
        settings = replace(settings, base=cfg.base, adapters_dir=cfg.adapters_dir, data_dir=Path(data),
                           runs_dir=Path(data) / "runs")  # this Ask's feedback and runs: a scratch folder
        ctx = AppContext.create(lm, settings)
        runs = []
        for _ in range(cfg.repeats + 1):
            if not kept:
                cold(lm)()
            start, first = time.perf_counter(), None
            for r in run_ask(ctx, PASSAGE, QUESTION):
                if first is None and any(v.get("answer") for v in r["variants"].values()):
                    first = time.perf_counter() - start
                final = r
            runs.append({"first": first, "answers": final["answer_seconds"],
                         "feedback_first": final.get("feedback_first_token_seconds"),
                         "total": time.perf_counter() - start})
    runs = runs[1:]  # the first Ask pays for first-call costs, as the app's warm-up does at start-up

    def median(key):
        values = [r[key] for r in runs if r[key] is not None]
        return round(statistics.median(values), 3) if values else None

    return {k: median(k) for k in ("first", "answers", "feedback_first", "total")} | {
        "variants": list(final["variants"])}


def room(lm, cfg: BenchConfig, settings) -> list[dict]:
    """A room through the app's own path (laffi.ui.ask.run_ask and its scheduler, one AppContext as in
    `python app.py`): one participant alone, then 8 and 20 at once, each with its own question on one passage,
    all released together. room_N: seconds until the last of them had every answer and self-feedback, as a
    multiple of one alone in the same run; room_first_token: the slowest participant's first token after its
    rows joined a batch."""
    import threading

    from laffi.ui.ask import run_ask
    from laffi.ui.context import AppContext

    with tempfile.TemporaryDirectory() as data:
        settings = replace(settings, base=cfg.base, adapters_dir=cfg.adapters_dir, data_dir=Path(data),
                           runs_dir=Path(data) / "runs", queue_size=max(ROOM_TARGETS) + 4)
        ctx = AppContext.create(lm, settings)

        def crowd(questions) -> list[dict]:
            start, out = threading.Barrier(len(questions)), [None] * len(questions)

            def participant(k):
                start.wait()
                began = time.perf_counter()
                for r in run_ask(ctx, PASSAGE, questions[k]):
                    final = r
                out[k] = {"seconds": time.perf_counter() - began, "phase": final["phase"],
                          "first_after_join": None if final.get("answer_first_token_seconds") is None else
                          final["answer_first_token_seconds"] - final.get("answer_joined_seconds", 0.0)}

            threads = [threading.Thread(target=participant, args=(k,)) for k in range(len(questions))]
            began = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return [dict(o or {"phase": "lost"}, wall=time.perf_counter() - began) for o in out]

        crowd([QUESTION])  # warm-up: first-call costs, as the app's warm-up pays them at start-up
        alone = statistics.median(crowd([q])[0]["seconds"] for q in ROOM_QUESTIONS[:max(1, cfg.repeats)])
        rows, joined = [], []
        for n, target in ROOM_TARGETS.items():
            before = ctx.scheduler.stats()
            people = crowd(list(ROOM_QUESTIONS[:n]))
            after = ctx.scheduler.stats()
            answered = sum(p["phase"] == "done" for p in people)
            last = max(p["seconds"] for p in people)
            ratio = round(last / alone, 2)
            joined += [p["first_after_join"] for p in people if p.get("first_after_join") is not None]
            rows.append(result(f"room_{n}", ratio, f"<= {target:g}", ratio <= target and answered == n, unit="x",
                               participants=n, answered=answered, last_s=round(last, 3), alone_s=round(alone, 3),
                               calls=after["calls"] - before["calls"], largest_call=after["largest"],
                               dtype=lm.precision.dtype if lm.precision is not None else None,
                               measured=f"{n} participants released together, each its own question on one "
                                        "passage: the last one's Ask (answers and self-feedback) over one alone"))
        slowest = round(max(joined), 2) if joined else None
        rows.append(result("room_first_token", slowest, f"<= {JOINED_FIRST_TOKEN_TARGET_S:g}",
                           None if slowest is None else slowest <= JOINED_FIRST_TOKEN_TARGET_S, unit="s",
                           measured="the slowest participant's first token after its rows joined a batch "
                                    "(8 and 20 at once)"))
    return rows
