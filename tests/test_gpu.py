"""The GPU path on CUDA, on the tiny random model (nothing to download or carry): mixed-adapter batches in half
precision, stacked LoRA against PEFT, attention, bitsandbytes 4-bit and 8-bit loading, a few QLoRA steps, and
the app's /ask. Skipped, with the reason, where CUDA is absent (this machine and CI); see the README for where
and whether they last ran on a GPU."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; torch.cuda.is_available() is False "
                                                             "here"),
]
ROWS = ["__base__", "sft", "laffi", "sft", "__base__"]
PAIRS = [("The Velmar bridge opened in 1931. It carries trains to the port.", "When did the bridge open?"),
         ("Ada Brill wrote three novels about Pell.", "How many novels did she write?")]


@pytest.fixture(scope="module")
def cuda_lm(tiny_dir, tiny_adapters):
    from laffi.inference.models import ModelConfig, load_model

    return load_model(ModelConfig(base=str(tiny_dir), adapters_dir=str(tiny_adapters), device="cuda",
                                  dtype="float16"))


def test_model_is_on_cuda_in_half_precision(cuda_lm):
    assert cuda_lm.device.type == "cuda" and next(cuda_lm.model.parameters()).dtype == torch.float16
    assert cuda_lm.variants == ["base", "laffi", "sft"] and cuda_lm.fused_lora() is not None


def test_mixed_adapter_batch_equals_each_variant_alone(cuda_lm):
    from laffi.inference.generation import GenerationConfig, answer_questions

    cfg = GenerationConfig(max_new_tokens=8, stop_at_newline=False)
    mixed = answer_questions(cuda_lm, PAIRS, cuda_lm.variants, cfg)
    for v in cuda_lm.variants:
        assert answer_questions(cuda_lm, PAIRS, [v], cfg)[v] == mixed[v], v
    assert len({mixed[v][0].raw for v in cuda_lm.variants}) > 1  # the adapters do change the answers


def test_stacked_lora_matches_peft_on_cuda(cuda_lm):
    texts = ["the bridge is old", "a city near the river was founded", "short", "why", "the old bridge"]
    enc = cuda_lm.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to("cuda")
    with torch.inference_mode():
        want = cuda_lm.model(**enc, adapter_names=ROWS).logits.float()
        with cuda_lm.fused_lora().rows(ROWS):
            got = cuda_lm.model(**enc).logits.float()
    # float16 activations, LoRA in float32 both ways; a wrong adapter or row would be off by far more
    torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)
    assert not torch.allclose(want[1], want[0], atol=1e-1)


def test_attention_on_cuda_matches_the_cpu(cuda_lm, tiny_lm):
    from laffi.inference.attention import attention_view
    from laffi.serving.gpu import to_host

    context, question = PAIRS[0]
    gpu_view = to_host(attention_view(cuda_lm, context, question, "1931", "sft"))
    cpu_view = attention_view(tiny_lm, context, question, "1931", "sft")
    assert isinstance(gpu_view.heat, np.ndarray) and isinstance(gpu_view.passage_scores, np.ndarray)
    assert gpu_view.tokens == cpu_view.tokens
    assert np.isfinite(gpu_view.viz).all()
    # the same weights in half precision: each head's attention within the bertviz window, and the heatmap's
    np.testing.assert_allclose(gpu_view.viz, cpu_view.viz, atol=2e-2)
    np.testing.assert_allclose(gpu_view.heat, cpu_view.heat, atol=3e-2)
    np.testing.assert_allclose(gpu_view.passage_scores, cpu_view.passage_scores, atol=2e-2)


@pytest.mark.parametrize("bits", ["4bit", "8bit"])
def test_bitsandbytes_loading_answers_with_every_variant(tiny_dir, tiny_adapters, bits):
    import bitsandbytes as bnb

    from laffi.inference.generation import GenerationConfig, answer_questions
    from laffi.inference.models import ModelConfig, load_model

    lm = load_model(ModelConfig(base=str(tiny_dir), adapters_dir=str(tiny_adapters), quantize=bits, device="cuda"))
    kind = bnb.nn.Linear4bit if bits == "4bit" else bnb.nn.Linear8bitLt
    assert any(isinstance(m, kind) for m in lm.model.modules())
    assert lm.variants == ["base", "laffi", "sft"] and not lm.warnings
    out = answer_questions(lm, PAIRS, lm.variants, GenerationConfig(max_new_tokens=6))
    assert all(len(out[v]) == len(PAIRS) for v in lm.variants)  # bnb LoRA layers: one batch per variant


def test_a_few_qlora_training_steps(tiny_dir):
    """QLoRA: the base in 4-bit NF4 (laffi.inference.models' recipe), LoRA in float32 on top; the loss moves, only LoRA
    weights change."""
    import bitsandbytes as bnb
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    from laffi.inference.models import ModelConfig, load_base

    model, _ = load_base(ModelConfig(base=str(tiny_dir), adapters_dir=None, quantize="4bit", device="cuda"))
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))
    base_before = {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" not in k}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    torch.manual_seed(0)
    batch = torch.randint(3, 300, (4, 24), device="cuda")
    model.train()
    losses = []
    for _ in range(5):
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in base_before.items())  # the 4-bit base did not move
    assert any(after[k].abs().sum() > 0 for k in after if "lora_B" in k)  # B starts at zero: LoRA learned


def test_app_ask_on_cuda(cuda_lm, tmp_path):
    from gradio_client import Client

    from laffi.settings import Settings
    from laffi.ui import build_demo, status_text

    assert "on cuda (float16)" in status_text(cuda_lm)
    demo = build_demo(lm=cuda_lm, settings=Settings.from_env(data_dir=tmp_path / "data", runs_dir=tmp_path / "runs"))
    demo.queue().launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        out = Client(demo.local_url, verbose=False).predict(PAIRS[0][0], PAIRS[0][1], api_name="/ask")
        result = out[-2]
        assert list(result["variants"]) == cuda_lm.variants
        assert all("feedback" in r for r in result["variants"].values())
    finally:
        demo.close()
