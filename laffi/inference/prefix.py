"""Shared-prefix prefill: rows of one batch that start with the same tokens under the same variant read them once.

Usage:
    inputs = shared_prefix_inputs(lm, token_ids, row_variants)   # None when no two rows share a prefix
    model.generate(**inputs, ...)   # input_ids, attention_mask, past_key_values: the prefixes already cached
    inputs = reply_inputs(lm, prompts, replies, row_variants)    # teacher forcing: each distinct prompt once

Why: SQuAD asks several questions about each paragraph, and the prompt puts the passage before the question, so
the questions of one paragraph share ~90% of their prompt tokens. On a CPU the prompt's forward pass (prefill)
is compute-bound - every prompt token costs the same whatever the batch - so a batch of 16 questions cost
16 prefills and batching barely helped evaluation. Here the batch's distinct prefixes go through the model once,
their key/value cache is copied to every row that shares them, and generation continues from there.

The result is the same computation: causal attention means a prefix's keys and values do not depend on what
follows it, and a variant's adapter sees the same tokens either way. Rows are laid out as

    [pad .. pad | shared prefix | pad .. pad | row's own suffix]       (attention mask 0 on every pad)

and positions come from the attention mask (transformers counts only unmasked tokens), so each token keeps the
position it has in its own unpadded prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

from laffi.inference.surface import LanguageModel

MIN_SHARED = 16  # a prefix shorter than this is not worth a second forward pass


@dataclass
class _Group:
    variant: str
    rows: list[int]
    prefix: list[int]  # token ids every row of the group starts with (each row keeps >= 1 token of its own)


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _shares(a: list[int], b: list[int], min_shared: int) -> int:
    """Tokens row b may take from a prefix a, or 0: sharing must cover 3/4 of b (a passage does, a common system
    prompt alone does not: joining on it would leave long unshared tails that every row of the batch pads to)
    and `min_shared` tokens, and never all of b (generation needs one token of the row's own)."""
    shared = min(common_prefix(a, b), len(b) - 1)
    return shared if shared >= min_shared and 4 * shared >= 3 * len(b) else 0


def order_rows(ids: list[list[int]], min_shared: int = MIN_SHARED) -> list[int]:
    """Row order for batching: prompts that start alike next to each other (they can share a prefill), and these
    clusters longest first (so each batch holds prompts of similar length and pads little)."""
    order = sorted(range(len(ids)), key=lambda k: ids[k])
    clusters: list[list[int]] = []
    for k in order:
        if clusters and _shares(ids[clusters[-1][0]], ids[k], min_shared):
            clusters[-1].append(k)
        else:
            clusters.append([k])
    clusters.sort(key=lambda c: -max(len(ids[k]) for k in c))  # stable: equal lengths keep their order
    return [k for c in clusters for k in c]


def mask_positions(mask):
    """Each token's position from the attention mask, as generate() numbers left-padded rows (pads count 0)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def plan_groups(ids: list[list[int]], variants: list[str], min_shared: int = MIN_SHARED,
                singles: bool = False) -> list[_Group] | None:
    """Group rows by variant and shared prefix, greedily in row order (see order_rows): a row joins its variant's
    last group when it shares enough with it (_shares). None when no group has two rows, unless `singles` (a
    prefix cache may hold a lone row's start, or keep it for the next call)."""
    groups: list[_Group] = []
    open_groups: dict[str, _Group] = {}  # the last group of each variant: the only one a row may join
    for i, (row, variant) in enumerate(zip(ids, variants)):
        g = open_groups.get(variant)
        if g is not None:
            shared = _shares(g.prefix, row, min_shared)
            if shared:
                g.prefix = g.prefix[:shared]
                g.rows.append(i)
                continue
        g = _Group(variant, [i], row[:-1])
        groups.append(g)
        open_groups[variant] = g
    if not singles and not any(len(g.rows) > 1 for g in groups):
        return None
    return groups


def shared_prefix_inputs(lm: LanguageModel, ids: list[list[int]], variants: list[str],
                         min_shared: int = MIN_SHARED, own: list[int] | None = None) -> dict | None:
    """generate() inputs for these rows with every shared prefix computed once; None if nothing is shared.
    Where the batch's adapters all leave the lowest layers alone (LoRA on the upper layers only), a prefix is read
    through those layers once for every variant (split_prefill), and only the upper layers once per variant.
    own: per row, how many of its last tokens stay out of any shared prefix (teacher forcing scores them, so it
    needs their logits and the one before them: candidate replies to one prompt share the prompt, never a reply)."""
    import torch

    plan = ids if own is None else [row[:max(1, len(row) - n)] for row, n in zip(ids, own)]
    lower = lm.untouched_layers(variants) if len(set(variants)) > 1 else 0
    prefixes = plan_groups(plan, [""] * len(ids), min_shared) if lower else None  # shared across variants
    if prefixes is not None:
        groups, owner = [], []
        for p, shared in enumerate(prefixes):
            for v in dict.fromkeys(variants[i] for i in shared.rows):
                groups.append(_Group(v, [i for i in shared.rows if variants[i] == v], shared.prefix))
                owner.append(p)
    kept = None if prefixes is not None else lm.prefix_cache  # laffi.inference.prefix_cache: earlier calls
    if prefixes is None:
        groups = plan_groups(plan, variants, min_shared, singles=kept is not None)
        if groups is None or any(not g.prefix for g in groups):
            return None
        if kept is not None:
            prefix_ids, prefix_mask, cache = cached_prefill(lm, kept, groups)  # cache None: no sharing (below)
    pad = lm.tokenizer.pad  # the tokenizer pads on the left (models.load_base)
    if kept is None:  # every prefix read here, in one left-padded batch
        distinct = prefixes if prefixes is not None else groups
        prefix = pad({"input_ids": [g.prefix for g in distinct]}, return_tensors="pt").to(lm.device)
        prefix_ids, prefix_mask = prefix["input_ids"], prefix["attention_mask"]
        positions = mask_positions(prefix_mask)
        if prefixes is not None:
            owner_t = torch.tensor(owner, device=lm.device)
            cache = split_prefill(lm, prefix_ids, prefix_mask, positions, owner_t, [g.variant for g in groups],
                                  lower)
            prefix_ids, prefix_mask = prefix_ids[owner_t], prefix_mask[owner_t]
        else:
            cache = _prefill(lm, prefix_ids, prefix_mask, positions, [g.variant for g in groups])
    if cache is None or not hasattr(cache, "batch_select_indices"):  # rows can't be given this cache: no sharing
        return None

    group_of = [0] * len(ids)
    for k, g in enumerate(groups):
        for i in g.rows:
            group_of[i] = k
    cache.batch_select_indices(torch.tensor(group_of, device=lm.device))
    suffix = pad({"input_ids": [ids[i][len(groups[group_of[i]].prefix):] for i in range(len(ids))]},
                 return_tensors="pt").to(lm.device)
    return {
        "input_ids": torch.cat([prefix_ids[group_of], suffix["input_ids"]], dim=1),
        "attention_mask": torch.cat([prefix_mask[group_of], suffix["attention_mask"]], dim=1),
        "past_key_values": cache,
    }


def reply_inputs(lm: LanguageModel, prompts: list[list[int]], replies: list[list[int]],
                 variants: list[str]) -> dict | None:
    """Inputs for scoring replies teacher-forced after prompts, where several rows share a whole prompt under one
    variant and the batch holds more than one prompt per variant (a room's questions on one passage, each with
    its candidates): each distinct prompt but its last token is read once (its passage once again through
    shared_prefix_inputs), that cache is copied to the prompt's rows, and the rows go on with the prompt's last
    token and the reply. None where that is not the case: shared_prefix_inputs(own=...) then shares the one
    prompt per variant (a lone question's candidates) or the passage.

    Why (profiled: 20 questions on one passage, 3 candidates each, bfloat16): with only the passage shared,
    every candidate read its question again and the batch padded to the longest question plus reply, 2,700
    tokens through the model for ~1,000 distinct ones."""
    import torch

    keys = [(v, tuple(p[:-1])) for p, v in zip(prompts, variants)]
    index = {key: i for i, key in enumerate(dict.fromkeys(keys))}  # each distinct (variant, prompt head), in order
    heads = list(index)
    if len(heads) == len(prompts) or len(heads) == len(set(variants)) or any(len(p) < 2 for p in prompts):
        return None
    which = torch.tensor([index[key] for key in keys], device=lm.device)
    head_ids, head_variants = [list(h) for _, h in heads], [v for v, _ in heads]
    enc = shared_prefix_inputs(lm, head_ids, head_variants)
    if enc is None:  # nothing shared among the prompts themselves: one left-padded batch of them
        enc = dict(lm.tokenizer.pad({"input_ids": head_ids}, return_tensors="pt").to(lm.device))
    cache = enc.get("past_key_values")
    done = cache.get_seq_length() if cache is not None else 0
    try:
        with torch.inference_mode(), lm.rows(head_variants):
            cache = lm.model(input_ids=enc["input_ids"][:, done:], attention_mask=enc["attention_mask"],
                             position_ids=mask_positions(enc["attention_mask"])[:, done:], past_key_values=cache,
                             use_cache=True, logits_to_keep=1).past_key_values
    except TypeError:  # a forward without logits_to_keep (older remote code): the one-level path
        return None
    if not hasattr(cache, "batch_select_indices"):
        return None
    cache.batch_select_indices(which)
    tails = lm.tokenizer.pad({"input_ids": [p[-1:] + r for p, r in zip(prompts, replies)]},
                             return_tensors="pt").to(lm.device)
    return {"input_ids": torch.cat([enc["input_ids"][which], tails["input_ids"]], dim=1),
            "attention_mask": torch.cat([enc["attention_mask"][which], tails["attention_mask"]], dim=1),
            "past_key_values": cache}


def _prefill(lm, prefix_ids, prefix_mask, positions, variants):
    """Every group's prefix through the whole model under its own variant; its key/value cache (None if the model
    can't be asked for it this way)."""
    import torch

    try:
        with torch.inference_mode(), lm.rows(variants):
            return lm.model(input_ids=prefix_ids, attention_mask=prefix_mask, position_ids=positions,
                            use_cache=True, logits_to_keep=1).past_key_values
    except TypeError:  # a model whose forward lacks logits_to_keep (older remote code): no sharing, same answers
        return None


def cached_prefill(lm: LanguageModel, kept, groups: list[_Group]):
    """(prefix_ids, prefix_mask, cache) for the groups' prefixes, reusing what `kept` (a PrefixCache) holds of
    each under its variant and computing only the rest, which is then kept too. Row g is laid out as

        [pad .. | its cached start | pad .. | the rest of its prefix]        (mask 0 on every pad)

    so positions (from the mask) are each token's own, and the rest is read in one forward pass over the cached
    keys and values: the same numbers as reading the whole prefix, to rounding."""
    import torch
    from transformers import DynamicCache

    hits = [kept.lookup(g.variant, g.prefix) for g in groups]
    done = [n for n, _ in hits]
    rest = [len(g.prefix) - n for g, n in zip(groups, done)]
    width_done, width_rest = max(done), max(rest)
    ids = torch.full((len(groups), width_done + width_rest), lm.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, (g, n, r) in enumerate(zip(groups, done, rest)):
        ids[b, width_done - n:width_done] = torch.tensor(g.prefix[:n], dtype=torch.long)
        ids[b, ids.shape[1] - r:] = torch.tensor(g.prefix[n:], dtype=torch.long)
        mask[b, width_done - n:width_done] = 1
        mask[b, ids.shape[1] - r:] = 1
    ids, mask = ids.to(lm.device), mask.to(lm.device)
    positions = mask_positions(mask)
    cache = None
    if width_done:  # the cached starts, right-aligned in the first width_done columns (zeros under pads)
        sample = next(kv for n, kv in hits if n)
        layers = []
        for layer, (k0, v0) in enumerate(sample):
            k = k0.new_zeros((len(groups), k0.shape[0], width_done, k0.shape[-1]))
            v = v0.new_zeros((len(groups), v0.shape[0], width_done, v0.shape[-1]))
            for b, (n, kv) in enumerate(hits):
                if n:
                    k[b, :, width_done - n:], v[b, :, width_done - n:] = kv[layer]
            layers.append((k, v))
        cache = DynamicCache(ddp_cache_data=layers)
    if width_rest:
        variants = [g.variant for g in groups]
        try:
            with torch.inference_mode(), lm.rows(variants):
                cache = lm.model(input_ids=ids[:, width_done:], attention_mask=mask,
                                 position_ids=positions[:, width_done:], past_key_values=cache, use_cache=True,
                                 logits_to_keep=1).past_key_values
        except TypeError:  # a forward without logits_to_keep (older remote code): no sharing, same answers
            return ids, mask, None
        for b, (g, r) in enumerate(zip(groups, rest)):
            if r:  # keep the whole prefix, its pads left out
                real = mask[b].bool()
                kept.store(g.variant, g.prefix, [(k[b][:, real], v[b][:, real]) for k, v, *_ in list(cache)])
    return ids, mask, cache


def _decoder(lm):
    """The decoder stack (embeddings, `layers`, norm) of a Llama-style model, under PEFT or not; None otherwise."""
    import torch

    core = lm.model.get_base_model() if hasattr(lm.model, "get_base_model") else lm.model
    decoder = getattr(core, "model", None)
    return decoder if isinstance(getattr(decoder, "layers", None), torch.nn.ModuleList) else None


def split_prefill(lm: LanguageModel, prefix_ids, prefix_mask, positions, owner, variants: list[str], lower: int):
    """Key/value cache of each group's prefix, read through the lowest `lower` layers ONCE per distinct prefix
    (rows of prefix_ids) and through the rest once per group (owner[g]: its prefix, variants[g]: its adapter).

    Exact: no adapter of these variants touches layers < lower, so their keys, values and the hidden state leaving
    them are the same for every variant; the upper layers then run as they would have. None for models whose
    decoder is not a plain list of layers."""
    import torch
    from transformers import DynamicCache

    decoder = _decoder(lm)
    if decoder is None:
        return None
    layers, captured = decoder.layers, {}
    hook = layers[lower - 1].register_forward_hook(lambda module, args, out: captured.update(hidden=out))
    try:  # run a slice of the layer list through the model's own forward (masks, rotary, cache as usual)
        with torch.inference_mode():
            decoder.layers = torch.nn.ModuleList(layers[:lower])
            low = decoder(input_ids=prefix_ids, attention_mask=prefix_mask, position_ids=positions, use_cache=True)
            hidden = captured["hidden"]  # before the final norm: the residual stream entering layer `lower`
            hidden = (hidden[0] if isinstance(hidden, tuple) else hidden)[owner]
            decoder.layers = torch.nn.ModuleList(layers[lower:])
            with lm.rows(variants):
                high = decoder(inputs_embeds=hidden, attention_mask=prefix_mask[owner], position_ids=positions[owner],
                               past_key_values=DynamicCache(config=decoder.config), use_cache=True)
    finally:
        decoder.layers = layers
        hook.remove()
    below = [(k[owner], v[owner]) for k, v, *_ in list(low.past_key_values)[:lower]]
    above = [(k, v) for k, v, *_ in list(high.past_key_values)[lower:]]
    return DynamicCache(ddp_cache_data=below + above)
