"""Attention of one variant on one question: computed on demand (eager attention for that pass only), then shown
as a plotly heatmap, as answer->passage weights over the passage text, as a difference between two variants, and
in bertviz's head and model views.

Usage:
    view = attention_view(lm, context, question, answer, variant="laffi")
    fig = heatmap_figure(view, layer=3, head="mean")
    spans = passage_highlights(view, layer=3, head="mean")        # [(passage text piece, weight 0..1), ...]

Both variants of a difference view are run on the *same* token sequence (prompt + one answer), so the two maps
differ only by the adapter. Long inputs are capped for display (HEATMAP_TOKENS, BERTVIZ_TOKENS); the passage
view always covers the whole passage.
"""

from __future__ import annotations

import html
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from laffi.inference.prompts import NO_ANSWER, qa_prompt
from laffi.inference.surface import LanguageModel

HEATMAP_TOKENS = 160  # a T x T heatmap beyond this is unreadable and heavy in the browser
BERTVIZ_TOKENS = 40  # bertviz embeds layers x heads x T x T numbers as JSON in the page


@dataclass
class AttentionView:
    variant: str
    tokens: list[str]  # display text of every token of prompt + answer
    heat: np.ndarray  # [layers, heads, n, n] for the shown window (float16)
    heat_start: int  # index of the first shown token
    passage_pieces: list[str]  # passage text cut at token boundaries
    passage_scores: np.ndarray  # [layers, heads, passage tokens]: attention from answer tokens, averaged
    viz: np.ndarray  # [layers, heads, b, b] window for bertviz
    viz_start: int
    n_tokens: int

    @property
    def notes(self) -> list[str]:
        out = []
        shown = self.heat.shape[-1]
        if shown < self.n_tokens:
            out.append(f"The heatmap shows tokens {self.heat_start + 1}–{self.heat_start + shown} of {self.n_tokens}: "
                       + ("the system prompt is left out" if shown < HEATMAP_TOKENS else
                          f"capped at the last {HEATMAP_TOKENS} (passage end, question, answer)")
                       + "; the passage view always covers the whole passage.")
        if self.viz.shape[-1] < self.n_tokens:
            out.append(f"The bertviz views show the last {self.viz.shape[-1]} of {self.n_tokens} tokens.")
        return out


