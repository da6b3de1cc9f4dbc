"""The Train tab: start a small LoRA run (SFT or LaFFi) in a separate process, watch its loss and ETA, stop and
resume it; a page refresh re-attaches to the running job. A finished adapter joins the Ask tab by itself.

Usage:  build_train_tab(ctx, jobs) inside a gr.Blocks.
"""

from __future__ import annotations

import time

import gradio as gr

from laffi.data import ARTICLE_SPLITS
from laffi.errors import LaffiError
from laffi.jobs import JobSpec
from laffi.ui.context import data_path, require


def loss_figure(rows: list[dict]):
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=[r["step"] for r in rows], y=[r["loss"] for r in rows], mode="lines+markers"))
    fig.update_layout(xaxis_title="step", yaxis_title="training loss (completion tokens)", height=320,
                      margin=dict(l=40, r=10, t=20, b=40))
    return fig


def describe(st: dict | None) -> str:
    if not st:
        return "No training job yet."
    loss = st.get("loss") or []
    state = st.get("state", "running")
    lines = [f"**Job `{st['name']}`: {state}** — {st.get('phase', '')} {st.get('detail', '') or ''}".rstrip()]
    if loss:
        last = loss[-1]
        step, total = last["step"], last.get("max_steps") or 0
        eta = ""
        if state == "running" and total and step:
            per_step = last["seconds"] / max(step - loss[0]["step"] + 1, 1)
            eta = f", about {max(total - step, 0) * per_step / 60:.1f} min left"
        lines.append(f"Step {step}/{total} · loss {last['loss']:.4f}{eta}.")
    if st.get("error"):
        lines.append(f"Error: {st['error']}")
    return "\n\n".join(lines)


def build_train_tab(ctx, jobs, admin) -> None:
    s = ctx.settings
    if jobs is None:
        gr.Markdown("Training is turned off on this deployment. Set `LAFFI_ENABLE_TRAINING=1` (and optionally "
                    "`LAFFI_ADMIN_PASSWORD`) to turn it on; see the README.")
        return
    with gr.Row():
        with gr.Column():
            method = gr.Radio(["laffi", "sft", "laffi+sft"], value="laffi", label="Method")
            name = gr.Textbox("laffi-live", label="Adapter name (letters, digits, - and _)", elem_id="train-name")
            source = gr.Radio(["shared SQuAD file", "upload"] if s.enable_upload else ["shared SQuAD file"],
                              value="shared SQuAD file", label="Questions")
            upload = gr.File(label="SQuAD JSON", file_types=[".json", ".jsonl"], visible=s.enable_upload)
            articles = gr.Dropdown(["all", *ARTICLE_SPLITS], value="train", label="Articles")
            limit = gr.Slider(4, 400, value=24, step=4, label="Questions (the base model answers them first)")
            use_human = gr.Checkbox(True, label="Use the feedback collected in the app (human)")
            fraction = gr.Slider(0, 1, value=0.5, step=0.05, label="Human fraction (as far as there is any)")
        with gr.Column():
            r = gr.Slider(1, 64, value=8, step=1, label="LoRA r")
            alpha = gr.Slider(1, 128, value=16, step=1, label="LoRA alpha")
            modules = gr.Textbox("q_proj,v_proj", label="Target modules")
            lr = gr.Number(3e-4, label="Learning rate")
            epochs = gr.Slider(1, 5, value=1, step=1, label="Epochs")
            batch = gr.Slider(1, 16, value=4, step=1, label="Batch size")
            max_length = gr.Slider(128, 2048, value=768, step=64, label="Max length (tokens)")
            with gr.Row():
                start = gr.Button("Start", variant="primary", elem_id="train-start")
                stop = gr.Button("Stop (saves a checkpoint)", elem_id="train-stop")
                resume = gr.Button("Resume", elem_id="train-resume")
    status = gr.Markdown(elem_id="train-status")
    plot = gr.Plot(label="Loss")
    cli = gr.Code(label="Equivalent command lines", language="shell", interactive=False)
    timer = gr.Timer(2.0)

    def poll():
        st = jobs.status()
        return describe(st), loss_figure(st.get("loss") or []) if st else None, (st or {}).get("cli", "")

    def do_start(unlocked, m, n, src, up, arts, lim, human, frac, r_, a_, mods, lr_, ep, bs, ml):
        require(s, unlocked, "Training")
        data = data_path(s, src, up, unlocked)
        try:
            spec = JobSpec(method=m, name=(n or "").strip(), data=data, articles=None if arts == "all" else arts,
                           limit=int(lim), human=str(ctx.store.path) if human else None, human_fraction=float(frac),
                           base=ctx.lm.config.base, adapters_dir=str(s.trained_dir),
                           train=dict(r=int(r_), alpha=int(a_), target_modules=mods, lr=float(lr_),
                                      epochs=float(ep), batch_size=int(bs), max_length=int(ml)))
            jobs.start(spec)
        except LaffiError as e:
            raise gr.Error(str(e)) from e
        time.sleep(0.2)
        return poll()

    def do(action, unlocked):
        require(s, unlocked, "Training")
        try:
            action()
        except LaffiError as e:
            raise gr.Error(str(e)) from e
        return poll()

    inputs = [admin, method, name, source, upload, articles, limit, use_human, fraction, r, alpha, modules, lr, epochs,
              batch, max_length]
    outputs = [status, plot, cli]
    start.click(do_start, inputs, outputs, api_name="train_start", concurrency_id="jobs", concurrency_limit=1)
    stop.click(lambda unlocked: do(jobs.stop, unlocked), admin, outputs, api_name="train_stop", concurrency_id="jobs")
    resume.click(lambda unlocked: do(jobs.resume, unlocked), admin, outputs, api_name="train_resume",
                 concurrency_id="jobs")
    timer.tick(poll, None, outputs, api_name="train_status", show_progress="hidden")
    return poll, outputs
