"""Shared-prefix packing for training: a passage is computed once for all the examples that ask about it.

Usage:
    rows = tokenize_rows(training_rows(records, "sft", tok), tok)    # input_ids, n_prompt, n_tokens per row
    seqs = pack_rows(rows, examples_per_seq=8, seed=0)                # [{input_ids, position_ids, labels, segments}]
    batch = PackedCollator(pad_token_id=tok.pad_token_id)(seqs[:1])   # + a 4D attention mask

Why: SQuAD asks ~10 questions per paragraph and every prompt starts with the same instructions and passage
(~250 of its ~280 tokens). Trained one example at a time, a CPU spends ~90% of each step re-reading passages.
Here the examples of one training step are laid out as trees in one sequence:

    [prefix A | suffix A1 | suffix A2 | ... | prefix B | suffix B1 | ...]

where a prefix is the tokens its examples share (instructions + passage) and a suffix is the rest of one example's
prompt plus its completion. Token t of suffix A2 attends to prefix A and to A2's tokens up to t - exactly what it
attends to in the example alone - and keeps the position id it has there. So every logit is the one of the
separate example (up to float summation order), the loss is the same token mean, and the gradient reaching the
prefix is the sum over its suffixes, as with separate copies. Only completion tokens are labels, and the first
token of a suffix never is, so the model's shifted next-token loss never crosses from one suffix into the next.
The attention mask is dense (L x L), which costs ~10-20% at these lengths; the tokens saved are 3-5x.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from trl.trainer.sft_trainer import DataCollatorForLanguageModeling


def tokenize_rows(rows: list[dict], tokenizer) -> list[dict]:
    """Prompt and completion token ids of each row, tokenized once: input_ids = prompt + completion, n_prompt,
    n_tokens. The prompt ends at the assistant turn's newline, so the two halves tokenize as the whole text does."""
    prompts = tokenizer([r["prompt"] for r in rows], add_special_tokens=False)["input_ids"]
    completions = tokenizer([r["completion"] for r in rows], add_special_tokens=False)["input_ids"]
    return [dict(r, input_ids=p + c, n_prompt=len(p), n_tokens=len(p) + len(c))
            for r, p, c in zip(rows, prompts, completions)]


def _common_prefix(rows: list[dict]) -> int:
    """Tokens all rows share at the start, leaving each row at least one prompt token of its own."""
    first = rows[0]["input_ids"]
    n = min(r["n_prompt"] for r in rows) - 1
    for r in rows[1:]:
        ids = r["input_ids"]
        i = 0
        while i < n and ids[i] == first[i]:
            i += 1
        n = i
    return max(n, 0)


def _sequence(chunks: list[list[dict]], with_tasks: bool = False) -> dict:
    """One packed sequence from chunks of rows; each chunk shares one prefix. segments: 0 for prefix tokens, k for
    suffix k; groups: which chunk a token belongs to (positions restart per chunk); with_tasks: tasks, the row's
    "task" id on its tokens and -1 on shared prefixes (laffi.training.task_loss)."""
    input_ids, position_ids, labels, segments, groups, tasks = [], [], [], [], [], []
    suffix_id = 0
    for g, rows in enumerate(chunks):
        shared = _common_prefix(rows) if len(rows) > 1 else 0
        prefix = rows[0]["input_ids"][:shared]
        input_ids += prefix
        position_ids += list(range(shared))
        labels += [-100] * shared
        segments += [0] * shared
        groups += [g] * shared
        tasks += [-1] * shared
        for r in rows:
            suffix_id += 1
            own = r["input_ids"][shared:]
            input_ids += own
            position_ids += list(range(shared, r["n_tokens"]))
            labels += [tok if shared + j >= r["n_prompt"] else -100 for j, tok in enumerate(own)]
            segments += [suffix_id] * len(own)
            groups += [g] * len(own)
            tasks += [r.get("task", -1)] * len(own)
    out = {"input_ids": input_ids, "position_ids": position_ids, "labels": labels, "segments": segments,
           "groups": groups, "n_examples": sum(len(c) for c in chunks)}
    if with_tasks:
        out["tasks"] = tasks
    return out


def pack_rows(rows: list[dict], examples_per_seq: int, seed: int = 0, key: str = "group",
              by_task: bool = False) -> list[dict]:
    """Sequences of `examples_per_seq` rows each (the last may hold fewer). Rows with the same `key` (the passage
    and prompt kind) go together, so each sequence holds few prefixes; passages and rows come in seeded order.
    by_task: a passage's rows stay together first, each kind of prompt in turn - its SFT and LaFFi rows share
    steps, as per-task loss averaging needs - and each sequence says which task each token is (tasks)."""
    outer = "passage" if by_task else key
    by_key: dict[str, list[dict]] = {}
    for r in rows:
        by_key.setdefault(r[outer], []).append(r)
    rng = random.Random(seed)
    keys = list(by_key)
    rng.shuffle(keys)
    ordered = []
    for k in keys:
        members = by_key[k]
        rng.shuffle(members)
        if by_task:  # the prompt kinds in turn, so that every slice of the block holds both
            kinds: dict[str, list[dict]] = {}
            for r in members:
                kinds.setdefault(r[key], []).append(r)
            members = [r for turn in itertools.zip_longest(*kinds.values()) for r in turn if r is not None]
        ordered += members
    seqs = []
    for start in range(0, len(ordered), examples_per_seq):
        batch = ordered[start:start + examples_per_seq]
        if by_task:  # within the step, each kind's rows together: they share their prompt prefix
            batch = sorted(batch, key=lambda r: r[key])
        chunks: list[list[dict]] = []
        for r in batch:
            if chunks and chunks[-1][0][key] == r[key]:
                chunks[-1].append(r)
            else:
                chunks.append([r])
        seqs.append(_sequence(chunks, by_task))
    return seqs


def tree_mask(segments, groups, dtype):
    """The additive 4D attention mask [B, 1, L, L] of packed sequences (see the module docstring); padding (group
    -1) attends only to itself, so no row of the softmax is empty."""
    import torch

    seg, grp = segments[:, :, None], groups[:, :, None]
    seg_k, grp_k = segments[:, None, :], groups[:, None, :]
    length = segments.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=segments.device).tril()
    allowed = causal & (grp == grp_k) & ((seg_k == 0) | (seg_k == seg)) & (grp >= 0)
    allowed |= torch.eye(length, dtype=torch.bool, device=segments.device)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=segments.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


@dataclass
class PackedCollator(DataCollatorForLanguageModeling):
    """TRL's collator (padding input_ids and labels on the right) plus position ids and the tree attention mask."""

    mask_dtype: object = None

    def torch_call(self, examples: list[dict]) -> dict:
        import torch
        from trl.trainer.utils import pad

        out = super().torch_call([{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples])
        def padded(key, value):
            return pad([torch.tensor(e[key]) for e in examples], padding_value=value, padding_side="right")

        segments, groups = padded("segments", -1), padded("groups", -1)
        out["position_ids"] = padded("position_ids", 0)
        out["attention_mask"] = tree_mask(segments, groups, self.mask_dtype or torch.float32)
        if all("tasks" in e for e in examples):  # per-task loss averaging (laffi.training.task_loss)
            out["task_ids"] = padded("tasks", -1)
        return out
