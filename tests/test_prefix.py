"""Shared-prefix prefill (laffi.inference.prefix): questions on one passage read it once, with the same results."""

import pytest

from laffi.inference.generation import GenerationConfig, generate_batched, generate_rows
from laffi.inference.prefix import order_rows, plan_groups, shared_prefix_inputs
from laffi.inference.prompts import qa_prompt

PASSAGE_A = "In 1702 fishermen founded a city on the northern coast near the old bridge. The river is long."
PASSAGE_B = "The passage says the answer is here, and the bridge is old."
QUESTIONS = ["Who founded the city?", "When was it founded?", "What is long?"]

A = list(range(100, 140))  # token-id stand-ins: a 40-token passage, then a question
B = list(range(200, 260))


def test_plan_groups_joins_rows_of_one_variant_and_passage():
    ids = [A + [1, 2], A + [3], B + [4, 5], A + [6, 7, 8]]
    groups = plan_groups(ids, ["sft"] * 4)
    assert [(g.rows, len(g.prefix)) for g in groups] == [([0, 1], 40), ([2], 61), ([3], 42)]


def test_plan_groups_never_mixes_variants_or_shares_a_short_start():
    assert plan_groups([A + [1], A + [2]], ["sft", "laffi"]) is None  # adapters change the prefix's keys/values
    system = list(range(20))  # a common system prompt, then different passages
    assert plan_groups([system + A + [1], system + B + [2]], ["sft", "sft"]) is None


def test_identical_prompts_keep_one_token_of_their_own():
    groups = plan_groups([A, A, A], ["base"] * 3)
    assert len(groups) == 1 and groups[0].rows == [0, 1, 2] and groups[0].prefix == A[:-1]


def test_order_rows_clusters_passages_longest_first():
    ids = [A + [1], B + [2], A + [3, 3], [7] * 30, B + [4]]
    assert order_rows(ids) == [1, 4, 0, 2, 3]


def _prompts(lm):
    return [qa_prompt(lm.tokenizer, p, q) for p in (PASSAGE_A, PASSAGE_B) for q in QUESTIONS]


def test_shared_prefill_gives_the_same_logits_as_a_plain_batch(tiny_lm):
    import torch

    prompts = _prompts(tiny_lm)
    variants = ["sft", "sft", "laffi", "sft", "base", "base"]
    ids = tiny_lm.tokenizer(prompts, add_special_tokens=False)["input_ids"]
    shared = shared_prefix_inputs(tiny_lm, ids, variants)
    assert shared is not None
    assert [g.rows for g in plan_groups(ids, variants)] == [[0, 1], [2], [3], [4, 5]]
    cached = shared["past_key_values"].get_seq_length()
    plain = tiny_lm.tokenizer.pad({"input_ids": ids}, return_tensors="pt")
    with torch.inference_mode(), tiny_lm.rows(variants):
        new = shared["input_ids"][:, cached:]
        mask = shared["attention_mask"]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, cached:]
        got = tiny_lm.model(input_ids=new, attention_mask=mask, position_ids=positions,
                            past_key_values=shared["past_key_values"]).logits[:, -1]
        want = tiny_lm.model(**plain).logits[:, -1]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch_size", [2, 5, 64])
def test_generation_with_shared_prefixes_equals_without(tiny_lm, batch_size):
    prompts = _prompts(tiny_lm)
    rows = [(p, v) for p in prompts for v in tiny_lm.variants]
    on = GenerationConfig(max_new_tokens=10, stop_at_newline=False, batch_size=batch_size)
    off = GenerationConfig(max_new_tokens=10, stop_at_newline=False, batch_size=batch_size, share_prefixes=False)
    shared = generate_batched(tiny_lm, rows, on)
    assert shared == generate_batched(tiny_lm, rows, off)
    assert shared == [generate_rows(tiny_lm, [p], [v], 10, stop_at_newline=False)[0] for p, v in rows]
    assert len(set(shared)) > 3  # the rows do differ, so equality means something


def test_generation_uses_the_shared_prefill(tiny_lm, monkeypatch):
    import laffi.inference.decoding as decoding

    calls = []
    real = decoding.greedy
    monkeypatch.setattr(decoding, "greedy", lambda model, enc, *a, **kw: calls.append(enc) or
                        real(model, enc, *a, **kw))
    generate_rows(tiny_lm, _prompts(tiny_lm), ["sft"] * 6, 3)
    assert calls[0]["past_key_values"].get_seq_length() > 20


@pytest.fixture(scope="module")
def upper_lm(tmp_path_factory):
    """A 4-layer tiny model with two adapters on its two upper layers only (layers_to_transform)."""
    from laffi.inference.models import ModelConfig, load_model
    from laffi.inference.tiny import build_tiny_adapter, build_tiny_model

    root = tmp_path_factory.mktemp("upper")
    base = build_tiny_model(root / "model", layers=4)
    build_tiny_adapter(base, root / "adapters" / "up1", seed=3, layers=[2, 3])
    build_tiny_adapter(base, root / "adapters" / "up2", seed=4, layers=[3])
    return load_model(ModelConfig(base=str(base), adapters_dir=str(root / "adapters"), dtype="float32",
                                  device="cpu"))


def test_upper_layer_adapters_leave_the_lower_layers_to_share(upper_lm, tiny_lm):
    assert upper_lm.untouched_layers(["base", "up1", "up2"]) == 2
    assert upper_lm.untouched_layers(["up2"]) == 3 and upper_lm.untouched_layers(["base"]) == 4
    assert tiny_lm.untouched_layers(["base", "sft"]) == 0  # adapters on every layer: nothing to share


