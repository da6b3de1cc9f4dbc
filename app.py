"""The laffi demo: one base model and its LoRA adapters (SFT, LaFFi, ...) answering side by side.

Usage:  python app.py            (serves on 127.0.0.1:7860; GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override)
        LAFFI_BASE=HuggingFaceTB/SmolLM2-360M-Instruct LAFFI_ADAPTERS_DIR=my_adapters python app.py

This file only lays out the UI and wires thin callbacks to laffi/; all model logic lives there.
"""

from __future__ import annotations

import os
import time

import gradio as gr

from laffi.errors import LaffiError
from laffi.generation import GenerationConfig, answer_questions
from laffi.models import ModelConfig, load_model

# Passages written for this demo (not from SQuAD), with one question the passage cannot answer.
EXAMPLES = [
    ["The Halvard lighthouse stands on a granite islet two kilometres off the town of Nesby. It was lit in 1874, "
     "and its lamp was converted from paraffin to electricity in 1952. The keeper's cottage is now a small museum "
     "about the fishing families of the coast.", "When was the lighthouse converted to electricity?"],
    ["The Halvard lighthouse stands on a granite islet two kilometres off the town of Nesby. It was lit in 1874, "
     "and its lamp was converted from paraffin to electricity in 1952. The keeper's cottage is now a small museum "
     "about the fishing families of the coast.", "Who was the first keeper of the lighthouse?"],
    ["Marisol Ortega trained as a chemist before she began writing crime novels. Her first book, The Salt Ledger, "
     "sold poorly, but her third, Nine Quiet Rooms, won the Arden Prize in 2011 and was translated into fourteen "
     "languages.", "Which of Ortega's books won the Arden Prize?"],
    ["Glacier mice are balls of moss that roll slowly across some glaciers. Researchers who tagged them found that "
     "the herd of moss balls moved about 2.5 centimetres a day, changing direction together over several weeks.",
     "How far do glacier mice move in a day?"],
]

MAX_CONTEXT_CHARS = 8000


def model_config_from_env() -> ModelConfig:
    return ModelConfig(base=os.environ.get("LAFFI_BASE", "embedded"),
                       adapters_dir=os.environ.get("LAFFI_ADAPTERS_DIR", "adapters"),
                       quantize=os.environ.get("LAFFI_QUANTIZE") or None)


def _status(lm) -> str:
    dtype = str(next(lm.model.parameters()).dtype).replace("torch.", "")
    lines = [f"**Model:** `{lm.config.base}` on {lm.device.type} ({dtype}) · **variants:** "
             + ", ".join(f"`{v}`" for v in lm.variants)]
    missing = [name for name in ("sft", "laffi") if name not in lm.variants]
    if missing:
        lines.append("The " + " and ".join(f"`{m}`" for m in missing) + " adapter"
                     + ("s are" if len(missing) > 1 else " is") + " not trained yet, so "
                     + ("only `base` answers" if len(lm.variants) == 1 else "they are not shown")
                     + ". Train them with `python -m laffi train` (see the README).")
    lines += [f"⚠️ {w}" for w in lm.warnings]
    return "\n\n".join(lines)


def build_demo(lm=None, model_config: ModelConfig | None = None) -> gr.Blocks:
    """The Gradio app around a loaded model (loaded from `model_config` or the environment when not given)."""
    lm = lm or load_model(model_config or model_config_from_env())

    def ask(context: str, question: str):
        if not (context or "").strip():
            raise gr.Error("The passage is empty: paste a passage, then ask a question about it.")
        if not (question or "").strip():
            raise gr.Error("The question is empty: type a question about the passage.")
        if len(context) > MAX_CONTEXT_CHARS:
            raise gr.Error(f"The passage has {len(context):,} characters; the limit is {MAX_CONTEXT_CHARS:,}. "
                           "Shorten it to the part the question is about.")
        start = time.perf_counter()
        try:
            answers = answer_questions(lm, [(context, question)], lm.variants, GenerationConfig())
        except LaffiError as e:
            raise gr.Error(str(e)) from e
        seconds = time.perf_counter() - start
        rows = [[v, answers[v][0].text or "(no answer)", answers[v][0].raw] for v in lm.variants]
        note = f"{len(lm.variants)} variant(s) answered in one batch in {seconds:.2f} s."
        return rows, note

    with gr.Blocks(title="LaFFi — natural-language feedback for fine-tuning") as demo:
        gr.Markdown("# LaFFi: natural-language feedback for fine-tuning\n"
                    "One base model with LoRA adapters trained by plain SFT and by LaFFi (learning to predict "
                    "an annotator's feedback on its own answers), answering the same question side by side.")
        gr.Markdown(_status(lm))
        with gr.Tab("Ask"):
            with gr.Row():
                with gr.Column(scale=3):
                    context = gr.Textbox(label="Passage", lines=8, max_lines=20,
                                         placeholder="Paste a passage (a paragraph or two).")
                    question = gr.Textbox(label="Question", placeholder="Ask something the passage may answer.")
                    ask_btn = gr.Button("Ask every variant", variant="primary")
                    gr.Examples(EXAMPLES, inputs=[context, question], label="Examples (written for this demo)")
                with gr.Column(scale=4):
                    answers = gr.Dataframe(headers=["Variant", "Answer", "Model reply"], datatype="str",
                                           label="Answers, side by side", interactive=False, wrap=True)
                    timing = gr.Markdown()
        gr.on([ask_btn.click, question.submit], ask, inputs=[context, question], outputs=[answers, timing],
              api_name="ask", concurrency_id="model", concurrency_limit=1)
    return demo


if __name__ == "__main__":
    demo = build_demo()
    demo.queue(max_size=64).launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                                   server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
