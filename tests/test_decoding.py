"""Greedy decoding with finished rows leaving the batch (laffi.inference.decoding) on a tiny random Llama: the
tokens, first-token probabilities and streamed events of transformers' generate(), with fewer rows computed."""

import pytest

import laffi.inference.decoding as decoding
import laffi.inference.kv_cache as kv_cache
from laffi.inference.answerability import FirstToken, abstain_token_ids
from laffi.inference.generation import generate_rows
from laffi.inference.prompts import qa_prompt

PASSAGE = "A city was founded in 1702 near the bridge by fishermen from the coast, and a mill came later."
QUESTIONS = ["When was it founded?", "Who founded it?", "What came later?", "Where is the bridge?", "Why?",
             "What is old?"]


def _run(lm, monkeypatch, fast: bool, **kw):
    """generate_rows on every variant x question, through greedy() (fast) or generate(): texts, probs, events."""
    monkeypatch.setattr(decoding, "supports", (lambda model: True) if fast else (lambda model: False))
    prompts = [qa_prompt(lm.tokenizer, PASSAGE, q) for q in QUESTIONS for _ in lm.variants]
    variants = [v for _ in QUESTIONS for v in lm.variants]
    events, probs = [], [None] * len(prompts)
    first = FirstToken(tuple(abstain_token_ids(lm.tokenizer)), forbid=True)
    texts = generate_rows(lm, prompts, variants, on_event=events.append, first_token=first, first_probs=probs, **kw)
    return texts, probs, [(e.index, e.variant, e.text, e.done) for e in events]


@pytest.mark.parametrize("kw", [dict(max_new_tokens=24, stop_at_newline=True),
                                dict(max_new_tokens=16, stop_at_newline=False, min_new_tokens=5),
                                dict(max_new_tokens=20, stop_at_newline=True, share_prefixes=False)])
def test_greedy_gives_generates_tokens_probabilities_and_events(tiny_lm, monkeypatch, kw):
    ours, plain = _run(tiny_lm, monkeypatch, True, **kw), _run(tiny_lm, monkeypatch, False, **kw)
    assert ours[0] == plain[0]
    assert ours[1] == pytest.approx(plain[1], abs=1e-6) and None not in ours[1]
    assert ours[2] == plain[2]
    assert len(set(ours[0])) > 3  # rows that differ: the comparison can tell


class _StopRowAt:
    """Stops batch row i after `at[i]` new tokens (a transformers StoppingCriteria), whatever it wrote."""

    def __init__(self, prompt_width: int, at: list[int]):
        self.width, self.at = prompt_width, at

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.tensor([input_ids.shape[1] - self.width >= n for n in self.at])


def test_finished_rows_leave_the_batch_with_generates_tokens(tiny_lm, monkeypatch):
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    tok = tiny_lm.tokenizer
    variants = [v for _ in QUESTIONS for v in tiny_lm.variants]
    enc = dict(tok.pad({"input_ids": tok([qa_prompt(tok, PASSAGE, q) for q in QUESTIONS for _ in tiny_lm.variants],
                                         add_special_tokens=False)["input_ids"]}, return_tensors="pt"))
    at = [2 + (i * 7) % 13 for i in range(len(variants))]  # rows stop after 2 to 14 tokens
    stop = type("Stop", (_StopRowAt, StoppingCriteria), {})
    sizes = []
    real = tiny_lm.model.forward
    monkeypatch.setattr(tiny_lm.model, "forward", lambda *a, **kw: sizes.append(kw["input_ids"].shape[0]) or
                        real(*a, **kw))
    width, pad = enc["input_ids"].shape[1], tok.pad_token_id
    with torch.inference_mode():
        ours = decoding.greedy(tiny_lm.model, dict(enc), pad, [tok.eos_token_id], 16, rows=tiny_lm.rows,
                               variants=variants,
                               stopping=[stop(width, at)])
    assert sizes[0] == len(variants) and min(sizes) < len(variants) // 2  # the prefill, then ever fewer rows
    assert sizes == sorted(sizes, reverse=True)
    monkeypatch.setattr(tiny_lm.model, "forward", real)
    with torch.inference_mode(), tiny_lm.rows(variants):
        plain = tiny_lm.model.generate(**enc, max_new_tokens=16, do_sample=False, pad_token_id=pad,
                                       eos_token_id=tok.eos_token_id, stopping_criteria=StoppingCriteriaList([stop(width, at)]))
    assert torch.equal(ours, plain)
    assert [int((row[width:] != pad).sum()) for row in ours] == at  # each row its own length, pads after


def test_a_model_with_its_own_decoding_settings_is_left_to_generate(tiny_lm, monkeypatch):
    assert decoding.supports(tiny_lm.model)
    monkeypatch.setattr(tiny_lm.model.generation_config, "repetition_penalty", 1.3)
    assert not decoding.supports(tiny_lm.model)
    called = []
    real = tiny_lm.model.generate
    monkeypatch.setattr(tiny_lm.model, "generate", lambda **kw: called.append(kw) or real(**kw))
    generate_rows(tiny_lm, [qa_prompt(tiny_lm.tokenizer, PASSAGE, "Why?")], ["sft"], 4)
    assert len(called) == 1


def test_reserved_cache_keeps_dynamic_cache_behaviour():
    import torch
    from transformers import DynamicCache

    torch.manual_seed(0)
    plain, reserved = DynamicCache(), kv_cache.empty_cache(3)
    states = [(torch.randn(4, 2, n, 8), torch.randn(4, 2, n, 8)) for n in (5, 1, 1, 1, 1, 1)]  # past the room
    for k, v in states:
        a, b = plain.update(k, v, 0), reserved.update(k, v, 0)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    layer = reserved.layers[0]
    assert isinstance(layer, kv_cache.ReservedLayer) and layer.owns() and layer.key_buffer.shape[-2] >= 10
    keep = torch.tensor([0, 2])
    plain.batch_select_indices(keep)
    reserved.batch_select_indices(keep)
    assert layer.owns() and layer.keys.shape[0] == 2
    plain.crop(-2)
    reserved.crop(-2)
    k, v = torch.randn(2, 2, 1, 8), torch.randn(2, 2, 1, 8)
    a, b = plain.update(k, v, 0), reserved.update(k, v, 0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and reserved.get_seq_length() == 9
    reserved.layers[0].keys = reserved.layers[0].keys.clone()  # someone else's tensor: the next update starts anew
    reserved.layers[0].values = reserved.layers[0].values.clone()
    a, b = plain.update(k, v, 0), reserved.update(k, v, 0)
    assert torch.equal(a[0], b[0]) and reserved.layers[0].owns()


def test_reserve_turns_a_prefilled_cache_into_reserved_layers():
    import torch
    from transformers import DynamicCache

    cache = DynamicCache()
    k, v = torch.randn(2, 2, 6, 8), torch.randn(2, 2, 6, 8)
    cache.update(k, v, 0)
    kv_cache.reserve(cache, 10)
    layer = cache.layers[0]
    assert isinstance(layer, kv_cache.ReservedLayer) and layer.key_buffer.shape[-2] == 16
    assert torch.equal(layer.keys, k) and torch.equal(layer.values, v)


def test_an_empty_cache_for_a_model_reserves_every_full_attention_layer(tiny_lm):
    cache = kv_cache.empty_cache(7, tiny_lm.model.config)
    layers = tiny_lm.model.config.num_hidden_layers
    assert len(cache.layers) == layers and all(isinstance(x, kv_cache.ReservedLayer) for x in cache.layers)
    assert all(x.spare == 7 for x in cache.layers)
