"""Greedy generation for several variants at once: one mixed-adapter batch instead of one pass per adapter.

Usage:
    answers = answer_questions(lm, [(context, question)], ["base", "sft", "laffi"], GenerationConfig())
    answers["sft"][0].text      # extracted span ("" = no answer); .raw is the model's full reply
    answer_questions(lm, pairs, variants, cfg, on_event=print)   # streamed: GenerationEvent per row and step

Every row of a batch carries its own adapter, so base + N adapters share the base model's weights and each
forward pass: decoding a few rows costs little more than one (on a GPU, or a CPU with laffi.inference.kernels' oneDNN
layers). The adapters are applied stacked (laffi.inference.multilora: two small matmuls per layer, not four kernels per
adapter); adapters that can't be stacked (DoRA, bitsandbytes layers) get one batch per variant instead. `schedule`
decides the batches: the questions of one passage go together and read the passage once (laffi.inference.prefix), rows
of one variant together, and variants mix only to fill a batch (one question for every variant, as in the app's Ask).
Every stage can stream: an on_event callback gets each row's text after every decoding step and once it is done
(laffi.inference.events.GenerationEvent: stage, variant, question index, text). What generates is the model's generator
(laffi.inference.surface.RowGenerator): LocalGenerator here, or a vLLM server (laffi.inference.backends).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

from laffi.errors import LaffiError
from laffi.inference.answerability import FirstToken, FirstTokenProbe, abstain_token_ids, decide, direct_thresholds
from laffi.inference.events import GenerationEvent, OnEvent, Row, as_rows
from laffi.inference.prefix import order_rows, shared_prefix_inputs
from laffi.inference.prompts import extract_answer, qa_prompt
from laffi.inference.surface import LanguageModel, RowGenerator


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
                "start once (laffi.inference.prefix); the same maths, a fraction of the prefill."})

    def __post_init__(self):
        if not 1 <= self.max_new_tokens <= 1024:
            raise LaffiError(f"GenerationConfig.max_new_tokens must be between 1 and 1024, not {self.max_new_tokens}.")
        if self.batch_size is not None and self.batch_size < 1:
            raise LaffiError(f"GenerationConfig.batch_size must be at least 1, not {self.batch_size}.")


@dataclass
class Answer:
    text: str  # the answer shown: the span, or "" (no answer) when na_prob is above the variant's threshold
    raw: str  # what the model generated, special tokens removed
    span: str | None = None  # its best non-abstaining span (None: not measured, e.g. a remote backend)
    na_prob: float | None = None  # P(the reply starts "no answer"-like), laffi.inference.answerability


_LINE_TOKENS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # tokenizer -> its line token sets


def _line_token_sets(tokenizer):
    """Token ids that contain a newline / visible text / visible text *then* a newline (once per tokenizer,
    kept here rather than on the tokenizer object)."""
    cached = _LINE_TOKENS.get(tokenizer)
    if cached is None:
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        texts = [tokenizer.convert_tokens_to_string([p]) if p is not None else "" for p in pieces]
        newline = [i for i, t in enumerate(texts) if "\n" in t]
        visible = [i for i, t in enumerate(texts) if t.strip()]
        ends_line = [i for i, t in enumerate(texts) if "\n" in t and t.split("\n", 1)[0].strip()]
        cached = _LINE_TOKENS[tokenizer] = (newline, visible, ends_line)
    return cached


class _StopAfterFirstLine:
    """Per-row stop once a row has written some text and then a newline (transformers StoppingCriteria API)."""

    def __init__(self, tokenizer, device, vocab_size: int = 0):
        import torch

        # one boolean per vocabulary entry, looked up by token id: torch.isin against the ~49k "visible" ids
        # sorted that set at every call (1.3 ms a step, three times, in the profile of an Ask). The model's
        # output layer may have more rows than the tokenizer has tokens (padding): those ids are in no set.
        size = max(len(tokenizer), vocab_size)
        self.newline, self.visible, self.ends_line = (
            torch.zeros(size, dtype=torch.bool, device=device).index_fill_(
                0, torch.tensor(ids, dtype=torch.long, device=device), True)
            for ids in _line_token_sets(tokenizer))
        self.seen_text = None

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        last = input_ids[:, -1]  # called once per step, after the new token was appended
        if self.seen_text is None:
            self.seen_text = torch.zeros_like(last, dtype=torch.bool)
        done = (self.newline[last] & self.seen_text) | self.ends_line[last]
        self.seen_text |= self.visible[last]
        return done


class RowStreamer:
    """A transformers streamer for a whole batch: after every decoding step, on_event gets each row's text so far
    (special tokens dropped; a finished row stops growing). transformers' TextStreamer handles one row only."""

    def __init__(self, tokenizer, labels: list[Row], on_event: OnEvent, total: int = 0):
        self.tokenizer, self.labels, self.on_event, self.total = tokenizer, labels, on_event, total
        self.rows: list[list[int]] | None = None

    def put(self, value) -> None:
        if self.rows is None:  # the first call hands over the prompt: nothing generated yet
            self.rows = [[] for _ in range(value.shape[0])]
            return
        for row, token in zip(self.rows, value.reshape(-1).tolist()):
            row.append(token)
        for label, text in zip(self.labels, self.tokenizer.batch_decode(self.rows, skip_special_tokens=True)):
            self.on_event(GenerationEvent.of(label, text, total=self.total))

    def end(self) -> None:
        pass


