"""The Attention tab: for the last question asked and a chosen variant, a tokens x tokens heatmap (layer, head or
mean over heads), the answer's attention over the passage text, a difference view between two variants, and
bertviz's head and model views in a sandboxed iframe whose scripts the app serves itself.

Usage:  refresh, lists = build_attention_tab(ctx, last_state, js_base) inside a gr.Blocks.
In the difference views red means more attention in the chosen variant and purple more in the other, in the heatmap
and in the passage alike (the passage's colours are gr.HighlightedText's; laffi.inference.attention matches them).
"""

from __future__ import annotations

import html

import gradio as gr

from laffi.inference.attention import bertviz_html, heatmap_figure, passage_highlights
from laffi.inference.model_thread import on_model_thread
from laffi.inference.models import BASE_VARIANT
from laffi.ui.text import error, name_range_errors, warning

NONE = "(none)"


def _iframe(page: str | None, message: str) -> str:
    if page is None:
        return f"<p>{html.escape(message)}</p>"
    # sandbox without allow-same-origin: bertviz's scripts run, but in an opaque origin cut off from the app.
    return (f'<iframe sandbox="allow-scripts" style="width:100%;height:720px;border:0" '
            f'srcdoc="{html.escape(page, quote=True)}"></iframe>')


def build_attention_tab(ctx, last: gr.State, js_base: str | None):
    """Lays the tab out; returns (refresh, its inputs, its outputs): the dropdowns follow new adapters."""
    config = ctx.lm.model.config
    layers, heads = config.num_hidden_layers, config.num_attention_heads
    names = ctx.variant_names()
    gr.Markdown("Attention for the **last question asked in the Ask tab** (its passage, question and the chosen "
                "variant's answer). Computed only when you press the button, with eager attention for that pass.")
    if ctx.settings.backend == "vllm":  # vLLM returns no attention weights: these views use the transformers model
        gr.Markdown("Answers come from vLLM here, which does not expose attention weights: these views are "
                    "computed by the transformers model, on the same prompt and answer.", elem_id="attn-backend")
    with gr.Row():
        variant = gr.Dropdown(names, value="laffi" if "laffi" in names else names[-1], label="Variant",
                              elem_id="attn-variant")
        other = gr.Dropdown([NONE, *names], value=BASE_VARIANT if len(names) > 1 else NONE,
                            label="Difference with (same input)", elem_id="attn-other")
        layer = gr.Slider(0, layers - 1, value=layers - 1, step=1, label="Layer", elem_id="attn-layer")
        head = gr.Dropdown(["mean", *map(str, range(heads))], value="mean", label="Head", elem_id="attn-head")
        go = gr.Button("Compute attention", variant="primary", elem_id="attn-button")
    name_range_errors(layer)
    notes = gr.Markdown(elem_id="attn-notes")
    with gr.Row():
        plot = gr.Plot(label="Attention heatmap (difference: red = more in the variant, purple = more in the other)",
                       elem_id="attn-heatmap")
        with gr.Column():
            passage = gr.HighlightedText(label="Answer → passage (share of the answer's attention)",
                                         combine_adjacent=False, show_legend=False, elem_id="attn-passage")
            diff = gr.HighlightedText(label="Difference over the passage (red: more in the variant, purple: more in "
                                            "the other)", combine_adjacent=False, show_legend=False,
                                      elem_id="attn-diff")
    with gr.Accordion("bertviz head view", open=False):
        head_html = gr.HTML(elem_id="bertviz-head")
    with gr.Accordion("bertviz model view", open=False):
        model_html = gr.HTML(elem_id="bertviz-model")
    views = gr.State(None)

    def draw(views, layer, head):
        if not views:
            return None, None, None
        view, cmp = views
        layer = int(layer)
        fig = heatmap_figure(view, layer, head, other=cmp)
        return (fig, passage_highlights(view, layer, head),
                passage_highlights(view, layer, head, other=cmp) if cmp else None)

    def compute(result, variant, compare_with, layer, head):
        if not result:  # a notice, not an exception: an exception marks every output "Error"
            first = "Ask a question in the Ask tab first: this tab shows attention for the last question asked there."
            warning(first)
            return None, None, None, None, first, "", ""
        def views():  # on the model thread, between the room's Ask batches (laffi.serving.scheduler)
            ctx.sync_adapters()
            if variant not in ctx.lm.variants:
                raise error(f"The variant {variant!r} is not loaded; choose one of {', '.join(ctx.lm.variants)}.")
            answer = result["variants"].get(variant, {}).get("answer", "")
            view = ctx.calls.attention(result["context"], result["question"], answer, variant)
            cmp = None
            if compare_with not in (None, NONE, variant) and compare_with in ctx.lm.variants:
                cmp = ctx.calls.attention(result["context"], result["question"], answer, compare_with)
            return view, cmp

        ctx.lm.wait()  # loaded before the turn: the load itself runs on the model thread
        view, cmp = ctx.scheduler.run_exclusive(views)
        missing = "bertviz needs its JavaScript: run `make demo` (npm ci) once."
        # bertviz makes its pages with torch ops: on the model thread too (a Gradio worker thread that ran one
        # kept its own OpenMP team, and every Ask after it ran twice as long; laffi.inference.model_thread)
        page_head = on_model_thread(bertviz_html, view, "head", js_base) if js_base else None
        page_model = on_model_thread(bertviz_html, view, "model", js_base) if js_base else None
        text = "\n\n".join(view.notes) or "All tokens are shown."
        if cmp:
            text += (f"\n\nThe difference `{variant}` − `{compare_with}` uses `{variant}`'s answer as input for "
                     f"both; red: more attention in `{variant}`, purple: more in `{compare_with}`.")
        return ((view, cmp), *draw((view, cmp), layer, head), text,
                _iframe(page_head, missing), _iframe(page_model, missing))

    go.click(compute, [last, variant, other, layer, head], [views, plot, passage, diff, notes, head_html, model_html],
             api_name="attention", concurrency_id="model", concurrency_limit=1)
    # release: the end of a drag; input: also a layer typed into the slider's box (which sends no release until
    # it loses focus). always_last: while one redraw runs, only the latest value waits.
    gr.on([layer.release, layer.input, head.change], draw, [views, layer, head], [plot, passage, diff],
          api_name="attention_redraw", trigger_mode="always_last")

    def refresh(variant, compare_with):
        names = ctx.variant_names()
        return (gr.Dropdown(choices=names, value=variant if variant in names else "laffi" if "laffi" in names
                            else names[-1]),
                gr.Dropdown(choices=[NONE, *names], value=compare_with if compare_with in names else NONE))

    return refresh, [variant, other], [variant, other]
