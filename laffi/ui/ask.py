"""The Ask tab: every variant answers side by side (one mixed batch), then predicts feedback on its own answer and
revises it; the audience rates and critiques any answer, stored at once as human feedback for LaFFi training.

Usage:  last, asked, saved, session = build_ask_tab(ctx) inside a gr.Blocks (last: the per-user gr.State holding the
        last question's result; asked, saved: the events, to chain updates of other tabs on; session: where
        session_text shows this browser's session id on load).
        for result in run_ask(ctx, passage, question): ...   # what /ask streams; the last one is the API's result
Every card fills token by token: the app's scheduler (laffi.serving.scheduler) answers every participant waiting
in one mixed batch and hands each request its own GenerationEvents, which it sends as the text so far every
STREAM_SECONDS; a request that waits says how many questions are ahead of it and for about how long. On ZeroGPU,
where a callback can't cross into the GPU worker, the answers and then the feedback arrive whole. Everything the model or a user wrote is
shown in Textboxes (plain text), never rendered as HTML.
"""

from __future__ import annotations

import copy
import time

import gradio as gr

from laffi.errors import LaffiError
from laffi.inference.answerability import DEFAULT_THRESHOLD, direct_thresholds
from laffi.inference.generation import GenerationConfig
from laffi.inference.prompts import first_line, fit_context
from laffi.inference.selffeedback import answer_paths, drafters
from laffi.inference.surface import LanguageModel
from laffi.serving.scheduler import QueueFull
from laffi.ui.context import ASK_GROUP, STORE_ONLY, ordered
from laffi.ui.examples import EXAMPLES
from laffi.ui.text import error

RATINGS = {"👍 good answer": 1, "👎 bad answer": -1}
MAX_SLOTS = 6  # variants shown side by side
# What a card says while a variant that does not answer directly is still choosing (AnswerPath.kind).
PENDING = {"feedback": "from its feedback on a draft", "verify": "from its verdicts on candidate answers",
           "rank": "from ranking candidate answers"}
CARD_PARTS = 7  # a variant card: column, title, answer, how sure, feedback, caveat, revised answer
STREAM_SECONDS = 0.2  # how often a streaming Ask sends the text so far: smooth to read, few updates to send


def validate_question(context: str, question: str, max_chars: int) -> None:
    if not (context or "").strip():
        raise error("The passage is empty: paste a passage, then ask a question about it.")
    if not (question or "").strip():
        raise error("The question is empty: type a question about the passage.")
    if len(context) > max_chars:  # request-size guard; below it long passages are cut to the model's window
        raise error(f"The passage has {len(context):,} characters; this app accepts at most {max_chars:,}. "
                    "Paste the part the question is about.")


def self_feedback_caveat(lm: LanguageModel, variant: str) -> str:
    """What the audience should know next to a predicted self-feedback: it is the model's guess, and how often its
    verdicts on its own answers were right where that was measured on the most questions (the adapter's
    self_feedback.json, else balanced_verdict_accuracy in its metrics.json)."""
    from laffi.adapter_folder import AdapterFolder
    from laffi.squad.data import ARTICLE_SPLITS

    folder = AdapterFolder(lm.adapters[variant]) if lm.adapters.get(variant) else None
    record = (folder.self_feedback() if folder else None) or (folder.metrics() if folder else None) or {}
    accuracy, given = record.get("balanced_verdict_accuracy"), record.get("verdicts_given")
    guess = "⚠️ The model's own guess about its answer, not a check."
    n, articles = record.get("n"), record.get("eval_articles")
    kind = f"{articles}-article" if articles in ARTICLE_SPLITS else "evaluation"
    on = f" on {n:,} {kind} questions" if isinstance(n, int) else ""
    if isinstance(given, (int, float)) and given == 0:
        return f"{guess} {variant} was trained to answer, not to judge: its feedback gave no verdict{on}."
    if not isinstance(accuracy, (int, float)):
        return f"{guess} How often {variant}'s verdicts are right is unmeasured."
    ci = record.get("ci")
    within = f" [95 % interval {ci[0]:.0f}-{ci[1]:.0f}%]" if isinstance(ci, list) and len(ci) == 2 else ""
    return (f"{guess} {variant}'s verdicts on its own answers (correct or not) were right {accuracy:.0f}% of the "
            f"time{within}{on} (balanced accuracy: 50% is a coin toss).")


