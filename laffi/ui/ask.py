"""The Ask tab: every variant answers side by side (one mixed batch), then predicts feedback on its own answer and
revises it; the audience rates and critiques any answer, stored at once as human feedback for LaFFi training.

Usage:  build_ask_tab(ctx) inside a gr.Blocks; returns the per-user gr.State holding the last question's result.
Everything the model or a user wrote is shown in Textboxes (plain text), never rendered as HTML.
"""

from __future__ import annotations

import time

import gradio as gr

from laffi.errors import LaffiError
from laffi.generation import GenerationConfig, answer_questions
from laffi.prompts import fit_context
from laffi.selffeedback import answer_all, answer_paths, drafters

# Passages written for this demo (not from SQuAD), with questions the passage cannot answer.
LIGHTHOUSE = ("The Halvard lighthouse stands on a granite islet two kilometres off the town of Nesby. It was lit in "
              "1874, and its lamp was converted from paraffin to electricity in 1952. The keeper's cottage is now a "
              "small museum about the fishing families of the coast.")
NOVELIST = ("Marisol Ortega trained as a chemist before she began writing crime novels. Her first book, The Salt "
            "Ledger, sold poorly, but her third, Nine Quiet Rooms, won the Arden Prize in 2011 and was translated "
            "into fourteen languages.")
MOSS = ("Glacier mice are balls of moss that roll slowly across some glaciers. Researchers who tagged them found "
        "that the herd of moss balls moved about 2.5 centimetres a day, changing direction together over weeks.")
EXAMPLES = [
    [LIGHTHOUSE, "When was the lighthouse converted to electricity?"],
    [LIGHTHOUSE, "Who was the first keeper of the lighthouse?"],  # unanswerable
    [NOVELIST, "Which of Ortega's books won the Arden Prize?"],
    [NOVELIST, "How many languages was The Salt Ledger translated into?"],  # unanswerable: that was her third book
    [MOSS, "How far do glacier mice move in a day?"],
]
RATINGS = {"👍 good answer": 1, "👎 bad answer": -1}
MAX_SLOTS = 6  # variants shown side by side


def validate_question(context: str, question: str, max_chars: int) -> None:
    if not (context or "").strip():
        raise gr.Error("The passage is empty: paste a passage, then ask a question about it.")
    if not (question or "").strip():
        raise gr.Error("The question is empty: type a question about the passage.")
    if len(context) > max_chars:  # request-size guard; below it long passages are cut to the model's window
        raise gr.Error(f"The passage has {len(context):,} characters; this app accepts at most {max_chars:,}. "
                       "Paste the part the question is about.")


def run_ask(ctx, context: str, question: str):
    """Generator: yields the result dict twice, first with answers, then with self-feedback added."""
    validate_question(context, question, ctx.settings.max_context_chars)
    lm = ctx.lm
    lm.refresh_adapters()  # an adapter trained since start-up joins without a restart
    variants = lm.variants[:MAX_SLOTS]
    limit = lm.max_context_tokens(ctx.settings.max_context_tokens)
    context, notice = fit_context(lm.tokenizer, context, question, limit)  # long passages: cut, and said so
    pair = [(context, question)]
    cfg = GenerationConfig(max_new_tokens=ctx.settings.max_new_tokens)
    paths = answer_paths(lm, variants)
    start = time.perf_counter()
    try:  # first every direct answer (and the base model's drafts), in one mixed batch ...
        direct = answer_questions(lm, pair, drafters(variants, paths, feedback=True), cfg)
    except LaffiError as e:
        raise gr.Error(str(e)) from e
    answer_s = time.perf_counter() - start
    result = {"context": context, "question": question, "answer_seconds": round(answer_s, 3), "notice": notice,
              "variants": {v: {"answer": direct[v][0].text if paths[v].kind == "direct" else "",
                               "direct_answer": direct[v][0].text, "raw": direct[v][0].raw,
                               "answer_path": paths[v].label(), "pending": paths[v].kind != "direct"}
                           for v in variants}}
    yield result
    start = time.perf_counter()  # ... then every variant's feedback on its draft, in one more
    results = answer_all(lm, pair, variants, cfg, feedback=True, paths=paths, direct=direct)
    result["feedback_seconds"] = round(time.perf_counter() - start, 3)
    for v in variants:
        result["variants"][v] = results[v][0].fields()
    yield result