def test_split_prefill_gives_each_variant_the_tokens_it_gives_alone(upper_lm, monkeypatch):
    import laffi.inference.prefix as prefix

    calls = []
    real = prefix.split_prefill
    monkeypatch.setattr(prefix, "split_prefill", lambda *a, **k: calls.append(a[-1]) or real(*a, **k))
    prompts = _prompts(upper_lm)[:3]
    variants = ["base", "up1", "up2"]
    rows = [p for p in prompts for _ in variants]
    mixed = generate_rows(upper_lm, rows, variants * len(prompts), 8, stop_at_newline=False, min_new_tokens=8)
    assert calls == [2]  # the three questions' shared passage went through layers 0-1 once, for all variants
    for v in variants:
        alone = generate_rows(upper_lm, prompts, [v] * len(prompts), 8, stop_at_newline=False, min_new_tokens=8,
                              share_prefixes=False)
        assert [mixed[k * len(variants) + variants.index(v)] for k in range(len(prompts))] == alone, v


def test_own_tokens_stay_out_of_the_shared_prefix(tiny_lm):
    ids = [A + [1, 2, 3], A + [1, 2, 4], A + [1, 5]]  # replies [1,2,3], [1,2,4], [1,5] start alike
    shared = shared_prefix_inputs(tiny_lm, ids, ["sft"] * 3, own=[3, 3, 2])
    assert shared["past_key_values"].get_seq_length() == len(A) - 1  # not into A's last token or any reply
    assert shared_prefix_inputs(tiny_lm, ids, ["sft"] * 3)["past_key_values"].get_seq_length() == len(A) + 1


def test_candidate_ranking_reads_each_prompt_once_with_the_same_scores(tiny_lm, monkeypatch):
    """likelihoods (the rank path) scores a question's candidates with one prefill of its prompt, and the passage
    once for its questions; its scores equal those of whole rows without sharing."""
    from laffi.inference import prefix, selffeedback

    pairs = [(PASSAGE_A, q) for q in QUESTIONS] + [(PASSAGE_B, QUESTIONS[0])]
    cands = {"sft": [["1702", "in 1702", ""], ["fishermen", ""], ["the river", "the river is", ""], ["old", ""]],
             "laffi": [["1702", ""], ["fishermen", "fish", ""], ["river", ""], ["here", ""]]}
    caches = []
    real = prefix.shared_prefix_inputs
    monkeypatch.setattr(prefix, "shared_prefix_inputs",
                        lambda *a, **k: caches.append(real(*a, **k)) or caches[-1])
    for size in (3, 64):
        on = selffeedback.likelihoods(tiny_lm, pairs, cands, GenerationConfig(batch_size=size))
        off = selffeedback.likelihoods(tiny_lm, pairs, cands, GenerationConfig(batch_size=size, share_prefixes=False))
        for v in cands:
            for got, want in zip(on[v], off[v]):
                assert got == pytest.approx(want, abs=1e-5)
    assert caches and all(c is not None for c in caches[-1:])
    assert len({round(s, 3) for per in on["sft"] for s in per}) > 4  # the scores differ, so equality means something


def test_reply_inputs_read_each_prompt_once_only_where_a_batch_has_several(tiny_lm):
    """Teacher forcing a room's candidates: every distinct prompt (but its last token) is read once and copied to
    its candidates' rows; a lone question's candidates keep the one-level path (None)."""
    from laffi.inference.prefix import reply_inputs

    tok = tiny_lm.tokenizer
    prompts = [tok(PASSAGE_A + " " + q, add_special_tokens=False)["input_ids"] for q in QUESTIONS[:2]]
    replies = [[5, 6], [7], [5]]
    rows = [prompts[0], prompts[0], prompts[1]]
    enc = reply_inputs(tiny_lm, rows, replies, ["sft"] * 3)
    assert enc is not None
    assert enc["past_key_values"].get_seq_length() == max(len(p) for p in prompts) - 1
    tails = enc["input_ids"][:, enc["past_key_values"].get_seq_length():]
    assert tails[0].tolist() == [prompts[0][-1], 5, 6] and tails[2].tolist()[-2:] == [prompts[1][-1], 5]
    assert enc["attention_mask"][1].sum() == len(prompts[0]) + 1  # its prompt and its one reply token, no pads
    assert reply_inputs(tiny_lm, [prompts[0]] * 2, replies[:2], ["sft"] * 2) is None  # one prompt: one level
    assert reply_inputs(tiny_lm, prompts, replies[:2], ["sft"] * 2) is None  # no prompt shared by two rows


def test_reply_batches_split_a_room_by_reply_length_only_where_it_pays():
    from laffi.inference.selffeedback import MIN_LENGTH_BATCH, reply_batches

    room = [4, 30, 2] * 20  # each question: its span, the base model's sentence, "no answer"
    short, long_ = reply_batches(room, 64)
    assert sorted(short + long_) == list(range(60)) and all(room[k] == 30 for k in long_) and len(long_) == 20
    assert short == sorted(short)  # a question's candidates stay in row order within a batch
    assert reply_batches([4, 30, 2], 64) == [[0, 1, 2]]  # a lone question: one batch, as before
    assert reply_batches([5] * 40, 64) == [list(range(40))]  # nothing to save
    assert reply_batches(room, 8) == [list(range(s, s + 8)) for s in range(0, 56, 8)] + [[56, 57, 58, 59]]
    assert len(reply_batches([2] * MIN_LENGTH_BATCH + [30] * (MIN_LENGTH_BATCH - 1), 64)) == 1  # a half too small