def run_ask(ctx, context: str, question: str, interval: float = STREAM_SECONDS):
    """Generator of result dicts (result["phase"]): "loading" while the model loads (then it waits for it),
    "waiting" while other people's questions are ahead (result["waiting"]: the sentence), "answering" as every
    variant's answer streams in (where calls stream: not on ZeroGPU), "answered" once all are made, "feedback" as
    each variant's self-feedback streams, and "done" with the final result; "refused" (result["refused"]) alone
    when the room is full. Both model calls go through the app's scheduler (laffi.serving.scheduler), which
    answers everyone waiting in one batch."""
    validate_question(context, question, ctx.settings.max_context_chars)
    if not ctx.lm.ready:
        yield {"phase": "loading", "variants": {}}
    lm = ctx.lm.wait()  # a gr.Error saying why when the model failed to load
    if ctx.adapters_changed():  # an adapter trained (or replaced) since start-up answers without a restart
        ctx.scheduler.run_exclusive(ctx.sync_adapters)
    variants = ordered(lm.variants)[:MAX_SLOTS]
    limit = lm.max_context_tokens(ctx.settings.max_context_tokens)
    context, notice = fit_context(lm.tokenizer, context, question, limit)  # long passages: cut, and said so
    pair = [(context, question)]
    cfg = GenerationConfig(max_new_tokens=ctx.settings.max_new_tokens)
    paths = answer_paths(lm, variants)
    result = {"phase": "answering", "context": context, "question": question, "notice": notice,
              "variants": {v: {"answer": "", "answer_path": paths[v].label(), "answer_path_kind": paths[v].kind,
                               "pending": paths[v].kind != "direct"}
                           for v in variants}}
    start = time.perf_counter()

    def show(stage: str, field_name: str):
        def apply(events):
            changed = False
            for event in events:  # GenerationEvents: this stage's rows fill their cards (a chooser's are not shown)
                row = result["variants"].get(event.variant) if event.stage == stage else None
                # a character split over several tokens decodes as U+FFFD until its last byte: held back, as
                # transformers' TextStreamer does, so a card never shows a glyph that then changes
                text = first_line(event.text).rstrip("\ufffd")
                if row is None or row.get(field_name) == text:
                    continue
                row[field_name], changed = text, True
                if text.strip() and f"{stage}_first_token_seconds" not in result:
                    result[f"{stage}_first_token_seconds"] = round(time.perf_counter() - start, 3)
            return copy.deepcopy(result) if changed else None
        return apply

    def joined(stage: str):  # when its rows joined a batch: waiting for others' questions ends there
        def record():
            result.setdefault(f"{stage}_joined_seconds", round(time.perf_counter() - start, 3))
        return record

    def waiting(where):
        return {"phase": "waiting", "variants": {}, "waiting": where.sentence(), "ahead": where.ahead,
                "eta_seconds": where.seconds}

    drafting = drafters(variants, paths, feedback=True)
    try:  # first every direct answer (and the base model's drafts), in one mixed batch with everyone waiting ...
        direct = yield from ctx.scheduler.stream("answer", (pair, drafting, cfg), interval, show("answer", "answer"),
                                                 waiting, joined=joined("answer"))
    except QueueFull as e:  # a sentence in the status line, not an error badge on every output
        yield {"phase": "refused", "variants": {}, "refused": str(e)}
        return
    except LaffiError as e:
        raise error(e) from e
    result["answer_seconds"] = round(time.perf_counter() - start, 3)
    result["phase"] = "answered"
    thresholds = direct_thresholds(lm, variants)
    for v in variants:
        d, own = direct[v][0], paths[v].kind == "direct"
        result["variants"][v] = {"answer": d.text if own else "", "direct_answer": d.text, "raw": d.raw,
                                 "answer_path": paths[v].label(), "answer_path_kind": paths[v].kind,
                                 "pending": not own,
                                 **({"span": d.span, "na_prob": d.na_prob, "threshold": thresholds.get(v)}
                                    if own else {})}
    yield copy.deepcopy(result)
    result["phase"] = "feedback"
    start = time.perf_counter()  # ... then every variant's feedback on its draft, in one more
    results = yield from ctx.scheduler.stream("answer_all", (pair, variants, cfg, paths, direct), interval,
                                              show("feedback", "feedback"), waiting, admit=False,
                                              joined=joined("feedback"))
    result["feedback_seconds"] = round(time.perf_counter() - start, 3)
    result["total_seconds"] = round(result["answer_seconds"] + result["feedback_seconds"], 3)
    result["phase"] = "done"
    for v in variants:
        result["variants"][v] = results[v][0].fields()
    yield result