@contextmanager
def eager_attention(model):
    """SDPA does not return attention weights; switch to eager for this pass only, then back."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    previous = inner.config._attn_implementation
    inner.set_attn_implementation("eager")
    try:
        yield
    finally:
        inner.set_attn_implementation(previous)


def _token_spans(tok, text: str):
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    return enc["input_ids"], enc["offset_mapping"]


def attention_view(lm: LanguageModel, context: str, question: str, answer: str, variant: str) -> AttentionView:
    import torch

    prompt = qa_prompt(lm.tokenizer, context, question)
    text = prompt + (answer.strip() or NO_ANSWER)
    ids, offsets = _token_spans(lm.tokenizer, text)
    p_start = prompt.index(context.strip())
    p_end = p_start + len(context.strip())
    passage = [i for i, (a, b) in enumerate(offsets) if b > p_start and a < p_end and b > a]  # overlaps passage
    answer_toks = [i for i, (a, b) in enumerate(offsets) if a >= len(prompt)] or [len(ids) - 1]
    with torch.inference_mode(), eager_attention(lm.model), lm.rows([variant]):
        out = lm.model(input_ids=torch.tensor([ids], device=lm.device), output_attentions=True)
    attn = torch.stack(out.attentions)[:, 0].float().cpu().numpy()  # [layers, heads, T, T]
    tokens = [text[a:b] for a, b in offsets]
    sys_end = prompt.index("Passage:") if "Passage:" in prompt else 0
    first_shown = next((i for i, (a, _) in enumerate(offsets) if a >= sys_end), 0)  # skip the system prompt
    heat_start = max(first_shown, len(ids) - HEATMAP_TOKENS)
    viz_start = max(0, len(ids) - BERTVIZ_TOKENS)
    scores = attn[:, :, answer_toks][:, :, :, passage].mean(axis=2)  # [layers, heads, passage tokens]
    return AttentionView(
        variant=variant, tokens=tokens, heat=attn[:, :, heat_start:, heat_start:].astype(np.float16),
        heat_start=heat_start, passage_pieces=[text[max(offsets[i][0], p_start):min(offsets[i][1], p_end)] for i in passage],
        passage_scores=scores, viz=attn[:, :, viz_start:, viz_start:], viz_start=viz_start, n_tokens=len(ids))


def _select(arr: np.ndarray, layer: int, head) -> np.ndarray:
    a = arr[layer]
    return a.mean(axis=0) if head in (None, "mean") else a[int(head)]


def _labels(tokens: list[str]) -> list[str]:
    # Plotly renders a subset of HTML in labels: escape every token, and keep duplicates apart with their index.
    return [f"{i}:{html.escape(t.replace(chr(10), '⏎'))}" for i, t in enumerate(tokens)]


# A difference's colours, as gr.HighlightedText shows scores in the passage view beside it: positive (more attention
# in the variant) red, negative (more in the other) purple, zero white. One legend for both views.
DIFF_COLORSCALE = [[0.0, "rgb(128, 90, 213)"], [0.5, "rgb(255, 255, 255)"], [1.0, "rgb(239, 68, 60)"]]


def heatmap_figure(view: AttentionView, layer: int, head="mean", other: AttentionView | None = None):
    import plotly.graph_objects as go

    z = _select(view.heat, layer, head).astype(np.float32)
    who = view.variant
    if other is not None:
        z = z - _select(other.heat, layer, head).astype(np.float32)
        who = f"{view.variant} − {other.variant}"
    title = f"{who}: layer {layer}, " + ("mean over heads" if head in (None, "mean") else f"head {head}")
    labels = _labels(view.tokens[view.heat_start:view.heat_start + z.shape[0]])
    scale = DIFF_COLORSCALE if other is not None else "Viridis"
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=labels, colorscale=scale,
                               zmid=0 if other is not None else None,
                               hovertemplate="from %{y}<br>to %{x}<br>weight %{z:.3f}<extra></extra>"))
    fig.update_layout(title=title, height=640, yaxis_autorange="reversed", margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_showticklabels=z.shape[0] <= 60, yaxis_showticklabels=z.shape[0] <= 60)
    return fig


def passage_highlights(view: AttentionView, layer: int, head="mean", other: AttentionView | None = None):
    """[(passage piece, weight)] for gr.HighlightedText: 0..1 for one variant, -1..1 for a difference."""
    s = _select(view.passage_scores, layer, head)
    s = s / max(float(s.sum()), 1e-9)  # share of the answer's attention that lands on each passage token
    if other is not None:
        o = _select(other.passage_scores, layer, head)
        s = s - o / max(float(o.sum()), 1e-9)
        scale = max(float(np.abs(s).max()), 1e-9)
    else:
        scale = max(float(s.max()), 1e-9)
    return [(piece, round(float(w) / scale, 3)) for piece, w in zip(view.passage_pieces, s)]


def bertviz_html(view: AttentionView, kind: str = "head", js_base: str | None = None) -> str:
    """bertviz's head or model view as a standalone HTML page whose scripts come from js_base (served locally)."""
    import torch
    from bertviz import head_view, model_view

    # bertviz puts tokens into a <script> as JSON; "<" in a token could close that script. Replace the three HTML
    # metacharacters by look-alikes so no token can ever become markup.
    safe = [t.replace("&", "＆").replace("<", "‹").replace(">", "›").replace("\n", "⏎")
            for t in view.tokens[view.viz_start:]]
    attention = tuple(torch.from_numpy(np.ascontiguousarray(view.viz[i]))[None] for i in range(view.viz.shape[0]))
    fn = head_view if kind == "head" else model_view
    page = fn(attention, safe, html_action="return").data
    if js_base:
        page = _local_scripts(page, js_base)
    return f"<!doctype html><html><head><meta charset='utf-8'></head><body>{page}</body></html>"


def _local_scripts(page: str, base: str) -> str:
    import re

    page = re.sub(r"https://cdnjs\.cloudflare\.com/ajax/libs/require\.js/[^\"']+/require\.min\.js",
                  f"{base}/requirejs/require.js", page)
    page = re.sub(r"https://cdnjs\.cloudflare\.com/ajax/libs/d3/[^'\"]+/d3\.min", f"{base}/d3/dist/d3.min", page)
    return re.sub(r"https://cdnjs\.cloudflare\.com/ajax/libs/jquery/[^'\"]+/jquery\.min",
                  f"{base}/jquery/dist/jquery.min", page)
