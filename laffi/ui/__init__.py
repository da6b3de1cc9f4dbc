"""The laffi app (Gradio Blocks): one base model and its LoRA adapters side by side, with self-feedback, attention
views, live feedback capture, training and evaluation. One module per tab; this one lays them out.

    ask, results_tab, attention_tab, feedback_tab, train_tab, evaluate_tab   the tabs (thin callbacks over the library)
    context    what the tabs share (AppContext: the model, the feedback store, the settings; the admin unlock)
    loading    the model loading behind a served page (LazyModel), the status line
    text       pop-ups and user text as text, never HTML
    examples   the passages written for this demo (the Ask tab's examples, the start-up warm-up)
    room       the room's address and QR code when the app serves a room

Usage:
    settings = Settings.from_env()              # read by the entry point (app.py), passed to everything here
    launch(build_app(settings=settings, defer_load=True), settings)   # as `python app.py`: the page, then the model
    demo = build_demo(settings=settings)        # the model loads in a background thread while the page is served
    demo = build_demo(lm=lm, settings=Settings.from_env(data_dir=tmp))   # tests: a loaded model, ready at once
    demo = build_demo(lm=LazyModel(settings, load=fn), settings=settings)  # tests: a loader of their own
    app = build_app(lm=lm, settings=settings); app.demo, app.lm   # the page and the model behind it
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gradio as gr

from laffi.inference.surface import LanguageModel
from laffi.settings import Settings

if TYPE_CHECKING:
    from laffi.ui.loading import LazyModel

# Variant cards sit in a grid whose column count follows the number of variants (set by the Ask tab's render):
# 4 variants are 2 x 2, never 3 + 1 with the last card stretched over the whole row.
CSS = """
.variant-card {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 6px;}
.variant-grid {display: grid !important; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: var(--layout-gap);}
.variant-grid.variants-1 {grid-template-columns: minmax(0, 1fr);}
.variant-grid.variants-2, .variant-grid.variants-4 {grid-template-columns: repeat(2, minmax(0, 1fr));}
"""


LOADING = ("⏳ **Loading the model…** The page works meanwhile: a question asked now is answered as soon as the "
           "model is ready.")


def status_text(lm: LanguageModel, variants: list[str] | None = None) -> str:
    """The header: the model, its variants (by default those loaded) and what is missing; while the model loads
    (a laffi.ui.loading.LazyModel not ready yet), that it is loading."""
    from laffi.ui.loading import LazyModel

    variants = variants or lm.variants
    lazy = lm if isinstance(lm, LazyModel) else None  # a LoadedModel is ready and did not fail
    if lazy is not None and lazy.failed is not None:
        from laffi.ui.text import md_literal

        why = (str(lazy.failed).strip().splitlines() or [type(lazy.failed).__name__])[0][:300]
        return f"⚠️ **The model failed to load:** {md_literal(why)}"
    if lazy is not None and not lazy.ready:
        return f"**Model:** `{lm.config.base}` · **variants:** " + ", ".join(f"`{v}`" for v in variants) + \
            "\n\n" + LOADING
    from laffi.inference.answerability import calibration_warnings

    dtype = str(next(lm.model.parameters()).dtype).replace("torch.", "")
    lines = [f"**Model:** `{lm.config.base}` on {lm.device.type} ({dtype}) · **variants:** "
             + ", ".join(f"`{v}`" for v in variants)]
    if lm.precision is not None:
        from laffi.ui.text import md_literal

        lines.append(f"Precision: {md_literal(lm.precision.reason)}.")
    missing = [name for name in ("sft", "laffi") if name not in variants]
    if missing:
        lines.append("The " + " and ".join(f"`{m}`" for m in missing) + " adapter"
                     + ("s are" if len(missing) > 1 else " is") + " not trained yet, so "
                     + ("only `base` answers" if len(variants) == 1 else "they are not shown")
                     + ". Train them in the Train tab or with `python -m laffi pipeline` (see the README).")
    lines += [f"⚠️ {w}" for w in lm.warnings + calibration_warnings(lm, variants)]  # adapter folder names only: [A-Za-z0-9_-] or quoted by us
    return "\n\n".join(lines)


@dataclass(frozen=True)
class App:
    """The page and the model behind it: what `launch` serves, and starts loading once the server is up."""

    demo: gr.Blocks
    lm: "LazyModel"
    scheduler: object = None  # laffi.serving.scheduler.Scheduler: owns the model, batches the room's Asks


def build_demo(lm=None, *, settings: Settings) -> gr.Blocks:
    """The page of build_app, its model loading (or loaded) already."""
    return build_app(lm, settings=settings).demo


def build_app(lm=None, *, settings: Settings, defer_load: bool = False) -> App:
    """The whole app around one model: `lm` loaded already (ready at once), a LazyModel (started here, after the
    page is built), or None: loaded from the settings in the background - except on ZeroGPU, where the model must
    be on (emulated) CUDA before `spaces` registers the GPU functions, so it is loaded here first. defer_load:
    the load starts in `launch`, once the server is up (app.py: its imports would otherwise hold the GIL while
    the server starts), instead of at the end of this function."""
    from laffi.pipeline.jobs import JobManager
    from laffi.serving.webassets import ensure_js
    from laffi.ui.ask import build_ask_tab, session_text
    from laffi.ui.attention_tab import build_attention_tab
    from laffi.ui.context import STORE_ONLY, AppContext, build_admin
    from laffi.ui.evaluate_tab import build_evaluate_tab
    from laffi.ui.feedback_tab import build_feedback_tab
    from laffi.ui.loading import LazyModel
    from laffi.ui.results_tab import build_results_tab
    from laffi.ui.train_tab import build_train_tab

    if lm is None and settings.zero_gpu:
        from laffi.inference.models import ModelConfig, load_model

        lm = load_model(ModelConfig(**settings.model_kwargs()))
    ctx = AppContext.create(lm if lm is not None else LazyModel(settings), settings)
    lm = ctx.lm
    js = ensure_js()
    if js:
        gr.set_static_paths([str(js)])
    jobs = JobManager(settings.runs_dir / "jobs", settings.stop_grace_seconds) if settings.enable_training else None
    with gr.Blocks(title="LaFFi — natural-language feedback for fine-tuning") as demo:
        gr.Markdown("# LaFFi: natural-language feedback for fine-tuning\n"
                    "One base model with LoRA adapters trained by plain SFT and by LaFFi (learning to predict an "
                    "annotator's feedback on its own answers), side by side. Your feedback becomes training data.")
        header = gr.Markdown(status_text(lm, ctx.variant_names()), elem_id="model-status")
        with gr.Row(visible=False, elem_id="room") as room_row:  # shown when the app serves a room
            room_text = gr.Markdown(elem_id="room-address")
            room_qr = gr.Image(show_label=False, height=140, width=140, interactive=False, elem_id="room-qr")
        # While the model loads, every open page asks each second whether it is ready, to replace "Loading…"
        ticking = gr.Timer(1.0, active=not lm.ready)
        admin = build_admin(settings)  # per-session unlock, only when LAFFI_ADMIN_PASSWORD is set
        with gr.Tab("Ask"):
            last, asked, saved, session = build_ask_tab(ctx)
        with gr.Tab("Results"):  # the committed study: no model run, so it shows while the model loads
            build_results_tab()
        with gr.Tab("Attention") as attention_tab:
            attention_lists = build_attention_tab(ctx, last, f"/gradio_api/file={js}" if js else None)
        with gr.Tab("Train"):
            train = build_train_tab(ctx, jobs, admin)
        with gr.Tab("Evaluate") as evaluate_tab:
            evaluate_lists = build_evaluate_tab(ctx, admin)
        with gr.Tab("Feedback") as feedback_tab:
            feedback_views = build_feedback_tab(ctx, admin)
        # Lists of variants follow adapters trained while the app runs: on page load and when their tab opens.
        def header_text():
            return status_text(lm, ctx.variant_names())

        def header_while_loading():
            return header_text(), gr.Timer(active=not (lm.ready or lm.failed))

        for trigger in (demo.load, ticking.tick):
            trigger(header_while_loading, None, [header, ticking], api_name=False, show_progress="hidden",
                    concurrency_limit=None)
        asked.then(header_text, None, header, api_name=False)  # an adapter that just joined the answers
        for tab, (refresh, inputs, outputs) in ((attention_tab, attention_lists), (evaluate_tab, evaluate_lists)):
            demo.load(refresh, inputs, outputs, api_name=False)
            tab.select(refresh, inputs, outputs, api_name=False)
        def show_room():
            from laffi.ui.room import current_room, qr_image, room_markdown

            url = current_room()
            return gr.Row(visible=bool(url)), room_markdown(), qr_image(url) if url else None

        demo.load(show_room, None, [room_row, room_text, room_qr], api_name=False)
        demo.load(session_text, None, session, api_name=False)
        for show, inputs, shown in feedback_views:  # the list and the agreement with LaFFi's predicted feedback
            demo.load(show, inputs, shown, api_name=False)
            feedback_tab.select(show, inputs, shown, api_name=False)
            # a saved feedback is in the Feedback tab at once, never waiting for the model
            saved.then(show, inputs, shown, api_name=False, **STORE_ONLY)
        if train:
            demo.load(train[0], None, train[1], api_name=False)  # a refreshed page re-attaches to the running job
    lm.on_ready = ctx.model_loaded
    if not defer_load:
        lm.start()  # after the page is built: it is served while the model loads
    return App(demo, lm, ctx.scheduler)


def launch_options(argv: list[str] | None = None) -> dict:
    """`python app.py`'s options as demo.launch keywords (--help prints them and exits)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python app.py", description="Serve the laffi app. The model, adapters and switches come from LAFFI_* "
        "variables (README, 'Deploying'). To serve a room, set LAFFI_ADMIN_PASSWORD (training, exports and "
        "everyone's feedback then need it) and use --host 0.0.0.0: every page shows the address to open, with a "
        "QR code.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="Address to serve on: 127.0.0.1 (this machine only, the default) or 0.0.0.0 (every "
                             "device on the network: a room). Default: $GRADIO_SERVER_NAME or 127.0.0.1.")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                        help="Port (default: $GRADIO_SERVER_PORT or 7860).")
    parser.add_argument("--share", action="store_true",
                        help="Also ask Gradio for a public share link (needs the internet; the page shows it).")
    args = parser.parse_args(argv)
    return {"server_name": args.host, "server_port": args.port, "share": args.share}