def confidence_line(r: dict) -> str:
    """What a variant thinks even where it abstains: its best span, how sure it is that the passage answers,
    and what its threshold (chosen on validation questions) decides. Empty where nothing was measured."""
    na, thr = r.get("na_prob"), r.get("threshold")
    if na is None:
        return ""
    needed = (f"{100 * (1 - thr):.0f} % (its threshold, chosen on validation questions)" if thr is not None
              else f"{100 * (1 - DEFAULT_THRESHOLD):.0f} % (no threshold chosen yet)")
    decision = "so it answers" if r.get("answer") else "so it says: no answer"
    return (f"Best span: {r.get('span') or '(none)'}\nAnswerable: {100 * (1 - na):.0f} %; it answers from "
            f"{needed}, {decision}.")


def status_line(result) -> str:
    """The Ask status: how far it got, with the time to the first token and the totals."""
    phase, n = result["phase"], len(result["variants"])
    if phase == "loading":
        return "⏳ Loading the model… your question is answered as soon as it is ready."
    if phase == "waiting":
        return result["waiting"]
    if phase == "refused":
        return f"⚠️ {result['refused']}"
    first = result.get("answer_first_token_seconds")
    first = f"first token after {first:.2f} s; " if first is not None else ""
    if phase == "answering":
        return f"Answering… ({first}{n} variants in one batch)"
    text = f"Answered in {result['answer_seconds']:.2f} s ({first}{n} variants in one batch)"
    fb_first = result.get("feedback_first_token_seconds")
    fb_first = f"first token after {fb_first:.2f} s, " if fb_first is not None else ""
    if phase == "done":
        text += (f"; self-feedback in {result['feedback_seconds']:.2f} s ({fb_first}total "
                 f"{result['total_seconds']:.2f} s).")
    else:
        text += "; now each variant's feedback on its own answer…"
    if result.get("notice"):
        text += f"\n⚠️ {result['notice']}"
    return text


