"""Answers from a vLLM server: many LoRA adapters in one continuous batch (vLLM's Punica kernels), asked through the
OpenAI-compatible /v1/completions API with greedy decoding and laffi's stop rule.

Usage:
    backend = VllmBackend("http://127.0.0.1:8000", eos_token="<|im_end|>", adapters={"sft": Path(...)})
    backend = VllmBackend.for_model(lm)          # starts `vllm serve <base> --enable-lora --lora-modules ...`
    texts = backend.generate([(prompt, "sft"), (prompt, "base")], GenerationConfig())   # one reply per row
    lm.use_generator(backend)                     # what laffi.inference.backends.use_backend does: every answer goes here

One request per variant (model = the adapter's name, or the base model's id for "base"), all sent at once, so
the server batches rows of every adapter together. Prompts are the exact text laffi renders, sent with
add_special_tokens=false as laffi tokenizes them. temperature 0 and the same stop rule as laffi.inference.generation: a
row ends at the end-of-turn token, or at a newline once it has written some text (a newline before any text is
stepped over by asking the server to continue). Answers match the transformers backend's except where kernels
round differently (bfloat16 on a GPU): greedy decoding then can pick another token at a near tie.
"""

from __future__ import annotations

import atexit
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from laffi.errors import LaffiError
from laffi.inference.events import GenerationEvent, OnEvent, as_rows
from laffi.inference.models import BASE_VARIANT  # laffi.inference.models imports torch only inside its functions

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values `vllm serve --max-lora-rank` accepts
PROMPTS_PER_REQUEST = 64  # rows of one variant per HTTP request; the server batches across requests anyway
MAX_CONTINUATIONS = 4  # newline-before-text rounds per row (rare: replies start with text)


def lora_rank_limit(adapters: dict[str, Path]) -> int:
    """The smallest --max-lora-rank vLLM accepts that fits every adapter's rank (adapter_config.json "r")."""
    ranks = [json.loads((Path(p) / "adapter_config.json").read_text()).get("r", 8) for p in adapters.values()]
    top = max(ranks, default=8)
    return next((r for r in VLLM_LORA_RANKS if r >= top), top)


def serve_command(source: str, adapters: dict[str, Path], port: int, extra_args: str = "") -> list[str]:
    """`vllm serve` for this base and adapters on loopback: every adapter a LoRA module, all of them at once."""
    program = Path(sys.executable).parent / "vllm"
    cmd = [str(program) if program.is_file() else (shutil.which("vllm") or "vllm"), "serve", source,
           "--host", "127.0.0.1", "--port", str(port)]
    if adapters:
        cmd += ["--enable-lora", "--lora-modules", *(f"{name}={path}" for name, path in adapters.items()),
                "--max-loras", str(len(adapters)), "--max-lora-rank", str(lora_rank_limit(adapters))]
    return cmd + shlex.split(extra_args)


class VllmServer:
    """A `vllm serve` child process on a free loopback port, stopped (with everything it started) at exit."""

    def __init__(self, cmd: list[str], port: int, log_path: Path):
        self.cmd, self.port, self.log_path = cmd, port, log_path
        self.url = f"http://127.0.0.1:{port}"
        if not Path(cmd[0]).is_file() and not shutil.which(cmd[0]):
            raise LaffiError("vLLM is not installed: `pip install '.[vllm]'` on a CUDA machine, or point laffi at a "
                             "running server (--vllm_url / LAFFI_VLLM_URL), or use --backend transformers.")
        env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}  # adapters trained later can join
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        atexit.register(self.stop)

    @classmethod
    def start(cls, source: str, adapters: dict[str, Path], extra_args: str = "", timeout: float = 900.0,
              log=None) -> "VllmServer":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log_path = Path(tempfile.gettempdir()) / f"laffi-vllm-{port}.log"
        server = cls(serve_command(source, adapters, port, extra_args), port, log_path)
        if log:
            log(f"vllm: {' '.join(map(shlex.quote, server.cmd))} (log: {log_path})")
        server.wait_ready(timeout)
        return server

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-800:] if self.log_path.is_file() else ""
                raise LaffiError(f"`vllm serve` ended with status {self.proc.returncode} before it was ready; the end "
                                 f"of its log ({self.log_path}):\n{tail}")
            try:
                with urllib.request.urlopen(f"{self.url}/v1/models", timeout=5):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(1.0)
        self.stop()
        raise LaffiError(f"`vllm serve` was not ready after {timeout:.0f} s (log: {self.log_path}).")

    def stop(self) -> None:
        if self.proc.poll() is None:
            from laffi.processes import stop_tree

            stop_tree(self.proc.pid, grace=10).join()