def generate_rows(lm: LanguageModel, prompts: list[str], variants: list[str], max_new_tokens: int,
                  stop_at_newline: bool = True, min_new_tokens: int = 0, share_prefixes: bool = True,
                  on_event: OnEvent | None = None, first_token: FirstToken | None = None,
                  first_probs: list | None = None, labels: list[Row] | None = None, total: int = 0) -> list[str]:
    """Row i = prompts[i] answered by variants[i], all in ONE forward batch; returns the decoded continuations.
    Rows of one variant whose prompts start alike compute that start once (laffi.inference.prefix). on_event, if
    given, gets every row's text so far after each decoding step (streaming) and its final text (done); labels
    name the rows in those events (default: stage "answer", index = row number), total goes into them.
    first_token (laffi.inference.answerability): each row's probability of starting with those tokens is written
    into first_probs (and, if it says so, they are forbidden)."""
    import torch
    from transformers import LogitsProcessorList, StoppingCriteriaList

    from laffi.inference.decoding import greedy, supports
    from laffi.inference.kv_cache import empty_cache, reserve

    if len(prompts) != len(variants):
        raise ValueError("generate_rows needs one variant per prompt")
    labels = labels if labels is not None else as_rows(list(zip(prompts, variants)))
    if not lm.can_mix(variants):  # adapters that can't be stacked: one batch per variant, same results
        out = [""] * len(prompts)
        for v in dict.fromkeys(variants):
            idx = [i for i, w in enumerate(variants) if w == v]
            probs = [None] * len(idx)
            for i, text in zip(idx, generate_rows(lm, [prompts[i] for i in idx], [v] * len(idx), max_new_tokens,
                                                  stop_at_newline, min_new_tokens, share_prefixes, on_event,
                                                  first_token, probs, [labels[i] for i in idx], total)):
                out[i] = text
            if first_probs is not None:
                for i, p in zip(idx, probs):
                    first_probs[i] = p
        return out
    tok, model = lm.tokenizer, lm.model
    ids = tok(prompts, add_special_tokens=False)["input_ids"]
    enc = shared_prefix_inputs(lm, ids, variants) if share_prefixes else None
    if enc is None:  # nothing shared: one ordinary left-padded batch
        enc = dict(tok.pad({"input_ids": ids}, return_tensors="pt").to(lm.device))
    cache = enc.get("past_key_values")  # room for every token to come: no copy of the cache per step (kv_cache)
    enc["past_key_values"] = empty_cache(max_new_tokens, model.config) if cache is None else reserve(
        cache, enc["input_ids"].shape[1] - cache.get_seq_length() + max_new_tokens)
    kwargs = {}
    if stop_at_newline:
        head = model.get_output_embeddings()  # the ids generation can produce: its output layer's rows
        vocab = head.weight.shape[0] if head is not None and getattr(head, "weight", None) is not None else 0
        kwargs["stopping_criteria"] = StoppingCriteriaList([_StopAfterFirstLine(tok, lm.device, vocab)])
    if on_event is not None:
        kwargs["streamer"] = RowStreamer(tok, labels, on_event, total)
    probe = None if first_token is None else FirstTokenProbe(first_token, lm.device)
    if probe is not None:
        kwargs["logits_processor"] = LogitsProcessorList([probe])
    eos = model.generation_config.eos_token_id
    eos = sorted({*(eos if isinstance(eos, list) else [eos] if eos is not None else []), tok.eos_token_id})
    if supports(model):  # finished rows leave the batch (laffi.inference.decoding): generate()'s tokens
        with torch.inference_mode():
            out = greedy(model, enc, tok.pad_token_id, eos, max_new_tokens, min_new_tokens, rows=lm.rows,
                         variants=variants, stopping=kwargs.get("stopping_criteria", ()),
                         processors=kwargs.get("logits_processor", ()), streamer=kwargs.get("streamer"))
    else:
        with torch.inference_mode(), lm.rows(variants):
            out = model.generate(
                **enc, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens or None, do_sample=False,
                temperature=None, top_p=None, top_k=None, pad_token_id=tok.pad_token_id, eos_token_id=eos,
                **kwargs)
    if probe is not None and first_probs is not None:
        first_probs[:] = probe.values
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    if on_event is not None:
        for label, text in zip(labels, texts):
            on_event(GenerationEvent.of(label, text, done=True, total=total))
    return texts


