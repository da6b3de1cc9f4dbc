"""The vLLM backend against a loopback stub of its OpenAI-compatible API (tests/vllm_stub.py; no GPU, no vLLM):
what laffi asks (the adapter per row, greedy, max tokens, the stop rule), that answers flow back through `eval`
and the app's /ask, and that what can go wrong is a sentence."""

import json
import shutil
from types import SimpleNamespace

import pytest

from laffi.errors import LaffiError
from laffi.inference.backends import BackendConfig, use_backend
from laffi.inference.generation import GenerationConfig
from laffi.inference.vllm import VllmBackend, lora_rank_limit, serve_command

from .vllm_stub import VllmStub

GOLD = {"When did the Velmar bridge open?": "1931", "What does the bridge carry?": "trains",
        "How many novels did Ada Brill write?": "three"}


def test_each_row_asks_its_adapter_greedily_with_max_tokens_and_the_stop_rule():
    with VllmStub(base="the-base", adapters=["sft", "laffi"],
                  reply=lambda model, prompt: f"{model} on {prompt}\nsecond line") as stub:
        backend = VllmBackend(stub.url, eos_token="<|im_end|>")
        rows = [("P0", "base"), ("P1", "sft"), ("P2", "laffi"), ("P3", "sft")]
        seen = []
        texts = backend.generate(rows, GenerationConfig(max_new_tokens=7),
                                 on_event=lambda event: seen.append(event.index))
    assert texts == ["the-base on P0", "sft on P1", "laffi on P2", "sft on P3"]  # in row order, cut at the newline
    assert sorted(seen) == [0, 1, 2, 3]
    asked = {r["prompt"]: r for r in stub.rows}
    assert {p: asked[p]["model"] for p in asked} == {"P0": "the-base", "P1": "sft", "P2": "laffi", "P3": "sft"}
    for r in stub.rows:
        assert r["temperature"] == 0 and r["max_tokens"] == 7 and r["add_special_tokens"] is False
        assert r["stop"] == ["\n", "<|im_end|>"]
    assert sorted(len(q["prompt"]) for q in stub.requests) == [1, 1, 2]  # one request per variant


def test_without_stop_at_newline_only_the_end_of_turn_stops():
    with VllmStub(adapters=[], reply=lambda model, prompt: "a\nb") as stub:
        texts = VllmBackend(stub.url, eos_token="<|im_end|>").generate(
            [("P", "base")], GenerationConfig(max_new_tokens=5, stop_at_newline=False))
    assert texts == ["a\nb"] and stub.rows[0]["stop"] == ["<|im_end|>"]


def test_a_newline_before_any_text_is_stepped_over_as_laffi_does():
    """laffi stops a row at a newline only once it has written text: the server is asked to go on."""
    with VllmStub(adapters=[], reply=lambda model, prompt: "1874\nx" if prompt.endswith("\n") else "\n1874") as stub:
        texts = VllmBackend(stub.url).generate([("Q:", "base")], GenerationConfig(max_new_tokens=9))
    assert texts[0].strip() == "1874"
    assert [r["prompt"] for r in stub.rows] == ["Q:", "Q:\n"] and stub.rows[1]["max_tokens"] == 8


def test_an_adapter_the_server_lacks_is_loaded_at_runtime(tiny_adapters):
    with VllmStub(adapters=["sft"], reply=lambda model, prompt: "ok") as stub:
        backend = VllmBackend(stub.url, adapters={"sft": tiny_adapters / "sft", "fresh": tiny_adapters / "laffi"})
        assert backend.generate([("P", "fresh")], GenerationConfig()) == ["ok"]
    loads = [r for r in stub.requests if r["path"] == "/v1/load_lora_adapter"]
    assert loads == [{"path": "/v1/load_lora_adapter", "lora_name": "fresh",
                      "lora_path": str(tiny_adapters / "laffi")}]
    assert stub.rows[0]["model"] == "fresh"


def test_what_goes_wrong_is_a_sentence():
    with VllmStub(adapters=[]) as stub:
        with pytest.raises(LaffiError, match="does not serve the adapter 'nope'"):
            VllmBackend(stub.url).generate([("P", "nope")], GenerationConfig())
        url = stub.url
    with pytest.raises(LaffiError, match=f"The vLLM server at {url} did not answer"):
        VllmBackend(url, timeout=5).generate([("P", "base")], GenerationConfig())
    with pytest.raises(LaffiError, match="--backend must be one of transformers, vllm"):
        BackendConfig(backend="sglang")


