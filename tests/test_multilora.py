"""Stacked LoRA (laffi.inference.multilora) gives every row exactly its own adapter, like PEFT's mixed batches."""

import pytest

from laffi.inference.multilora import FusedLora

ROWS = ["__base__", "sft", "laffi", "sft", "__base__"]


@pytest.fixture(scope="module")
def lm(tiny_dir, tmp_path_factory):
    from laffi.inference.models import ModelConfig, load_model
    from laffi.inference.tiny import build_tiny_adapter

    root = tmp_path_factory.mktemp("ml_adapters")
    build_tiny_adapter(tiny_dir, root / "sft", seed=1, r=4)
    build_tiny_adapter(tiny_dir, root / "laffi", seed=2, r=8)  # another rank: two blocks of different width
    return load_model(ModelConfig(base=str(tiny_dir), adapters_dir=str(root), dtype="float32", device="cpu"))


def _batch(lm):
    texts = ["the bridge is old", "a city near the river was founded", "short", "why", "the old bridge"]
    return lm.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def test_stacked_logits_equal_peft_mixed_batch(lm):
    import torch

    enc = _batch(lm)
    fused = FusedLora.build(lm.model, ["sft", "laffi"])
    assert fused is not None and len(fused.packs) == 2 * 3  # 2 layers x (q, v, down)
    with torch.inference_mode():
        want = lm.model(**enc, adapter_names=ROWS).logits
        with fused.rows(ROWS):
            got = lm.model(**enc).logits
        after = lm.model(**enc, adapter_names=ROWS).logits
    # float32, two summation orders (stacked vs PEFT's per-adapter matmuls): ~1e-5 apart, more under load when
    # the BLAS splits work differently; a wrong adapter or row would be off by ~1e-1
    torch.testing.assert_close(got, want, rtol=1e-4, atol=5e-5)
    assert not torch.allclose(want[1], want[0])  # the adapters do change the rows
    torch.testing.assert_close(after, want)  # hooks gone, PEFT's adapters back on after the block


def test_generate_with_stacked_rows_matches_peft(lm):
    import torch

    enc = _batch(lm)
    kw = dict(max_new_tokens=8, do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
    with torch.inference_mode():
        want = lm.model.generate(**enc, adapter_names=ROWS, **kw)
        with lm.fused_lora().rows(ROWS):
            got = lm.model.generate(**enc, **kw)
    assert torch.equal(got, want)


def test_unknown_adapter_row_is_refused(lm):
    with pytest.raises(ValueError, match="nope"):
        with lm.fused_lora().rows(["sft", "nope"]):
            pass


def test_dora_adapters_are_not_stacked_and_generation_falls_back(tiny_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from laffi.inference.generation import generate_rows
    from laffi.inference.models import ModelConfig, load_model

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"], use_dora=True,
                                     init_lora_weights=False)).save_pretrained(tmp_path / "dora")
    lm = load_model(ModelConfig(base=str(tiny_dir), adapters_dir=str(tmp_path), dtype="float32", device="cpu"))
    assert lm.adapters and lm.fused_lora() is None
    prompts = ["the bridge is", "a city"]
    mixed = generate_rows(lm, prompts, ["dora", "base"], 6, stop_at_newline=False)
    assert mixed[0] == generate_rows(lm, prompts[:1], ["dora"], 6, stop_at_newline=False)[0]
    assert mixed[1] == generate_rows(lm, prompts[1:], ["base"], 6, stop_at_newline=False)[0]


def test_bfloat16_model_stacked_close_to_peft(tiny_dir, tiny_adapters):
    """The CPU-with-bf16 default: adapters stay float32 (PEFT's autocast), the base runs in bfloat16."""
    import torch

    from laffi.inference.models import ModelConfig, load_model

    lm16 = load_model(ModelConfig(base=str(tiny_dir), adapters_dir=str(tiny_adapters), dtype="bfloat16", device="cpu"))
    enc = _batch(lm16)
    with torch.inference_mode():
        want = lm16.model(**enc, adapter_names=ROWS).logits.float()
        with lm16.fused_lora().rows(ROWS):
            got = lm16.model(**enc).logits.float()
    torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)