def batch_size_for(lm: LanguageModel, cfg: GenerationConfig) -> int:
    return cfg.batch_size or (16 if lm.device.type == "cuda" else 8)


def schedule(ids: list[list[int]], variants: list[str], size: int) -> list[list[int]]:
    """Batches (lists of row indices) for rows of token ids and variants. A passage's prefill is shared only by
    rows of one variant (laffi.inference.prefix: an adapter changes every layer's keys), so rows of one variant go
    together, questions on one passage next to each other (order_rows); mixing variants in a batch pays only where a
    variant has too few rows to fill a batch (an Ask: one question, every variant): those remainders are batched
    together, where the variants share the decoding steps."""
    by_variant: dict[str, list[int]] = {}
    for k, v in enumerate(variants):
        by_variant.setdefault(v, []).append(k)
    batches, rest = [], []
    for rows in by_variant.values():
        ordered = [rows[j] for j in order_rows([ids[k] for k in rows])]
        full = len(ordered) - len(ordered) % size
        batches += [ordered[i:i + size] for i in range(0, full, size)]
        rest += ordered[full:]
    rest = [rest[j] for j in order_rows([ids[k] for k in rest])]  # stable: a question's variants stay together
    return batches + [rest[i:i + size] for i in range(0, len(rest), size)]


class LocalGenerator:
    """Generates rows with the transformers model in this process (laffi.inference.surface.RowGenerator), in
    batches chosen by `schedule`: every row streams token by token, and first-token probabilities are measured."""

    measures_first_token = True

    def __init__(self, lm: LanguageModel):
        self.lm = lm

    def generate(self, rows: list[Row], cfg: GenerationConfig, on_event: OnEvent | None = None,
                 first_token: FirstToken | None = None, first_probs: list | None = None) -> list[str]:
        lm = self.lm
        ids = lm.tokenizer([r.prompt for r in rows], add_special_tokens=False)["input_ids"]
        out = [""] * len(rows)
        for chunk in schedule(ids, [r.variant for r in rows], batch_size_for(lm, cfg)):
            probs = [None] * len(chunk)
            texts = generate_rows(lm, [rows[k].prompt for k in chunk], [rows[k].variant for k in chunk],
                                  cfg.max_new_tokens, cfg.stop_at_newline, share_prefixes=cfg.share_prefixes,
                                  on_event=on_event, first_token=first_token, first_probs=probs,
                                  labels=[rows[k] for k in chunk], total=len(rows))
            for k, text, p in zip(chunk, texts, probs):
                out[k] = text
                if first_probs is not None:
                    first_probs[k] = p
        return out


