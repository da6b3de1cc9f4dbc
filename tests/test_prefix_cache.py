"""Prefixes kept across calls (laffi.inference.prefix_cache): a later prompt on the same passage computes only its
own tail, with the answers it gets without the cache."""

import pytest

from laffi.inference.generation import GenerationConfig, answer_questions, generate_batched
from laffi.inference.prefix_cache import PrefixCache
from laffi.inference.prompts import qa_prompt

PASSAGE = ("In 1702 fishermen founded a city on the northern coast near the old bridge. The river is long, and the "
           "lighthouse on the cliff was built in 1952 by the harbour board.")
OTHER = "The passage says the answer is here, and the bridge is old and made of grey stone."
QUESTIONS = ["Who founded the city?", "When was the lighthouse built?", "What is long?", "Where is the bridge?"]


def _kv(n: int, fill: float = 0.0, layers: int = 2):
    import torch

    return [(torch.full((1, n, 4), fill + i), torch.full((1, n, 4), -fill - i)) for i in range(layers)]


def test_lookup_finds_the_longest_start_of_the_variant_only():
    cache = PrefixCache(max_bytes=2**20, min_tokens=4)
    cache.store("sft", list(range(20)), _kv(20, 1.0))
    cache.store("sft", list(range(100, 130)), _kv(30, 2.0))
    n, kv = cache.lookup("sft", list(range(12)) + [999])
    assert n == 12 and kv[0][0].shape == (1, 12, 4) and float(kv[1][0][0, 0, 0]) == 2.0  # layer 1 of entry 1
    assert cache.lookup("laffi", list(range(20))) == (0, None)  # another adapter's keys differ
    assert cache.lookup("sft", [0, 1, 2, 777]) == (0, None)  # 3 shared tokens: below min_tokens
    assert cache.stats()["hits"] == 1 and cache.stats()["misses"] == 2


def test_store_keeps_what_questions_on_one_passage_share():
    cache = PrefixCache(max_bytes=2**20, min_tokens=4)
    passage = list(range(40))
    cache.store("sft", passage + [1, 2], _kv(42))
    cache.store("sft", passage + [3, 4], _kv(42))  # another question: the two are cut back to the passage
    assert len(cache) == 1 and cache.lookup("sft", passage + [5])[0] == 40
    cache.store("sft", passage[:30], _kv(30))  # covered already: nothing new
    assert len(cache) == 1
    cache.store("sft", passage + list(range(50, 90)), _kv(80))  # extends the entry: replaces it
    assert len(cache) == 1 and cache.lookup("sft", passage + list(range(50, 60)))[0] == 50
    cache.store("sft", list(range(200, 240)), _kv(40))  # another passage: an entry of its own
    assert len(cache) == 2


def test_least_recently_used_entries_go_past_the_budget():
    one = sum(k.numel() * 4 * 2 for k, _ in _kv(40))
    cache = PrefixCache(max_bytes=2 * one, min_tokens=4)
    a, b, c = (list(range(s, s + 40)) for s in (0, 1000, 2000))
    cache.store("sft", a, _kv(40))
    cache.store("sft", b, _kv(40))
    cache.lookup("sft", a)  # a is used again: b is now the oldest
    cache.store("sft", c, _kv(40))
    assert cache.nbytes <= 2 * one and len(cache) == 2
    assert cache.lookup("sft", b)[0] == 0 and cache.lookup("sft", a)[0] == 40 and cache.lookup("sft", c)[0] == 40
    cache.forget("sft")
    assert len(cache) == 0 and cache.nbytes == 0


def _rows(lm, questions, passage=PASSAGE):
    return [(qa_prompt(lm.tokenizer, passage, q), v) for q in questions for v in lm.variants]