def launch(app: App, settings: Settings, **kwargs):
    """Serve app.demo and start loading app.lm (a no-op when build_app started it). Queue (one model worker;
    LAFFI_QUEUE_SIZE may wait) and serve on GRADIO_SERVER_NAME/PORT (loopback:7860) with the app's CSS; keyword
    arguments go to demo.launch (tests: server_port=None, prevent_thread_lock=True).
    Served beyond this machine, the room's address is recorded for every page to show (laffi.ui.room)."""
    from laffi.ui.room import room_url, set_room

    demo = app.demo
    # Gradio's queue holds events until they start: Asks start at once (the scheduler refuses past queue_size
    # with a sentence), so its bound is for the tabs that take turns (Attention, Evaluate) and for bursts
    demo.queue(max_size=2 * settings.queue_size, default_concurrency_limit=1)
    # every Ask in flight holds a worker thread while the scheduler answers it (laffi.serving.scheduler), so there
    # are threads for a full room and for everything else (saves, the header) beside it
    options = {"server_name": os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
               "server_port": int(os.environ.get("GRADIO_SERVER_PORT", "7860")), "css": CSS,
               "max_threads": settings.queue_size + 40}
    block = not kwargs.pop("prevent_thread_lock", False)
    served = demo.launch(**{**options, **kwargs, "prevent_thread_lock": True})
    set_room(room_url(demo.server_name, demo.server_port, getattr(demo, "share_url", None)))
    app.lm.start()  # the page is served now; a no-op when build_app started the load already
    if block:
        demo.block_thread()  # what demo.launch does by default: serve until interrupted
    return served