def generator_of(lm: LanguageModel) -> RowGenerator:
    """What generates lm's rows: the generator it was given (laffi.inference.backends), else this process."""
    return lm.generator or LocalGenerator(lm)


def generate_batched(lm: LanguageModel, rows: list[Row] | list[tuple[str, str]], cfg: GenerationConfig,
                     on_event: OnEvent | None = None, first_token: FirstToken | None = None,
                     first_probs: list | None = None) -> list[str]:
    """Generate rows (Rows, or (prompt, variant) pairs) with lm's generator; results in row order. on_event gets
    every row's GenerationEvents (laffi.inference.events). first_token / first_probs: as generate_rows, in row
    order (a remote backend measures nothing: first_probs stay None)."""
    rows = as_rows(rows)
    lm.peft_names([r.variant for r in rows])  # fail fast on an unknown variant, before any work
    return generator_of(lm).generate(rows, cfg, on_event, first_token, first_probs)


def generate_grid(lm: LanguageModel, prompts: list[str], variants: list[str], cfg: GenerationConfig,
                  on_event: OnEvent | None = None, first_token: FirstToken | None = None,
                  first_probs: dict | None = None, stage: str = "answer") -> dict[str, list[str]]:
    """Every prompt under every variant; returns {variant: [reply per prompt]}. on_event gets their events (index:
    the prompt's, stage: `stage`). first_token: first_probs[variant] gets its list of first-token probabilities."""
    rows = [Row(p, v, i, stage) for i, p in enumerate(prompts) for v in variants]
    probs = [None] * len(rows)
    texts = generate_batched(lm, rows, cfg, on_event, first_token, probs)
    out = {v: [""] * len(prompts) for v in variants}
    measured = {v: [None] * len(prompts) for v in variants}
    for row, text, p in zip(rows, texts, probs):
        out[row.variant][row.index], measured[row.variant][row.index] = text, p
    if first_probs is not None:
        first_probs.update(measured)
    return out


def answer_questions(lm: LanguageModel, pairs: list[tuple[str, str]], variants: list[str],
                     cfg: GenerationConfig | None = None, on_event: OnEvent | None = None,
                     thresholds: dict[str, float | None] | None = None) -> dict[str, list[Answer]]:
    """Answer (context, question) pairs with every variant; {variant: [Answer per pair]}. Each reply is its best
    span (abstaining first tokens forbidden) with na_prob = P(it would have started abstaining); the shown text is
    "" where na_prob is above the variant's threshold (thresholds, default laffi.inference.answerability's). on_event
    gets the replies' events (stage "answer", index: the pair's)."""
    cfg = cfg or GenerationConfig()
    thresholds = direct_thresholds(lm, variants) if thresholds is None else thresholds
    prompts = [qa_prompt(lm.tokenizer, c, q) for c, q in pairs]
    probs: dict = {}
    raw = generate_grid(lm, prompts, variants, cfg, on_event,
                        FirstToken(tuple(abstain_token_ids(lm.tokenizer)), forbid=True), probs)
    out = {}
    for v in variants:
        rows = []
        for r, p in zip(raw[v], probs[v]):
            text = extract_answer(r)
            if p is None:  # a remote backend: its greedy reply, nothing measured
                rows.append(Answer(text=text, raw=r.strip()))
            else:
                rows.append(Answer(text=decide(text, p, thresholds.get(v)), raw=r.strip(), span=text,
                                   na_prob=p))
        out[v] = rows
    return out