def test_serve_command_serves_every_adapter_with_a_rank_limit(tiny_adapters):
    adapters = {"sft": tiny_adapters / "sft", "laffi": tiny_adapters / "laffi"}
    cmd = serve_command("/models/base", adapters, 8123, "--gpu-memory-utilization 0.8")
    assert cmd[1:5] == ["serve", "/models/base", "--host", "127.0.0.1"] and cmd[cmd.index("--port") + 1] == "8123"
    at = cmd.index("--lora-modules")
    assert "--enable-lora" in cmd and cmd[at + 1:at + 3] == [f"sft={adapters['sft']}", f"laffi={adapters['laffi']}"]
    assert cmd[cmd.index("--max-loras") + 1] == "2"
    assert lora_rank_limit(adapters) == 8 and cmd[cmd.index("--max-lora-rank") + 1] == "8"  # rank 4 -> vLLM's 8
    assert cmd[-2:] == ["--gpu-memory-utilization", "0.8"]
    assert "--enable-lora" not in serve_command("/models/base", {}, 8123)


def test_starting_vllm_where_it_is_not_installed_says_how_to_get_it(tiny_dir):
    from laffi.inference.models import ModelConfig

    if shutil.which("vllm"):
        pytest.skip("vllm is installed here")
    lm = SimpleNamespace(config=ModelConfig(base=str(tiny_dir), adapters_dir=None), adapters={},
                         tokenizer=SimpleNamespace(eos_token="<|im_end|>"), backend=None)
    with pytest.raises(LaffiError, match=r"vLLM is not installed: `pip install '\.\[vllm\]'`"):
        use_backend(lm, BackendConfig(backend="vllm"))


def gold_reply(model, prompt):
    """base answers every question right ("no answer" where there is none); the adapters answer 'banana'."""
    if model != "stub-base":
        return "banana\nmore"
    return next((a for q, a in GOLD.items() if q in prompt), "no answer") + "\nmore"


@pytest.mark.parametrize("how", ["flags", "environment"])
def test_eval_runs_end_to_end_against_the_server(how, tiny_dir, tiny_adapters, small_squad, tmp_path, monkeypatch,
                                                 capsys):
    from laffi.cli import main

    with VllmStub(adapters=["sft", "laffi"], reply=gold_reply) as stub:
        argv = ["eval", "--base", str(tiny_dir), "--adapters_dir", str(tiny_adapters), "--data", str(small_squad),
                "--json", "--max_new_tokens", "12", "--out", str(tmp_path / "eval")]
        if how == "flags":
            argv += ["--backend", "vllm", "--vllm_url", stub.url]
        else:
            monkeypatch.setenv("LAFFI_BACKEND", "vllm")
            monkeypatch.setenv("LAFFI_VLLM_URL", stub.url)
        assert main(argv) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n"] == 5
    assert metrics["variants"]["base"]["exact"] == 100.0  # the server's answers, scored
    assert metrics["variants"]["sft"]["exact"] < 100.0
    assert sorted((r["model"], r["max_tokens"], r["temperature"]) for r in stub.rows) == sorted(
        (m, 12, 0.0) for m in ("stub-base", "sft", "laffi") for _ in range(5))


@pytest.fixture
def vllm_app(tiny_dir, tiny_adapters, tmp_path):
    from gradio_client import Client

    from laffi.inference.models import ModelConfig, load_model
    from laffi.settings import Settings
    from laffi.ui import build_demo

    with VllmStub(adapters=["sft", "laffi"], reply=lambda model, prompt: f"{model}-1874\nmore") as stub:
        lm = load_model(ModelConfig(base=str(tiny_dir), adapters_dir=str(tiny_adapters), dtype="float32"))
        settings = Settings.from_env(data_dir=tmp_path / "data", runs_dir=tmp_path / "runs", backend="vllm",
                                     vllm_url=stub.url)
        demo = build_demo(lm=lm, settings=settings)
        demo.queue().launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
        try:
            yield Client(demo.local_url, verbose=False), stub, demo
        finally:
            demo.close()


def test_the_apps_ask_is_answered_by_the_server(vllm_app):
    client, stub, demo = vllm_app
    out = client.predict(passage="The Halvard lighthouse was lit in 1874.", question="When was it lit?",
                         api_name="/ask")
    result = out[-2]
    answers = {v: r["answer"] for v, r in result["variants"].items()}
    assert answers == {"base": "stub-base-1874", "sft": "sft-1874", "laffi": "laffi-1874"}
    assert {r["model"] for r in stub.rows} == {"stub-base", "sft", "laffi"}
    assert all(r["temperature"] == 0 and "\n" in r["stop"] for r in stub.rows)
    assert "does not expose attention weights" in json.dumps(demo.config, default=str)  # the Attention tab says so
