"""Greedy generation for several variants at once: one mixed-adapter batch instead of one pass per adapter.

Usage:
    answers = answer_questions(lm, [(context, question)], ["base", "sft", "laffi"], GenerationConfig())
    answers["sft"][0].text      # extracted span ("" = no answer); .raw is the model's full reply

Every row of a batch carries its own adapter, so base + N adapters share the base model's weights and each
forward pass: decoding a few rows costs little more than one (on a GPU, or a CPU with laffi.kernels' oneDNN layers).
The adapters are applied stacked (laffi.multilora: two small matmuls per layer, not four kernels per adapter);
adapters that can't be stacked (DoRA, bitsandbytes layers) get one batch per variant instead. The questions of
one passage go into one batch and read the passage once (laffi.prefix); the variants of one question sit together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from laffi.errors import LaffiError
from laffi.prefix import order_rows, shared_prefix_inputs
from laffi.prompts import extract_answer, qa_prompt


@dataclass
class GenerationConfig:
    """How answers are generated (greedy, so results are reproducible)."""

    max_new_tokens: int = field(default=32, metadata={"help": "Most tokens generated per answer."})
    batch_size: int | None = field(default=None, metadata={
        "help": "Rows (question x variant) per forward pass; None: 16 on a GPU, 8 on a CPU (measured on 2 cores: "
                "8 beat 4 and 16 on sampled questions and matched 16 on whole passages; see the bench)."})
    stop_at_newline: bool = field(
        default=True, metadata={"help": "Stop a row at the end of its first line (the answer); saves decoding."}
    )
    share_prefixes: bool = field(default=True, metadata={
        "help": "Rows of one batch and variant whose prompts start alike (questions on one passage) compute that "
                "start once (laffi.prefix); the same maths, a fraction of the prefill."})

    def __post_init__(self):
        if not 1 <= self.max_new_tokens <= 1024:
            raise LaffiError(f"GenerationConfig.max_new_tokens must be between 1 and 1024, not {self.max_new_tokens}.")
        if self.batch_size is not None and self.batch_size < 1:
            raise LaffiError(f"GenerationConfig.batch_size must be at least 1, not {self.batch_size}.")


@dataclass
class Answer:
    text: str  # the extracted answer span; "" means "no answer"
    raw: str  # what the model generated, special tokens removed


def _line_token_sets(tokenizer):
    """Token ids that contain a newline / visible text / visible text *then* a newline (once per tokenizer)."""
    cached = getattr(tokenizer, "_laffi_line_tokens", None)
    if cached is None:
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        texts = [tokenizer.convert_tokens_to_string([p]) if p is not None else "" for p in pieces]
        newline = [i for i, t in enumerate(texts) if "\n" in t]
        visible = [i for i, t in enumerate(texts) if t.strip()]
        ends_line = [i for i, t in enumerate(texts) if "\n" in t and t.split("\n", 1)[0].strip()]
        cached = (newline, visible, ends_line)
        tokenizer._laffi_line_tokens = cached
    return cached


class _StopAfterFirstLine:
    """Per-row stop once a row has written some text and then a newline (transformers StoppingCriteria API)."""

    def __init__(self, tokenizer, device):
        import torch

        self.newline, self.visible, self.ends_line = (
            torch.tensor(ids, device=device, dtype=torch.long) for ids in _line_token_sets(tokenizer)
        )
        self.seen_text = None

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        last = input_ids[:, -1]  # called once per step, after the new token was appended
        if self.seen_text is None:
            self.seen_text = torch.zeros_like(last, dtype=torch.bool)
        done = (torch.isin(last, self.newline) & self.seen_text) | torch.isin(last, self.ends_line)
        self.seen_text |= torch.isin(last, self.visible)
        return done


def generate_rows(lm, prompts: list[str], variants: list[str], max_new_tokens: int,
                  stop_at_newline: bool = True, min_new_tokens: int = 0, share_prefixes: bool = True) -> list[str]:
    """Row i = prompts[i] answered by variants[i], all in ONE forward batch; returns the decoded continuations.
    Rows of one variant whose prompts start alike compute that start once (laffi.prefix)."""
    import torch
    from transformers import StoppingCriteriaList

    if len(prompts) != len(variants):
        raise ValueError("generate_rows needs one variant per prompt")
    if not lm.can_mix(variants):  # adapters that can't be stacked: one batch per variant, same results
        out = [""] * len(prompts)
        for v in dict.fromkeys(variants):
            idx = [i for i, w in enumerate(variants) if w == v]
            for i, text in zip(idx, generate_rows(lm, [prompts[i] for i in idx], [v] * len(idx), max_new_tokens,
                                                  stop_at_newline, min_new_tokens, share_prefixes)):
                out[i] = text
        return out
    tok, model = lm.tokenizer, lm.model
    ids = tok(prompts, add_special_tokens=False)["input_ids"]
    enc = shared_prefix_inputs(lm, ids, variants) if share_prefixes else None
    if enc is None:  # nothing shared: one ordinary left-padded batch
        enc = dict(tok.pad({"input_ids": ids}, return_tensors="pt").to(lm.device))
    kwargs = {}
    if stop_at_newline:
        kwargs["stopping_criteria"] = StoppingCriteriaList([_StopAfterFirstLine(tok, lm.device)])
    eos = model.generation_config.eos_token_id
    eos = sorted({*(eos if isinstance(eos, list) else [eos] if eos is not None else []), tok.eos_token_id})
    with torch.inference_mode(), lm.rows(variants):
        out = model.generate(
            **enc, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens or None, do_sample=False,
            temperature=None, top_p=None, top_k=None, pad_token_id=tok.pad_token_id, eos_token_id=eos, **kwargs,
        )
    return tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def batch_size_for(lm, cfg: GenerationConfig) -> int:
    return cfg.batch_size or (16 if lm.device.type == "cuda" else 8)


def generate_batched(lm, rows: list[tuple[str, str]], cfg: GenerationConfig,
                     progress: Callable[[int, int], None] | None = None) -> list[str]:
    """Generate for (prompt, variant) rows in mixed-adapter batches; results in row order.
    The questions of one passage go together, so they share a batch and its prefill (laffi.prefix.order_rows)."""
    lm.peft_names([v for _, v in rows])  # fail fast on an unknown variant, before any work
    ids = lm.tokenizer([p for p, _ in rows], add_special_tokens=False)["input_ids"]
    order = order_rows(ids)  # stable: a question's variants stay together
    out = [""] * len(rows)
    size = batch_size_for(lm, cfg)
    for start in range(0, len(order), size):
        chunk = order[start:start + size]
        texts = generate_rows(lm, [rows[k][0] for k in chunk], [rows[k][1] for k in chunk],
                              cfg.max_new_tokens, cfg.stop_at_newline, share_prefixes=cfg.share_prefixes)
        for k, text in zip(chunk, texts):
            out[k] = text
        if progress:
            progress(min(start + size, len(order)), len(order))
    return out


def generate_grid(lm, prompts: list[str], variants: list[str], cfg: GenerationConfig,
                  progress: Callable[[int, int], None] | None = None) -> dict[str, list[str]]:
    """Every prompt under every variant; returns {variant: [reply per prompt]}."""
    rows = [(p, v) for p in prompts for v in variants]
    texts = generate_batched(lm, rows, cfg, progress)
    return {v: texts[j::len(variants)] for j, v in enumerate(variants)}


def answer_questions(lm, pairs: list[tuple[str, str]], variants: list[str], cfg: GenerationConfig | None = None,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, list[Answer]]:
    """Answer (context, question) pairs with every variant; {variant: [Answer per pair]}."""
    cfg = cfg or GenerationConfig()
    prompts = [qa_prompt(lm.tokenizer, c, q) for c, q in pairs]
    raw = generate_grid(lm, prompts, variants, cfg, progress)
    return {v: [Answer(text=extract_answer(r), raw=r.strip()) for r in raw[v]] for v in variants}
