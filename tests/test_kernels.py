"""CPU inference kernels (laffi.inference.kernels): oneDNN linear layers give torch's float32 answers; training is untouched."""

import pytest

from laffi.inference import kernels


@pytest.fixture(scope="module")
def plain_and_fast(tiny_dir):
    from laffi.inference.models import ModelConfig, load_base

    if kernels._onednn_linear() is None:
        pytest.skip("this CPU or torch build has no oneDNN linear op (laffi then keeps torch's path)")
    plain, tok = load_base(ModelConfig(base=str(tiny_dir), dtype="float32", cpu_kernels=False, device="cpu"))
    fast, _ = load_base(ModelConfig(base=str(tiny_dir), dtype="float32", device="cpu"))
    return plain, fast, tok


def test_every_linear_layer_is_routed_once(plain_and_fast):
    import torch

    plain, fast, _ = plain_and_fast
    linears = [m for m in fast.modules() if type(m) is torch.nn.Linear]
    assert linears and all(map(kernels.routed, linears))
    assert not any(map(kernels.routed, plain.modules()))  # cpu_kernels=False leaves torch's path
    assert kernels.use_onednn_linears(fast) == 0  # installing twice changes nothing


def test_inference_matches_torch_float32(plain_and_fast):
    import torch

    plain, fast, tok = plain_and_fast
    enc = tok(["the old bridge is long", "why"], return_tensors="pt", padding=True)
    with torch.inference_mode():
        want, got = plain(**enc).logits, fast(**enc).logits
        tokens = [m.generate(**enc, max_new_tokens=8, do_sample=False) for m in (plain, fast)]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(tokens[0], tokens[1])


def test_training_takes_torchs_path_with_gradients(plain_and_fast):
    import torch

    _, fast, _ = plain_and_fast
    layer = next(m for m in fast.modules() if type(m) is torch.nn.Linear)
    x = torch.randn(2, 3, layer.in_features, requires_grad=True)
    layer(x).sum().backward()
    want = torch.ones(2, 3, layer.out_features) @ layer.weight
    torch.testing.assert_close(x.grad, want)
    assert layer.weight.grad is not None  # the weight took part in autograd: torch's F.linear ran
    layer.weight.grad = None


def test_allocator_tuning_defers_to_the_users_malloc_settings(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert kernels.keep_freed_memory() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    import platform

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert kernels.keep_freed_memory() is True


def test_packed_weights_follow_a_changed_weight(plain_and_fast):
    import torch

    _, fast, _ = plain_and_fast
    layer = next(m for m in fast.modules() if type(m) is torch.nn.Linear)
    x = torch.randn(3, layer.in_features)
    with torch.no_grad():
        before = layer(x)
        first = kernels.packed_weight(layer, layer.weight)
        assert kernels.packed_weight(layer, layer.weight) is first  # packed once, reused
        torch.testing.assert_close(before, x @ layer.weight.T, rtol=1e-5, atol=1e-5)
        saved = layer.weight.clone()
        layer.weight.mul_(2)  # changed in place (as load_state_dict does): packed again
        try:
            torch.testing.assert_close(layer(x), 2 * before, rtol=1e-5, atol=1e-5)
        finally:
            layer.weight.copy_(saved)
        torch.testing.assert_close(layer(x), before, rtol=1e-5, atol=1e-5)


def test_bfloat16_layers_are_routed_and_give_torchs_bfloat16_answers(tiny_dir):
    """bfloat16 weights (the precision a CPU with native bfloat16 serves in) take the packed oneDNN path too, with
    torch's own bfloat16 results: the quality guard measured for the plain path holds for this one."""
    import torch

    from laffi.inference.models import ModelConfig, load_base

    from laffi.inference.precision import native_bf16_flags

    if (kernels._onednn_linear() is None or not native_bf16_flags()
            or not kernels._agrees(kernels._onednn_linear(), torch.bfloat16)):
        pytest.skip("no native bfloat16 or no oneDNN bfloat16 linear here (bfloat16 keeps torch's path)")
    plain, tok = load_base(ModelConfig(base=str(tiny_dir), dtype="bfloat16", cpu_kernels=False, device="cpu"))
    fast, _ = load_base(ModelConfig(base=str(tiny_dir), dtype="bfloat16", device="cpu"))
    layer = next(m for m in fast.modules() if type(m) is torch.nn.Linear)
    assert layer.weight.dtype == torch.bfloat16 and kernels.routed(layer)
    enc = tok(["the old bridge is long", "why", "a city near the river"], return_tensors="pt", padding=True)
    with torch.inference_mode():
        want, got = plain(**enc).logits.float(), fast(**enc).logits.float()
        tokens = [m.generate(**enc, max_new_tokens=8, do_sample=False) for m in (plain, fast)]
        assert layer in kernels._PACKED and kernels._PACKED[layer][2] is not layer.weight  # the packed copy ran
    torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2 * want.abs().max().item())
    assert torch.equal(tokens[0], tokens[1])


def test_one_token_queries_take_the_packed_path_with_the_same_attention(plain_and_fast, monkeypatch):
    """A decoding step of rows that need no mask reaches SDPA with an all-true one (its packed grouped-query
    path, not enable_gqa), and the logits are stock SDPA's; the Attention tab's eager switch comes back to it."""
    import torch
    import transformers.integrations.sdpa_attention as sdpa

    plain, fast, _ = plain_and_fast
    assert fast.config._attn_implementation == kernels.PACKED_GQA and plain.config._attn_implementation == "sdpa"
    masks = []
    real = sdpa.sdpa_attention_forward
    monkeypatch.setattr(sdpa, "sdpa_attention_forward",
                        lambda module, q, k, v, mask, **kw: masks.append((q.shape[2], mask))
                        or real(module, q, k, v, mask, **kw))
    ids = torch.randint(5, min(100, fast.config.vocab_size), (2, 8), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for model in (fast, plain):
            out = model(input_ids=ids, use_cache=True)
            step = model(input_ids=ids[:, -1:], past_key_values=out.past_key_values, use_cache=True)
            model.last = step.logits
    one_token = [mask for q_len, mask in masks if q_len == 1]
    assert one_token and all(m is not None and bool(m.all()) for m in one_token)  # only our wrapper passed a mask
    assert torch.allclose(fast.last, plain.last, atol=1e-5)
    from laffi.inference.attention import eager_attention

    with eager_attention(fast):  # the Attention tab reads weights through eager attention, then switches back
        assert fast.config._attn_implementation == "eager"
    assert fast.config._attn_implementation == kernels.PACKED_GQA


def test_a_bfloat16_model_computes_its_logits_in_float32_and_trains_as_before():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from laffi.inference.kernels import float32_logits

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    ids = torch.tensor([[1, 5, 9, 13]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
    assert float32_logits(model) and not float32_logits(model)  # once
    head = model.get_output_embeddings()
    with torch.no_grad():
        after = model(input_ids=ids).logits
        hidden = model.model(input_ids=ids).last_hidden_state
    assert before.dtype == torch.bfloat16 and after.dtype == torch.float32
    want = hidden.float() @ head.weight.float().T  # the same bfloat16 hidden states, a float32 product
    assert torch.allclose(after, want, atol=1e-4) and not torch.equal(after, before.float())
    assert "weight_float32" not in model.state_dict()  # nothing new is saved with the model
    assert model(input_ids=ids).logits.dtype == torch.bfloat16  # with gradients on: the layer as it was
    assert not float32_logits(LlamaForCausalLM(cfg).eval())  # a float32 model is left alone
