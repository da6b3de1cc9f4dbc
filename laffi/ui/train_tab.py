"""The Train tab: start a small LoRA run (SFT or LaFFi) in a separate process, watch its loss and ETA, stop and
resume it; a page refresh re-attaches to the job and shows the settings it runs with. A finished adapter joins the
Ask tab by itself.

Usage:  poll, outputs = build_train_tab(ctx, jobs, admin) inside a gr.Blocks (poll: the status on page load).

Adapters never overwrite each other by accident: the name field starts with a name no adapter has, an empty name
is refused, an existing name of an adapter trained in the app is replaced only when "Replace" is ticked (the old
one stays until the new one is complete: laffi.training.trainer), and the shipped adapters can't be replaced from here.
LoRA and optimiser defaults are TrainConfig's, as on the command line.
"""

from __future__ import annotations

import re
import time
from dataclasses import fields
from pathlib import Path

import gradio as gr

from laffi.errors import LaffiError
from laffi.inference.models import ADAPTER_NAME_RE, BASE_VARIANT
from laffi.pipeline.jobs import JobSpec
from laffi.squad.data import ARTICLE_SPLITS, load_squad
from laffi.training.distributed import batch_plan, default_processes
from laffi.training.trainer import TrainConfig
from laffi.ui.context import data_path, require, upload_message
from laffi.ui.text import error, md_literal, name_range_errors

SHARED, UPLOAD, FEEDBACK = "shared SQuAD file", "upload", "feedback collected here"
DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}  # the CLI's defaults (`python -m laffi train`)
JOB_DEFAULTS = {f.name: f.default for f in fields(JobSpec)}
# The training settings on the form: TrainConfig fields, in the form's order, with the word a user sees for each
# (in TrainConfig's error sentences too). The form, the job it starts and a refreshed page's form read this one table;
# the values go to the job as they are ({field: value}) and TrainConfig makes them its types.
TRAIN_FIELDS = {"r": "LoRA r", "alpha": "LoRA alpha", "target_modules": "Target modules", "lr": "Learning rate",
                "epochs": "Epochs", "batch_size": "Batch size", "max_length": "Max length",
                "num_processes": "Processes", "early_stopping": "Early stopping"}
LABELS = {f"TrainConfig.{name}": label for name, label in TRAIN_FIELDS.items()}


def loss_figure(rows: list[dict]):
    """Training loss per step and, where the run holds examples out, the held-out loss at each checkpoint."""
    import plotly.graph_objects as go

    train = [r for r in rows if "loss" in r]
    held = [r for r in rows if "heldout_loss" in r]
    fig = go.Figure(go.Scatter(x=[r["step"] for r in train], y=[r["loss"] for r in train], mode="lines+markers",
                               name="training loss"))
    if held:
        fig.add_scatter(x=[r["step"] for r in held], y=[r["heldout_loss"] for r in held], mode="lines+markers",
                        name="held-out loss (never trained on)")
    fig.update_layout(xaxis_title="step", yaxis_title="loss (completion tokens)", height=320,
                      margin=dict(l=40, r=10, t=20, b=40), legend=dict(orientation="h", y=1.12))
    return fig


def describe(st: dict | None, data: str | None = None) -> str:
    """The job's status for people (Markdown; anything from files or errors shown literally). `data`: the job's
    data path, shown by its file name only (an upload's path is the server's)."""
    if not st:
        return "No training job yet."

    def text(value) -> str:
        value = str(value or "")
        return md_literal(value.replace(data, Path(data).name) if data else value)

    logged = st.get("loss") or []
    loss = [r for r in logged if "loss" in r]
    held = [r for r in logged if "heldout_loss" in r]
    state = st.get("state", "running")
    phase, detail = st.get("phase", ""), st.get("detail", "")
    if state == "running" and loss:  # steps are being logged: that is what the job does now, whatever it said
        phase, detail = "training", ""
    if phase == state:
        phase = ""
    lines = [f"**Job `{st['name']}`: {state}** — " + " ".join(t for t in (text(phase), text(detail)) if t)]
    if loss:
        last = loss[-1]
        step, total = last["step"], last.get("max_steps") or 0
        eta = ""
        if state == "running" and total and step:
            per_step = last["seconds"] / max(step - loss[0]["step"] + 1, 1)
            eta = f", about {max(total - step, 0) * per_step / 60:.1f} min left"
        best = min(held, key=lambda r: r["heldout_loss"]) if held else None
        lines.append(f"Step {step}/{total} · loss {last['loss']:.4f}{eta}." + (
            f" Held-out loss {held[-1]['heldout_loss']:.4f} (best {best['heldout_loss']:.4f} at step "
            f"{best['step']}: the checkpoint kept)." if best else ""))
    if st.get("error"):
        lines.append(f"**Error:** {text(st['error'])}")
    return "\n\n".join(lines)


