"""A loopback stand-in for a vLLM server's OpenAI-compatible API (/v1/models, /v1/completions,
/v1/load_lora_adapter) that records every request and answers canned text, cut by the request's stop strings as
vLLM cuts it. No GPU, no vLLM: the tests check what laffi asks and that the answers flow back.

Usage:
    with VllmStub(base="tiny", adapters=["sft", "laffi"], reply=lambda model, prompt: "1874\\nmore") as stub:
        VllmBackend(stub.url, ...)          # or LAFFI_VLLM_URL=stub.url
        stub.rows                           # one dict per prompt: model, prompt, temperature, max_tokens, stop, ...
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class VllmStub:
    def __init__(self, base: str = "stub-base", adapters=(), reply=None):
        self.base, self.adapters = base, list(adapters)
        self.reply = reply or (lambda model, prompt: f"answer of {model}\nignored")
        self.requests: list[dict] = []  # every request body, in arrival order, with its path
        self.rows: list[dict] = []  # one per completion prompt
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "VllmStub":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def models(self) -> dict:
        rows = [{"id": self.base, "object": "model", "root": self.base, "parent": None}]
        rows += [{"id": a, "object": "model", "root": f"/adapters/{a}", "parent": self.base} for a in self.adapters]
        return {"object": "list", "data": rows}

    def complete(self, body: dict) -> tuple[int, dict]:
        model = body.get("model")
        if model != self.base and model not in self.adapters:
            return 404, {"error": {"message": f"The model `{model}` does not exist.", "code": 404}}
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        choices = []
        for i, prompt in enumerate(prompts):
            with self.lock:
                self.rows.append({"model": model, "prompt": prompt, **{k: body.get(k) for k in (
                    "temperature", "max_tokens", "stop", "add_special_tokens", "skip_special_tokens")}})
            text, reason = self.reply(model, prompt), None
            for stop in body.get("stop") or []:  # vLLM: the text up to the first stop string, without it
                if stop in text and (reason is None or text.index(stop) < text.index(reason)):
                    reason = stop
            if reason is not None:
                text = text[:text.index(reason)]
            choices.append({"index": i, "text": text, "logprobs": None, "finish_reason": "stop",
                            "stop_reason": reason})
        return 200, {"id": "cmpl-stub", "object": "text_completion", "model": model, "choices": choices,
                     "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}

    def handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet test output
                pass

            def send(self, code: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/v1/models":
                    self.send(200, stub.models())
                else:
                    self.send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with stub.lock:
                    stub.requests.append({"path": self.path, **body})
                if self.path == "/v1/completions":
                    self.send(*stub.complete(body))
                elif self.path == "/v1/load_lora_adapter":  # vLLM answers a sentence, not JSON
                    stub.adapters.append(body["lora_name"])
                    data = f"Success: LoRA adapter '{body['lora_name']}' added successfully.".encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self.send(404, {"error": {"message": "not found"}})

        return Handler
