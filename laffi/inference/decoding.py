"""Greedy decoding of one batch in which a finished row leaves the batch, instead of riding along as padding.

Usage:
    out = greedy(model, enc, pad_id, eos_ids, max_new_tokens, rows=lm.rows, variants=variants,
                 stopping=[stop], processors=[probe], streamer=streamer)
    out                                # like model.generate(**enc, do_sample=False, ...): prompt + new tokens

Why (measured on 2 cores, bfloat16): a decoding step costs ~45 ms plus ~2.7 ms a row, and transformers'
generate computes every row until the last one stops: in a room's batch of 32 rows the short answers ("1952")
and the long self-feedback share every step until the longest feedback ends. Here each step computes only the
rows still generating; the others are given the pad token, exactly as generate writes them, and their keys and
values are dropped from the cache (kv_cache.ReservedLayer selects them in place) once enough of them are done
for the copy to pay. The rows are independent, so the tokens are generate()'s: tests compare the two.
What generate does and this does not (sampling, beams, repetition penalties, forced tokens) is refused by
`supports`, and such a model is left to generate().
"""

from __future__ import annotations

import contextlib

# generation_config fields that would change greedy decoding; a model that sets one is decoded by generate()
_UNSUPPORTED = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0,
                "bad_words_ids": None, "forced_bos_token_id": None, "forced_eos_token_id": None,
                "suppress_tokens": None, "begin_suppress_tokens": None, "sequence_bias": None,
                "exponential_decay_length_penalty": None, "renormalize_logits": False, "min_length": 0,
                "min_new_tokens": None, "num_beams": 1, "guidance_scale": None, "remove_invalid_values": False,
                "stop_strings": None, "max_time": None}


def supports(model) -> bool:
    """Whether greedy() decodes this model as generate(do_sample=False) would: no generation setting of its own
    that changes the chosen tokens, and a plain decoder (no encoder)."""
    config = getattr(model, "generation_config", None)
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        return False
    return config is None or all(getattr(config, k, v) in (v, None) for k, v in _UNSUPPORTED.items())


def greedy(model, enc: dict, pad_id: int, eos_ids: list[int], max_new_tokens: int, min_new_tokens: int = 0,
           rows=None, variants: list[str] | None = None, stopping=(), processors=(), streamer=None):
    """Greedy continuation of enc (input_ids, attention_mask and, optionally, past_key_values holding a prefix of
    every row) for at most max_new_tokens; the prompt plus every row's new tokens, pad after a row has stopped.
    rows(variants) -> a context manager giving batch row i the variant variants[i] (laffi.inference.models
    rows); it is entered again for the rows left after finished ones leave. stopping: callables(input_ids,
    scores) -> per-row bool (transformers StoppingCriteria; scores is None, as generate passes it unless asked
    for them); processors: callables(input_ids, scores) -> scores, given the rows still generating; streamer:
    put(tokens) after every step, prompt first, then end()."""
    import torch

    from laffi.inference.prefix import mask_positions

    ids, mask = enc["input_ids"], enc["attention_mask"]
    cache = enc.get("past_key_values")
    batch, device = ids.shape[0], ids.device
    eos = torch.tensor(sorted(set(eos_ids)), dtype=torch.long, device=device)
    pad = torch.tensor(pad_id, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    live = torch.arange(batch, device=device)  # the batch rows the model still computes, in order
    variants = list(variants) if variants is not None else None
    if streamer is not None:
        streamer.put(ids)
    past = cache.get_seq_length() if cache is not None else 0
    step_ids, step_mask, step_pos = ids[:, past:], mask, mask_positions(mask)[:, past:]
    out, last_only = ids, {"logits_to_keep": 1}  # only the last position's logits: the prefill's are not needed
    with contextlib.ExitStack() as turn:
        if rows is not None:
            turn.enter_context(rows(variants))
        for step in range(max_new_tokens):
            inputs = dict(input_ids=step_ids, attention_mask=step_mask, position_ids=step_pos,
                          past_key_values=cache, use_cache=True)
            try:
                result = model(**inputs, **last_only)
            except TypeError as refused:  # refused at the call, before any layer wrote to the cache
                if not last_only or step or "logits_to_keep" not in str(refused):
                    raise
                last_only = {}  # a forward without logits_to_keep (older remote code): every position's logits
                result = model(**inputs)
            cache = result.past_key_values
            scores = result.logits[:, -1].to(dtype=torch.float32)
            if step < min_new_tokens and len(eos):
                scores[:, eos] = float("-inf")
            for process in processors:
                scores = process(out[live], scores)
            chosen = torch.full((batch,), pad_id, dtype=torch.long, device=device)
            chosen[live] = torch.argmax(scores, dim=-1)
            chosen = torch.where(done, pad, chosen)
            out = torch.cat([out, chosen[:, None]], dim=-1)
            if streamer is not None:
                streamer.put(chosen)
            stopped = torch.isin(chosen, eos) if len(eos) else torch.zeros_like(done)
            for criterion in stopping:
                stopped |= criterion(out, None)
            done |= stopped
            mask = torch.cat([mask, torch.ones((batch, 1), dtype=mask.dtype, device=device)], dim=-1)
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            finished_live = done[live]
            if int(finished_live.sum()) * 4 >= len(live):  # a quarter of the rows done: the copy pays
                staying = (~finished_live).nonzero().flatten()
                cache.batch_select_indices(staying)
                live = live[staying]
                if rows is not None:
                    turn.close()
                    turn.enter_context(rows([variants[i] for i in live.tolist()]))
            step_ids = chosen[live][:, None]
            step_mask = mask[live]
            step_pos = step_mask.long().sum(-1, keepdim=True) - 1
    if streamer is not None:
        streamer.end()
    return out
