"""The Attention tab: for the last question asked and a chosen variant, a tokens x tokens heatmap (layer, head or
mean over heads), the answer's attention over the passage text, a difference view between two variants, and
bertviz's head and model views in a sandboxed iframe whose scripts the app serves itself.

Usage:  build_attention_tab(ctx, last_state) inside a gr.Blocks.
"""

from __future__ import annotations

import html

import gradio as gr

from laffi.attention import attention_view, bertviz_html, heatmap_figure, passage_highlights

NONE = "(none)"


def _iframe(page: str | None, message: str) -> str:
    if page is None:
        return f"<p>{html.escape(message)}</p>"
    # sandbox without allow-same-origin: bertviz's scripts run, but in an opaque origin cut off from the app.
    return (f'<iframe sandbox="allow-scripts" style="width:100%;height:720px;border:0" '
            f'srcdoc="{html.escape(page, quote=True)}"></iframe>')


def build_attention_tab(ctx, last: gr.State, js_base: str | None) -> None:
    config = ctx.lm.model.config
    layers, heads = config.num_hidden_layers, config.num_attention_heads
    gr.Markdown("Attention for the **last question asked in the Ask tab** (its passage, question and the chosen "
                "variant's answer). Computed only when you press the button, with eager attention for that pass.")
    with gr.Row():
        variant = gr.Dropdown(ctx.lm.variants, value=ctx.lm.variants[-1], label="Variant", elem_id="attn-variant")
        other = gr.Dropdown([NONE, *ctx.lm.variants], value="base" if len(ctx.lm.variants) > 1 else NONE,
                            label="Difference with (same input)", elem_id="attn-other")
        layer = gr.Slider(0, layers - 1, value=layers - 1, step=1, label="Layer")
        head = gr.Dropdown(["mean", *map(str, range(heads))], value="mean", label="Head")
        go = gr.Button("Compute attention", variant="primary", elem_id="attn-button")
    notes = gr.Markdown()
    with gr.Row():
        plot = gr.Plot(label="Attention heatmap", elem_id="attn-heatmap")
        with gr.Column():
            passage = gr.HighlightedText(label="Answer → passage (share of the answer's attention)",
                                         combine_adjacent=False, show_legend=False, elem_id="attn-passage")
            diff = gr.HighlightedText(label="Difference over the passage (red: more in the variant, blue: more in the "
                                            "other)", combine_adjacent=False, show_legend=False)
    with gr.Accordion("bertviz head view", open=False):
        head_html = gr.HTML(elem_id="bertviz-head")
    with gr.Accordion("bertviz model view", open=False):
        model_html = gr.HTML(elem_id="bertviz-model")
    views = gr.State(None)

    def draw(vs, layer_value, head_value):
        if not vs:
            return None, None, None
        view, cmp = vs
        layer_value = int(layer_value)
        fig = heatmap_figure(view, layer_value, head_value, other=cmp)
        return (fig, passage_highlights(view, layer_value, head_value),
                passage_highlights(view, layer_value, head_value, other=cmp) if cmp else None)

    def compute(result, name, other_name, layer_value, head_value):
        if not result:
            raise gr.Error("Ask a question in the Ask tab first; this tab shows attention for the last question.")
        ctx.lm.refresh_adapters()
        if name not in ctx.lm.variants:
            raise gr.Error(f"The variant {name!r} is not loaded; choose one of {', '.join(ctx.lm.variants)}.")
        answer = result["variants"].get(name, {}).get("answer", "")
        view = attention_view(ctx.lm, result["context"], result["question"], answer, name)
        cmp = None
        if other_name not in (None, NONE, name) and other_name in ctx.lm.variants:
            cmp = attention_view(ctx.lm, result["context"], result["question"], answer, other_name)
        missing = "bertviz needs its JavaScript: run `make demo` (npm ci) once."
        page_head = bertviz_html(view, "head", js_base) if js_base else None
        page_model = bertviz_html(view, "model", js_base) if js_base else None
        text = "\n\n".join(view.notes) or "All tokens are shown."
        if cmp:
            text += f"\n\nThe difference uses `{name}`'s answer as input for both variants."
        return ((view, cmp), *draw((view, cmp), layer_value, head_value), text,
                _iframe(page_head, missing), _iframe(page_model, missing))

    go.click(compute, [last, variant, other, layer, head], [views, plot, passage, diff, notes, head_html, model_html],
             api_name="attention", concurrency_id="model", concurrency_limit=1)
    gr.on([layer.release, head.change], draw, [views, layer, head], [plot, passage, diff],
          api_name="attention_redraw")
