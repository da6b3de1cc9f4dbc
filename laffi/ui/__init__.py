"""The laffi app (Gradio Blocks): one base model and its LoRA adapters side by side, with self-feedback, attention
views, live feedback capture, training and evaluation. One module per tab; this one lays them out.

Usage:
    demo = build_demo()                         # model and settings from the environment (laffi.settings)
    demo = build_demo(lm=lm, settings=Settings.from_env(data_dir=tmp))   # tests
    launch(demo, settings)                      # queue limits and server address, as `python app.py` does
"""

from __future__ import annotations

import os

import gradio as gr

from laffi.settings import Settings

CSS = ".variant-card {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 6px;}"


def status_text(lm) -> str:
    dtype = str(next(lm.model.parameters()).dtype).replace("torch.", "")
    lines = [f"**Model:** `{lm.config.base}` on {lm.device.type} ({dtype}) · **variants:** "
             + ", ".join(f"`{v}`" for v in lm.variants)]
    missing = [name for name in ("sft", "laffi") if name not in lm.variants]
    if missing:
        lines.append("The " + " and ".join(f"`{m}`" for m in missing) + " adapter"
                     + ("s are" if len(missing) > 1 else " is") + " not trained yet, so "
                     + ("only `base` answers" if len(lm.variants) == 1 else "they are not shown")
                     + ". Train them in the Train tab or with `python -m laffi pipeline` (see the README).")
    lines += [f"⚠️ {w}" for w in lm.warnings]  # adapter folder names only: [A-Za-z0-9_-] or quoted by us
    return "\n\n".join(lines)


def build_demo(lm=None, settings: Settings | None = None) -> gr.Blocks:
    """The whole app around one loaded model (loaded from the settings when not given)."""
    from laffi.jobs import JobManager
    from laffi.models import ModelConfig, load_model
    from laffi.ui.ask import build_ask_tab
    from laffi.ui.attention_tab import build_attention_tab
    from laffi.ui.context import AppContext, build_admin
    from laffi.ui.evaluate_tab import build_evaluate_tab
    from laffi.ui.feedback_tab import build_feedback_tab
    from laffi.ui.train_tab import build_train_tab
    from laffi.webassets import ensure_js

    settings = settings or Settings.from_env()
    lm = lm or load_model(ModelConfig(**settings.model_kwargs()))
    lm.watch(settings.trained_dir)  # adapters trained in the app join without a restart
    ctx = AppContext.create(lm, settings)
    js = ensure_js()
    if js:
        gr.set_static_paths([str(js)])
    jobs = JobManager(settings.runs_dir / "jobs") if settings.enable_training else None
    with gr.Blocks(title="LaFFi — natural-language feedback for fine-tuning") as demo:
        gr.Markdown("# LaFFi: natural-language feedback for fine-tuning\n"
                    "One base model with LoRA adapters trained by plain SFT and by LaFFi (learning to predict an "
                    "annotator's feedback on its own answers), side by side. Your feedback becomes training data.")
        gr.Markdown(status_text(lm))
        admin = build_admin(settings)  # per-session unlock, only when LAFFI_ADMIN_PASSWORD is set
        with gr.Tab("Ask"):
            last = build_ask_tab(ctx)
        with gr.Tab("Attention"):
            build_attention_tab(ctx, last, f"/gradio_api/file={js}" if js else None)
        with gr.Tab("Train"):
            train = build_train_tab(ctx, jobs, admin)
        with gr.Tab("Evaluate"):
            build_evaluate_tab(ctx, admin)
        with gr.Tab("Feedback"):
            show, filters, outputs = build_feedback_tab(ctx, admin)
        demo.load(show, filters, outputs, api_name=False)
        if train:
            demo.load(train[0], None, train[1], api_name=False)  # a refreshed page re-attaches to the running job
    return demo


def launch(demo: gr.Blocks, settings: Settings | None = None, **kwargs):
    """Queue (one model worker; LAFFI_QUEUE_SIZE may wait) and serve on GRADIO_SERVER_NAME/PORT (loopback:7860)."""
    settings = settings or Settings.from_env()
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=1)
    return demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                       server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), css=CSS, **kwargs)