class VllmBackend:
    """Generates laffi's rows on a vLLM server (see the module's docstring): a laffi.inference.surface.RowGenerator."""

    measures_first_token = False  # no token probabilities come back: answers are its greedy replies

    def __init__(self, url: str, eos_token: str | None = None, adapters: dict[str, Path] | None = None,
                 server: VllmServer | None = None, timeout: float = 600.0):
        self.url, self.eos_token, self.server, self.timeout = url.rstrip("/"), eos_token, server, timeout
        self.adapters = adapters if adapters is not None else {}  # lm.adapters: a dict that grows as adapters join
        self._served: dict[str, str | None] | None = None  # id -> parent id (None: a base model)

    @classmethod
    def for_model(cls, lm, url: str | None = None, extra_args: str = "", log=None) -> "VllmBackend":
        server = None
        if not url:
            from laffi.inference.models import resolve_source

            server = VllmServer.start(resolve_source(lm.config), dict(lm.adapters), extra_args, log=log)
            url = server.url
        return cls(url, eos_token=lm.tokenizer.eos_token, adapters=lm.adapters, server=server)

    # --- HTTP ------------------------------------------------------------------------------------------------------
    def request(self, path: str, payload: dict | None = None) -> dict:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read().decode()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:300]
            raise LaffiError(f"The vLLM server at {self.url} refused {path} (HTTP {e.code}): {detail}") from e
        except (urllib.error.URLError, OSError) as e:
            raise LaffiError(f"The vLLM server at {self.url} did not answer ({getattr(e, 'reason', e)}); start it, "
                             "or unset LAFFI_VLLM_URL / --vllm_url to let laffi start one.") from e
        try:
            return json.loads(body) if body.strip() else {}
        except ValueError:  # /v1/load_lora_adapter answers a plain sentence ("Success: ...")
            return {"text": body}

    def served(self, refresh: bool = False) -> dict[str, str | None]:
        if self._served is None or refresh:
            rows = self.request("/v1/models").get("data", [])
            self._served = {m["id"]: m.get("parent") for m in rows}
        return self._served

    def model_for(self, variant: str) -> str:
        """The model name a request for `variant` carries: the base model's id, or the adapter's LoRA name (an
        adapter the server lacks, e.g. trained after it started, is loaded at runtime)."""
        served = self.served()
        if variant == BASE_VARIANT:
            bases = [m for m, parent in served.items() if parent is None]
            if not bases:
                raise LaffiError(f"The vLLM server at {self.url} lists no base model under /v1/models.")
            return bases[0]
        if variant not in served:
            path = self.adapters.get(variant)
            if path is None:
                raise LaffiError(f"The vLLM server at {self.url} does not serve the adapter {variant!r}.")
            self.request("/v1/load_lora_adapter", {"lora_name": variant, "lora_path": str(path)})
            self.served(refresh=True)
        return variant

    # --- generation -------------------------------------------------------------------------------------------------
    def complete(self, model: str, prompts: list[str], max_tokens: int, stop_at_newline: bool) -> list[str]:
        """Greedy completions of `prompts` by `model`, each cut by laffi's stop rule."""
        out, todo, left = [""] * len(prompts), list(range(len(prompts))), max_tokens
        for _ in range(MAX_CONTINUATIONS + 1):
            payload = {"model": model, "prompt": [prompts[i] + out[i] for i in todo], "max_tokens": left,
                       "temperature": 0.0, "n": 1, "stream": False, "add_special_tokens": False,
                       "skip_special_tokens": True,
                       "stop": (["\n"] if stop_at_newline else []) + ([self.eos_token] if self.eos_token else [])}
            choices = sorted(self.request("/v1/completions", payload).get("choices", []), key=lambda c: c["index"])
            if len(choices) != len(todo):
                raise LaffiError(f"The vLLM server at {self.url} returned {len(choices)} completions for "
                                 f"{len(todo)} prompts.")
            again = []
            for i, choice in zip(todo, choices):
                out[i] += choice.get("text") or ""
                # the stop string "\n" came before any text: laffi's rule keeps going until text, then a newline
                if stop_at_newline and choice.get("stop_reason") == "\n" and not out[i].strip():
                    out[i] += "\n"
                    again.append(i)
            todo, left = again, left - 1
            if not todo or left < 1:
                break
        return out

    def generate(self, rows, cfg, on_event: OnEvent | None = None, first_token=None,
                 first_probs: list | None = None) -> list[str]:
        """One reply per row (Rows, or (prompt, variant) pairs), in row order (laffi.inference.surface.RowGenerator);
        vLLM's replies arrive whole, so on_event gets one done event a row. first_token is not measured here."""
        rows = as_rows(rows)
        by_variant: dict[str, list[int]] = {}
        for k, row in enumerate(rows):
            by_variant.setdefault(row.variant, []).append(k)
        jobs = [(v, idx[i:i + PROMPTS_PER_REQUEST]) for v, idx in by_variant.items()
                for i in range(0, len(idx), PROMPTS_PER_REQUEST)]
        models = {v: self.model_for(v) for v in by_variant}
        out = [""] * len(rows)
        with ThreadPoolExecutor(max_workers=min(16, len(jobs)) or 1) as pool:  # in flight together: one batch
            futures = [(idx, pool.submit(self.complete, models[v], [rows[k].prompt for k in idx], cfg.max_new_tokens,
                                         cfg.stop_at_newline)) for v, idx in jobs]
            for idx, future in futures:
                for k, text in zip(idx, future.result()):
                    out[k] = text
                    if on_event:
                        on_event(GenerationEvent.of(rows[k], text, done=True, total=len(rows)))
        return out