def feedback_preview(store) -> tuple[str, list[list]]:
    """What "feedback collected here" will train on, before Start: counts (rows, sessions, raters, LaFFi and SFT
    rows, what is left out and why) and a table of the rows (plain text)."""
    from laffi.feedback.annotation import feedback_examples

    records, report = feedback_examples(store.rows())
    if not records:
        return ("No feedback collected yet that can train: ask a question in the Ask tab, then send a critique "
                "or a rating with the correct answer.", [])
    text = (f"**{report['usable']} feedback rows** from {report['sessions']} session(s) and {report['raters']} "
            f"rater(s): {report['laffi_rows']} LaFFi rows ({report['critiques']} critiques, {report['from_ratings']} "
            f"written from a rating and the correct answer), {report['sft_rows']} also SFT rows (right answer "
            f"known).")
    if report["skipped"]:
        text += f" Left out: {len(report['skipped'])} ({md_literal(report['skipped'][0])}" + (
            ", …)" if len(report["skipped"]) > 1 else ")")
    rows = [[r["feedback_row_id"], r["question"], r["prediction"] or "(no answer)", r["feedback"],
             r["feedback_source"], r["annotator"]] for r in records]
    return text, rows


PREVIEW_HEADERS = ["row", "question", "answer judged", "feedback (training target)", "source", "rater"]


def batch_text(batch_size, processes) -> str:
    """The effective batch the run will train with (what the user asked for, split over the processes)."""
    try:
        return "**Effective batch:** " + batch_plan(int(batch_size), int(processes)).describe() + "."
    except (LaffiError, TypeError, ValueError) as e:
        return f"⚠️ {md_literal(str(e))}"


def fresh_name(method: str, taken) -> str:
    """A name no adapter has yet: laffi-live, laffi-live-2, ... (per method)."""
    stem = f"{method.replace('+', '-')}-live"
    n = 1
    while (name := stem if n == 1 else f"{stem}-{n}") in taken:
        n += 1
    return name


def check_name(ctx, name: str, replace: bool) -> str:
    """The adapter name to train under, or a gr.Error that says what is wrong and what to do."""
    name = (name or "").strip()
    if not name:
        raise error("The adapter name is empty: type a name for the new adapter (letters, digits, - and _), e.g. "
                    f"{fresh_name('laffi', taken_names(ctx))}.")
    if not ADAPTER_NAME_RE.match(name) or name == BASE_VARIANT:
        raise error(f"The adapter name {name!r} is not valid: use up to 64 letters, digits, - and _ (starting with a "
                    f"letter or digit), and not '{BASE_VARIANT}'.")
    if ctx.shipped(name):
        raise error(f"{name!r} is an adapter that came with the app; it is never replaced from here. Choose "
                    "another name.")
    if (ctx.settings.trained_dir / name).is_dir() and not replace:
        raise error(f"An adapter named {name!r} already exists. Choose another name, or tick 'Replace an existing "
                    "adapter of this name' (the old one stays until the new one is complete).")
    return name


def taken_names(ctx) -> set[str]:
    """Every variant's name and every folder in the app's adapters folder (a finished or half-written adapter)."""
    trained = ctx.settings.trained_dir
    folders = {p.name for p in trained.iterdir() if p.is_dir()} if trained.is_dir() else set()
    return set(ctx.variant_names()) | folders