def build_ask_tab(ctx) -> gr.State:
    slots = MAX_SLOTS
    last = gr.State(None)  # per user: the last question and every variant's answer (feeds Feedback, Attention)
    with gr.Row():
        with gr.Column(scale=2):
            context = gr.Textbox(label="Passage", lines=7, max_lines=16, elem_id="ask-context",
                                 placeholder="Paste a passage (a paragraph or two).")
            question = gr.Textbox(label="Question", elem_id="ask-question",
                                  placeholder="Ask something the passage may answer, or may not.")
            ask_btn = gr.Button("Ask every variant", variant="primary", elem_id="ask-button")
            gr.Examples(EXAMPLES, inputs=[context, question], label="Examples (written for this demo)")
        with gr.Column(scale=3):
            timing = gr.Markdown("Answers appear here, one column per variant, then each variant's feedback on "
                                 "its own answer.")
            with gr.Row(equal_height=True):
                cards = []
                for i in range(slots):
                    with gr.Column(visible=False, min_width=200, elem_classes="variant-card") as col:
                        title = gr.Markdown(elem_id=f"variant-title-{i}")
                        answer = gr.Textbox(label="Answer", interactive=False, elem_id=f"variant-answer-{i}")
                        fb = gr.Textbox(label="Predicted self-feedback", lines=3, interactive=False,
                                        elem_id=f"variant-feedback-{i}")
                        revised = gr.Textbox(label="Revised answer", interactive=False, elem_id=f"variant-revised-{i}")
                    cards.append((col, title, answer, fb, revised))
            with gr.Accordion("Result as JSON", open=False):
                raw = gr.JSON(label="Last result")
    with gr.Group():
        gr.Markdown("### Your feedback on an answer — it becomes training data for LaFFi")
        with gr.Row():
            which = gr.Radio([], label="Which variant's answer?", elem_id="fb-variant")
            rating = gr.Radio(list(RATINGS), label="Rating", elem_id="fb-rating")
        with gr.Row():
            critique = gr.Textbox(label="Critique (what is wrong or right, and why)", lines=2, elem_id="fb-critique",
                                  placeholder="e.g. Incorrect: the passage says it was converted in 1952.")
            correct = gr.Textbox(label="Correct answer (optional)", elem_id="fb-correct")
            annotator = gr.Textbox(label="Your name or id (optional)", elem_id="fb-annotator")
        send = gr.Button("Send feedback", elem_id="fb-send")
        saved = gr.Markdown(elem_id="fb-status")

    def render(result):
        updates = []
        names = list(result["variants"])
        for i, (col, title, answer, fb, revised) in enumerate(cards):
            if i >= len(names):
                updates += [gr.Column(visible=False), "", "", "", ""]
                continue
            r = result["variants"][names[i]]
            feedback = r.get("feedback", "…thinking about its own answer…") or "(no feedback written)"
            shown = "…its answer comes from its feedback on a draft…" if r.get("pending") else r["answer"] or "(no answer)"
            updates += [gr.Column(visible=True), f"#### `{names[i]}`", shown, feedback,
                        (r.get("revised_answer") or "(no answer)") if "feedback" in r else ""]
        text = f"Answered in **{result['answer_seconds']:.2f} s** ({len(names)} variants in one batch)"
        if "feedback_seconds" in result:
            text += f"; self-feedback in **{result['feedback_seconds']:.2f} s**."
        if result.get("notice"):
            text += f"\n\n⚠️ {result['notice']}"
        return [*updates, text, result, result, gr.Radio(choices=names, value=None)]

    def ask(context_text, question_text):
        for result in run_ask(ctx, context_text, question_text):
            yield render(result)

    outputs = [c for card in cards for c in card] + [timing, raw, last, which]
    gr.on([ask_btn.click, question.submit], ask, inputs=[context, question], outputs=outputs, api_name="ask",
          concurrency_id="model", concurrency_limit=1)

    def send_feedback(result, variant, rating_text, critique_text, correct_text, annotator_text,
                      request: gr.Request):
        if not result:
            raise gr.Error("Ask a question first, then give feedback on one of the answers.")
        if variant not in (result or {}).get("variants", {}):
            raise gr.Error("Choose which variant's answer your feedback is about.")
        if not rating_text and not (critique_text or "").strip() and not (correct_text or "").strip():
            raise gr.Error("Give a rating, a critique or the correct answer (or several).")
        r = result["variants"][variant]
        row_id = ctx.store.add(
            session_id=getattr(request, "session_hash", None) or "api", variant=variant,
            adapter=str(ctx.lm.adapters.get(variant, "")) or None, context=result["context"],
            question=result["question"], answer=r["answer"], predicted_feedback=r.get("feedback"),
            thumbs=RATINGS.get(rating_text), critique=(critique_text or "").strip() or None,
            correct_answer=(correct_text or "").strip() or None, annotator=(annotator_text or "").strip() or None)
        # The row is committed to disk before this message is shown.
        return f"Saved feedback #{row_id} on `{variant}`'s answer. Thank you!", "", ""

    send.click(send_feedback, inputs=[last, which, rating, critique, correct, annotator],
               outputs=[saved, critique, correct], api_name="feedback")
    return last