def build_ask_tab(ctx):
    """Lays the tab out; returns (the per-user gr.State of the last result, the ask event, the feedback event)."""
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
            # A Textbox, not Markdown: Gradio shows the queue position and time estimate on a Textbox while the
            # request waits (a Markdown output only dims), and everyone's first output is this one.
            status = gr.Textbox("Answers appear below, one card per variant, then each variant's feedback on its "
                                "own answer.", label="Status", interactive=False, elem_id="ask-status", lines=2)
            with gr.Row(elem_classes=["variant-grid"]) as grid:
                cards = []
                for i in range(slots):
                    with gr.Column(visible=False, min_width=200, elem_classes="variant-card") as col:
                        title = gr.Markdown(elem_id=f"variant-title-{i}")
                        answer = gr.Textbox(label="Answer", interactive=False, elem_id=f"variant-answer-{i}")
                        sure = gr.Textbox(label="How sure (best span, answerable, decision)", lines=2,
                                          interactive=False, elem_id=f"variant-confidence-{i}")
                        fb = gr.Textbox(label="Predicted self-feedback (the model's own guess)", lines=3,
                                        interactive=False, elem_id=f"variant-feedback-{i}")
                        caveat = gr.Markdown(elem_id=f"variant-caveat-{i}")
                        revised = gr.Textbox(label="Revised answer", interactive=False, elem_id=f"variant-revised-{i}")
                    cards.append((col, title, answer, sure, fb, caveat, revised))
            with gr.Accordion("Result as JSON", open=False):
                raw = gr.JSON(label="Last result")
    with gr.Group():
        gr.Markdown("### Your feedback on an answer — it becomes training data for LaFFi")
        with gr.Row():
            which = gr.Radio(ctx.variant_names(), label="Which variant's answer?", elem_id="fb-variant")
            rating = gr.Radio(list(RATINGS), label="Rating", elem_id="fb-rating")
        with gr.Row():
            critique = gr.Textbox(label="Critique (what is wrong or right, and why)", lines=2, elem_id="fb-critique",
                                  placeholder="e.g. Incorrect: the passage says it was converted in 1952.")
            correct = gr.Textbox(label="Correct answer (optional)", elem_id="fb-correct")
            annotator = gr.Textbox(label="Your name or id (optional)", elem_id="fb-annotator")
        send = gr.Button("Send feedback", elem_id="fb-send")
        saved = gr.Markdown(elem_id="fb-status")
        session = gr.Markdown(elem_id="fb-session")  # this browser's session id: it withdraws the feedback

    def card(name, r, phase):
        """One variant's title, answer, feedback, caveat and revised answer at this phase of the Ask."""
        if r.get("pending"):
            shown = f"…its answer comes {PENDING.get(r.get('answer_path_kind'), 'from its feedback on a draft')}…"
        elif phase == "answering":
            shown = r["answer"] or "…"  # the reply so far
        else:
            shown = r["answer"] or "(no answer)"
        if phase in ("answering", "answered"):
            feedback = "…thinking about its own answer…"
        elif phase == "feedback":
            feedback = r.get("feedback") or "…"
        else:
            feedback = r.get("feedback") or "(no feedback written)"
        revised = (r.get("revised_answer") or "(no answer)") if phase == "done" and "feedback" in r else ""
        sure = confidence_line(r) if phase != "answering" else ""
        return [gr.Column(visible=True), f"#### `{name}`", shown, sure, feedback, self_feedback_caveat(ctx.lm, name),
                revised]

    def render(result):
        """The outputs for one yield of run_ask; text still streaming leaves the JSON, the per-user result and the
        feedback form alone (gr.skip), so a variant chosen for feedback stays chosen."""
        phase, names = result["phase"], list(result["variants"])
        if phase in ("loading", "waiting", "refused"):  # only the status line: nobody's cards change yet
            return [gr.skip()] * (1 + CARD_PARTS * len(cards)) + [status_line(result), gr.skip(), gr.skip(),
                                                                   gr.skip()]
        updates = [gr.Row(elem_classes=["variant-grid", f"variants-{len(names)}"])]  # the grid's columns: CSS
        for i in range(len(cards)):
            updates += (card(names[i], result["variants"][names[i]], phase) if i < len(names)
                        else [gr.Column(visible=False)] + [""] * (CARD_PARTS - 1))
        if phase in ("answering", "feedback"):
            return [*updates, status_line(result), gr.skip(), gr.skip(), gr.skip()]
        # a new question's answers clear the variant chosen for feedback; its self-feedback arriving does not
        choice = gr.Radio(choices=names, value=None) if phase == "answered" else gr.skip()
        return [*updates, status_line(result), result, result, choice]

    ready = gr.State(True)  # per user: the last click's passage and question were there (the API: always True)

    def ask(passage, question, inputs_ok=True):
        if not inputs_ok:  # the page said what is missing (check_inputs): nothing to answer, nothing marked failed
            yield [gr.skip()] * len(outputs)
            return
        for result in run_ask(ctx, passage, question):
            yield render(result)

    def check_inputs(passage, question):
        """Before the model is asked, in the page: what is missing goes into the status line, with what to do,
        instead of failing the request (which marks every output with an "Error" badge). The API's /ask checks
        the same in run_ask and answers with that sentence as its error."""
        try:
            validate_question(passage, question, ctx.settings.max_context_chars)
        except gr.Error as e:
            return f"⚠️ {e.message}", False
        return gr.skip(), True

    outputs = [grid, *(c for card in cards for c in card), status, raw, last, which]
    asked = gr.on([ask_btn.click, question.submit], check_inputs, inputs=[context, question], outputs=[status, ready],
                  api_name=False, queue=False, show_progress="hidden").then(
        ask, inputs=[context, question, ready], outputs=outputs, api_name="ask", **ASK_GROUP)

    def send_feedback(result, variant, rating, critique, correct_answer, annotator, request: gr.Request):
        if not result:
            raise error("Ask a question first, then give feedback on one of the answers.")
        if variant not in (result or {}).get("variants", {}):
            raise error("Choose which variant's answer your feedback is about.")
        if not rating and not (critique or "").strip() and not (correct_answer or "").strip():
            raise error("Give a rating, a critique or the correct answer (or several).")
        r = result["variants"][variant]
        row_id = ctx.store.add(
            session_id=getattr(request, "session_hash", None) or "api", variant=variant,
            adapter=str(ctx.lm.adapters.get(variant, "")) or None, context=result["context"],
            question=result["question"], answer=r["answer"], predicted_feedback=r.get("feedback"),
            thumbs=RATINGS.get(rating), critique=(critique or "").strip() or None,
            correct_answer=(correct_answer or "").strip() or None, annotator=(annotator or "").strip() or None)
        # The row is committed to disk before this message is shown.
        return f"Saved feedback #{row_id} on `{variant}`'s answer. Thank you!", "", ""

    saved_event = send.click(send_feedback, inputs=[last, which, rating, critique, correct, annotator],
                             outputs=[saved, critique, correct], api_name="feedback", **STORE_ONLY)
    return last, asked, saved_event, session


def session_text(request: gr.Request) -> str:
    """What a participant needs to take their feedback back: this browser's session id."""
    sid = getattr(request, "session_hash", None)
    if not sid:
        return ""
    return (f"Your session id: `{sid}`. Your feedback is stored with it; to withdraw it later, give this id in "
            "the Feedback tab (Withdraw).")