def build_train_tab(ctx, jobs, admin):
    s = ctx.settings
    if jobs is None and s.training_off_reason:
        gr.Markdown(s.training_off_reason, elem_id="train-off")
        return None
    if jobs is None:
        gr.Markdown("Training is turned off on this deployment. Set `LAFFI_ENABLE_TRAINING=1` (and optionally "
                    "`LAFFI_ADMIN_PASSWORD`) to turn it on; see the README.")
        return None
    with gr.Row():
        with gr.Column():
            method = gr.Radio(["laffi", "sft", "laffi+sft"], value="laffi", label="Method", elem_id="train-method")
            name = gr.Textbox(fresh_name("laffi", taken_names(ctx)), label="Adapter name (letters, digits, - and _)",
                              elem_id="train-name")
            replace = gr.Checkbox(False, label="Replace an existing adapter of this name (trained in this app; the "
                                               "old one stays until the new one is complete)",
                                  elem_id="train-replace")
            source = gr.Radio([SHARED, UPLOAD, FEEDBACK] if s.enable_upload else [SHARED, FEEDBACK], value=SHARED,
                              label="Data", elem_id="train-source")
            upload = gr.File(label="SQuAD JSON", file_types=[".json", ".jsonl"], visible=False,
                             elem_id="train-upload")
            articles = gr.Dropdown(["all", *ARTICLE_SPLITS], value=JOB_DEFAULTS["articles"], label="Articles")
            limit = gr.Slider(4, 400, value=JOB_DEFAULTS["limit"], step=4,
                              label="Questions (the base model answers them first)")
            use_human = gr.Checkbox(True, label="Also use collected feedback that matches a SQuAD question (human)")
            fraction = gr.Slider(0, 1, value=0.5, step=0.05, elem_id="train-fraction",
                                 label="Human fraction (with 'feedback collected here': 1 = the feedback alone, "
                                       "below 1 = mixed with AI feedback on SQuAD questions)")
        with gr.Column():
            r = gr.Slider(1, 64, value=DEFAULTS["r"], step=1, label="LoRA r", elem_id="train-r")
            alpha = gr.Slider(1, 128, value=DEFAULTS["alpha"], step=1, label="LoRA alpha", elem_id="train-alpha")
            modules = gr.Textbox(DEFAULTS["target_modules"], label="Target modules", elem_id="train-modules")
            lr = gr.Number(DEFAULTS["lr"], label="Learning rate")
            epochs = gr.Slider(1, 5, value=DEFAULTS["epochs"], step=1, label="Epochs", elem_id="train-epochs")
            batch = gr.Slider(1, 16, value=DEFAULTS["batch_size"], step=1, label="Batch size", elem_id="train-batch")
            max_length = gr.Slider(128, 2048, value=DEFAULTS["max_length"], step=64, label="Max length (tokens)")
            patience = gr.Slider(0, 10, value=DEFAULTS["early_stopping"], step=1, elem_id="train-early-stopping",
                                 label="Early stopping: held-out scores without improvement before it stops (0: off; "
                                       "the best checkpoint is kept either way)")
            procs = default_processes()
            processes = gr.Slider(1, max(8, procs), value=procs, step=1, elem_id="train-processes",
                                  label="Processes (one per GPU; more than 1 trains through accelerate launch)")
            effective = gr.Markdown(batch_text(DEFAULTS["batch_size"], procs), elem_id="train-effective")
            with gr.Row():
                start = gr.Button("Start", variant="primary", elem_id="train-start")
                stop = gr.Button("Stop (saves a checkpoint)", elem_id="train-stop")
                resume = gr.Button("Resume", elem_id="train-resume")
    with gr.Group(visible=False) as preview_box:
        preview_text = gr.Markdown(elem_id="train-feedback-count")
        preview = gr.Dataframe(headers=PREVIEW_HEADERS, interactive=False, wrap=True, elem_id="train-feedback-rows",
                               label="The collected feedback this run will train on")
        preview_btn = gr.Button("Refresh the list", size="sm")
    name_range_errors(limit, fraction, r, alpha, epochs, batch, max_length, patience)

    def train_feedback_preview():
        text, rows = feedback_preview(ctx.store)
        return text, rows

    def show_source(data_source):
        shown = data_source == FEEDBACK
        text, rows = feedback_preview(ctx.store) if shown else ("", [])
        return gr.File(visible=data_source == UPLOAD), gr.Group(visible=shown), text, rows

    preview_btn.click(train_feedback_preview, None, [preview_text, preview], api_name="train_feedback_preview")
    for knob in (batch, processes):
        knob.change(batch_text, [batch, processes], effective, api_name=False, show_progress="hidden")
    source.change(show_source, source, [upload, preview_box, preview_text, preview], api_name=False)
    status = gr.Markdown(elem_id="train-status")
    plot = gr.Plot(label="Loss", elem_id="train-plot")
    cli = gr.Code(label="Equivalent command lines", language="shell", interactive=False)
    timer = gr.Timer(2.0)
    knobs = [r, alpha, modules, lr, epochs, batch, max_length, processes, patience]  # TRAIN_FIELDS, in order
    form = [method, name, replace, source, articles, limit, use_human, fraction, *knobs]

    def poll():
        st = jobs.status()
        spec = jobs.spec() if st else None
        return (describe(st, spec.data if spec else None), loss_figure(st.get("loss") or []) if st else None,
                (st or {}).get("cli", ""))

    def train_values(train: dict) -> list:
        t = {**DEFAULTS, "num_processes": procs, **{k: v for k, v in train.items() if v is not None}}
        return [t[name] for name in TRAIN_FIELDS]

    def form_values(spec: JobSpec | None) -> list:
        """The form as the job `spec` was started (a refreshed page shows what runs), or fresh defaults."""
        if spec is None:
            return ["laffi", fresh_name("laffi", taken_names(ctx)), False, SHARED, JOB_DEFAULTS["articles"],
                    JOB_DEFAULTS["limit"], True, 0.5, *train_values({})]
        return [spec.method, spec.name, spec.overwrite,
                FEEDBACK if spec.feedback else SHARED if spec.data == str(s.squad) else UPLOAD,
                spec.articles or "all", spec.limit, bool(spec.human), spec.human_fraction, *train_values(spec.train)]

    def attach():
        st = jobs.status()
        spec = jobs.spec() if st and st.get("state") != "finished" else None
        return [*poll(), *form_values(spec)]

    def train_start(unlocked, method, adapter_name, data_source, upload_file, articles, questions, use_app_feedback,
                    human_fraction, lora_r, lora_alpha, target_modules, learning_rate, epochs, batch_size,
                    max_length, replace_existing, processes, early_stopping=0):
        require(s, unlocked, "Training")
        adapter_name = check_name(ctx, adapter_name, bool(replace_existing))
        feedback = None
        if data_source == FEEDBACK:
            if not feedback_preview(ctx.store)[1]:
                raise error("No feedback collected yet that can train: ask a question in the Ask tab and send a "
                            "critique (or a rating with the correct answer), then start.")
            if float(human_fraction) <= 0:
                raise error("With 'feedback collected here', the human fraction must be above 0 (1 = the feedback "
                            "alone).")
            feedback, data_source = str(ctx.store.path), SHARED  # the SQuAD file is only read for the AI mix
        data = data_path(s, data_source, upload_file, unlocked)
        if data_source == UPLOAD:  # a file that can't be read: a sentence now, not a failed job later
            try:
                load_squad(data)
            except LaffiError as e:
                raise error(upload_message(e, data)) from e
        try:
            spec = JobSpec(method=method, name=adapter_name, data=data,
                           articles=None if articles == "all" else articles, limit=int(questions),
                           human=str(ctx.store.path) if use_app_feedback and not feedback else None,
                           human_fraction=float(human_fraction), feedback=feedback, base=ctx.lm.config.base,
                           adapters_dir=str(s.trained_dir), overwrite=bool(replace_existing),
                           train=dict(zip(TRAIN_FIELDS, (lora_r, lora_alpha, target_modules, learning_rate, epochs,
                                                         batch_size, max_length, processes, early_stopping or 0))))
            jobs.start(spec)
        except LaffiError as e:
            raise error(re.sub("|".join(map(re.escape, LABELS)), lambda m: LABELS[m.group(0)], str(e))) from e
        time.sleep(0.2)
        return poll()

    def act(action, unlocked):
        require(s, unlocked, "Training")
        try:
            action()
        except LaffiError as e:
            raise error(e) from e
        return poll()

    def train_stop(unlocked):
        return act(jobs.stop, unlocked)

    def train_resume(unlocked):
        return act(jobs.resume, unlocked)

    outputs = [status, plot, cli]
    start.click(train_start, [admin, method, name, source, upload, articles, limit, use_human, fraction, r, alpha,
                              modules, lr, epochs, batch, max_length, replace, processes, patience],
                outputs, api_name="train_start", concurrency_id="jobs", concurrency_limit=1)
    stop.click(train_stop, admin, outputs, api_name="train_stop", concurrency_id="jobs")
    resume.click(train_resume, admin, outputs, api_name="train_resume", concurrency_id="jobs")
    timer.tick(poll, None, outputs, api_name="train_status", show_progress="hidden")
    return attach, [*outputs, *form]