def test_later_calls_on_one_passage_reuse_it_with_the_same_tokens(tiny_lm, monkeypatch):
    cache = tiny_lm.prefix_cache
    assert cache is not None  # on by default (ModelConfig.prefix_cache_mb)
    cache.forget()
    cfg = GenerationConfig(max_new_tokens=10, stop_at_newline=False, batch_size=3)
    first = generate_batched(tiny_lm, _rows(tiny_lm, QUESTIONS[:2]), cfg)
    assert len(cache) >= len(tiny_lm.variants)  # the passage, once per variant
    saved = cache.stats()["tokens_saved"]
    later = generate_batched(tiny_lm, _rows(tiny_lm, QUESTIONS[2:]) + _rows(tiny_lm, QUESTIONS[:1], OTHER), cfg)
    passage_tokens = len(tiny_lm.tokenizer(PASSAGE)["input_ids"])
    assert cache.stats()["tokens_saved"] - saved >= 2 * len(tiny_lm.variants) * passage_tokens
    monkeypatch.setattr(tiny_lm, "prefix_cache", None)
    assert first == generate_batched(tiny_lm, _rows(tiny_lm, QUESTIONS[:2]), cfg)
    assert later == generate_batched(tiny_lm, _rows(tiny_lm, QUESTIONS[2:]) + _rows(tiny_lm, QUESTIONS[:1], OTHER),
                                     cfg)
    assert len(set(later)) > 3  # the rows differ, so equality means something


def test_a_lone_ask_on_a_kept_passage_answers_as_without(tiny_lm, monkeypatch):
    tiny_lm.prefix_cache.forget()
    pairs = [(PASSAGE, QUESTIONS[1])]
    warm = answer_questions(tiny_lm, [(PASSAGE, QUESTIONS[0])], tiny_lm.variants)  # another question keeps it
    assert warm and len(tiny_lm.prefix_cache) > 0
    hits = tiny_lm.prefix_cache.stats()["hits"]
    kept = answer_questions(tiny_lm, pairs, tiny_lm.variants)
    assert tiny_lm.prefix_cache.stats()["hits"] >= hits + len(tiny_lm.variants)
    monkeypatch.setattr(tiny_lm, "prefix_cache", None)
    plain = answer_questions(tiny_lm, pairs, tiny_lm.variants)
    for v in tiny_lm.variants:
        assert kept[v][0].raw == plain[v][0].raw
        assert kept[v][0].na_prob == pytest.approx(plain[v][0].na_prob, abs=1e-5)


def test_re_attaching_an_adapter_forgets_its_prefixes(tiny_dir, tiny_adapters):
    from laffi.inference.models import ModelConfig, load_model

    lm = load_model(ModelConfig(base=str(tiny_dir), adapters_dir=str(tiny_adapters), dtype="float32"))
    generate_batched(lm, _rows(lm, QUESTIONS[:2]), GenerationConfig(max_new_tokens=2))
    kept = lm.prefix_cache.variants()
    assert {"sft", "base"} <= kept
    lm.model.delete_adapter("sft")  # as the app does when a folder was trained again with 'Replace'
    del lm.adapters["sft"]
    assert lm.refresh_adapters() == ["sft"]
    assert lm.prefix_cache.variants() == kept - {"sft"}


def test_the_cache_can_be_turned_off(tiny_dir, tiny_adapters):
    from laffi.errors import LaffiError
    from laffi.inference.models import ModelConfig, load_model

    assert load_model(ModelConfig(base=str(tiny_dir), adapters_dir=None, prefix_cache_mb=0)).prefix_cache is None
    with pytest.raises(LaffiError, match="prefix_cache_mb"):
        ModelConfig(prefix_cache_mb=-1)


def test_a_model_that_cannot_share_a_prefill_answers_without_it(tiny_lm, monkeypatch):
    """A forward without logits_to_keep (older remote code) refuses the prefix path: generation falls back to a
    plain batch, with the same tokens, instead of failing."""
    from laffi.inference.prefix import shared_prefix_inputs

    tiny_lm.prefix_cache.forget()
    rows = _rows(tiny_lm, QUESTIONS[:2])
    cfg = GenerationConfig(max_new_tokens=6, stop_at_newline=False)
    want = generate_batched(tiny_lm, rows, cfg)
    tiny_lm.prefix_cache.forget()
    real = tiny_lm.model.forward

    def old_forward(*args, **kwargs):
        if "logits_to_keep" in kwargs:
            raise TypeError("forward() got an unexpected keyword argument 'logits_to_keep'")
        return real(*args, **kwargs)

    monkeypatch.setattr(tiny_lm.model, "forward", old_forward)
    ids = tiny_lm.tokenizer([p for p, _ in rows], add_special_tokens=False)["input_ids"]
    assert shared_prefix_inputs(tiny_lm, ids, [v for _, v in rows]) is None
    assert generate_batched(tiny_lm, rows, cfg) == want
