"""Mixed-adapter batches on a tiny random Llama: same tokens as one variant at a time; base = adapters off."""

import pytest

from laffi.inference.generation import GenerationConfig, answer_questions, generate_grid, generate_rows
from laffi.inference.prompts import qa_prompt

PAIRS = [("The river is long and the bridge is old.", "What is old?"),
         ("A city was founded in 1702 near the bridge by fishermen from the coast.", "When was it founded?"),
         ("Short.", "Why?")]


def _prompts(lm):
    return [qa_prompt(lm.tokenizer, c, q) for c, q in PAIRS]


def test_mixed_batch_equals_each_variant_alone(tiny_lm):
    prompts = _prompts(tiny_lm)
    cfg = GenerationConfig(max_new_tokens=12, stop_at_newline=False)
    mixed = generate_grid(tiny_lm, prompts, tiny_lm.variants, cfg)  # one batch, rows of all variants
    for v in tiny_lm.variants:
        alone = generate_rows(tiny_lm, prompts, [v] * len(prompts), 12, stop_at_newline=False)
        assert mixed[v] == alone, v
    # the check means something only if the adapters really change what the model says
    assert mixed["sft"] != mixed["base"] and mixed["laffi"] != mixed["base"] and mixed["sft"] != mixed["laffi"]


def test_mixed_batch_is_one_forward_batch(tiny_lm, monkeypatch):
    import laffi.inference.decoding as decoding

    calls = []
    real = decoding.greedy
    monkeypatch.setattr(decoding, "greedy", lambda model, enc, *a, **kw: calls.append((enc, kw)) or
                        real(model, enc, *a, **kw))
    generate_grid(tiny_lm, _prompts(tiny_lm), tiny_lm.variants, GenerationConfig(max_new_tokens=4, batch_size=64))
    assert len(calls) == 1 and calls[0][0]["input_ids"].shape[0] == 3 * len(PAIRS)
    assert "adapter_names" not in calls[0][0]  # the stacked path (laffi.inference.multilora) applied the adapters
    assert sorted(set(calls[0][1]["variants"])) == sorted(tiny_lm.variants)  # one batch, every variant in it


def test_base_equals_model_with_adapters_disabled(tiny_lm, tiny_dir):
    import torch
    from transformers import AutoModelForCausalLM

    prompts = _prompts(tiny_lm)
    ours = generate_rows(tiny_lm, prompts, ["base"] * len(prompts), 10, stop_at_newline=False)
    enc = tiny_lm.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    kw = dict(max_new_tokens=10, do_sample=False, pad_token_id=tiny_lm.tokenizer.pad_token_id)
    with torch.inference_mode(), tiny_lm.model.disable_adapter():
        disabled = tiny_lm.model.generate(**enc, **kw)
    plain = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    with torch.inference_mode():
        fresh = plain.generate(**enc, **kw)
    n = enc["input_ids"].shape[1]
    decode = lambda out: tiny_lm.tokenizer.batch_decode(out[:, n:], skip_special_tokens=True)  # noqa: E731
    assert ours == decode(disabled) == decode(fresh)


def test_stop_at_newline_never_changes_the_first_line(tiny_lm):
    from laffi.inference.prompts import first_line

    prompts = _prompts(tiny_lm)
    full = generate_rows(tiny_lm, prompts, ["sft", "laffi", "base"], 40, stop_at_newline=False)
    cut = generate_rows(tiny_lm, prompts, ["sft", "laffi", "base"], 40, stop_at_newline=True)
    for f, c in zip(full, cut):
        assert f.startswith(c) and first_line(c) == first_line(f)


def test_stop_rule_token_by_token(tiny_lm):
    import torch

    from laffi.inference.generation import _StopAfterFirstLine

    tok = tiny_lm.tokenizer
    ids = {t: tok.convert_tokens_to_ids(tok.tokenize(t))[0] for t in ("\n", "the", "1")}
    stop = _StopAfterFirstLine(tok, "cpu")
    # three rows, one step at a time: a leading newline does not stop; text then newline does
    steps = [["\n", "the", "1"], ["the", "\n", "1"], ["\n", "the", "\n"]]
    got = []
    for step in steps:
        last = torch.tensor([[ids[t]] for t in step])
        got.append(stop(last, None).tolist())
    assert got == [[False, False, False], [False, True, False], [True, False, True]]


def test_answer_questions_returns_every_variant(tiny_lm):
    out = answer_questions(tiny_lm, PAIRS[:2], ["laffi", "base"], GenerationConfig(max_new_tokens=6))
    assert list(out) == ["laffi", "base"] and all(len(v) == 2 for v in out.values())


def test_unknown_variant_is_a_clear_error(tiny_lm):
    from laffi.errors import LaffiError

    with pytest.raises(LaffiError, match=r"Unknown variant 'dpo'; available: base, laffi, sft"):
        answer_questions(tiny_lm, PAIRS[:1], ["dpo"])


@pytest.mark.parametrize("field,value", [("max_new_tokens", 0), ("batch_size", 0)])
def test_generation_config_names_the_bad_field(field, value):
    from laffi.errors import LaffiError

    with pytest.raises(LaffiError, match=field):
        GenerationConfig(**{field: value})
