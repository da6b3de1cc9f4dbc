"""The Feedback tab: browse and filter what the audience gave, counts, and exports (JSONL, a `datasets` folder,
a Hub dataset when LAFFI_FEEDBACK_REPO and HF_TOKEN are set); withdrawal by session id. Everyone's rows are
listed to the admin (or on an app that serves only this machine); a participant in a room or on a Space sees
their own session's rows. Below the list, LaFFi's predicted feedback scored against the room's ratings
(laffi.feedback.agreement): the numbers for everyone, the disagreeing rows by the same rule as the list.

Usage:  views = build_feedback_tab(ctx, admin) inside a gr.Blocks: [(refresh, inputs, outputs)] for the list and
        the agreement, to run on load, on opening the tab and after a feedback is saved.
Table cells are plain text (no HTML, no Markdown); an empty answer is "(no answer)".
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from pathlib import Path

import gradio as gr

from laffi.errors import LaffiError
from laffi.feedback.agreement import DISAGREEMENT_HEADERS, HEADERS, agreement_table, disagreement_table, report
from laffi.feedback.hub_sync import sync_status
from laffi.io import write_jsonl_atomic
from laffi.ui.context import STORE_ONLY, ordered, require
from laffi.ui.text import error

SHOWN = ["id", "time", "variant", "rating", "question", "answer", "critique", "correct_answer", "annotator"]


def filter_rows(rows: list[dict], variant: str | None, rating: str | None, annotator: str | None) -> list[dict]:
    """The rows that match every filter; an empty filter (None, "" or "all") matches everything. Gradio sends None
    for a filter the page has not filled in yet (on load)."""
    wanted = (annotator or "").strip().lower()
    out = []
    for r in rows:
        if variant not in (None, "", "all") and r["variant"] != variant:
            continue
        if rating == "👍" and r["thumbs"] != 1 or rating == "👎" and r["thumbs"] != -1:
            continue
        if wanted and wanted not in (r["annotator"] or "").lower():
            continue
        out.append(r)
    return out


def table(rows: list[dict]) -> list[list]:
    rating = {1: "👍", -1: "👎"}
    return [[r["id"], dt.datetime.fromtimestamp(r["created_at"]).strftime("%Y-%m-%d %H:%M:%S"), r["variant"],
             rating.get(r["thumbs"], ""), r["question"], r["answer"] or "(no answer)", r["critique"] or "",
             r["correct_answer"] or "", r["annotator"] or ""] for r in rows]


def counts(rows: list[dict]) -> str:
    ups, downs = sum(r["thumbs"] == 1 for r in rows), sum(r["thumbs"] == -1 for r in rows)
    critiques = sum(bool(r["critique"]) for r in rows)
    per_variant = {}
    for r in rows:
        per_variant[r["variant"]] = per_variant.get(r["variant"], 0) + 1
    by = ", ".join(f"`{v}` {n}" for v, n in sorted(per_variant.items()))  # variant names are [A-Za-z0-9_-]
    return (f"**{len(rows)}** feedback events shown · 👍 {ups} · 👎 {downs} · {critiques} with a critique"
            + (f" · per variant: {by}" if by else ""))


NO_AGREEMENT = ("No rated answer has a predicted self-feedback yet. Ask a question in the Ask tab and rate an "
                "answer (👍 or 👎): each variant's guess about its own answer is then scored against yours here.")


def agreement_note(result: dict, everyone: bool) -> str:
    """What the agreement table says and whose disagreeing rows are listed (numbers only: no user text)."""
    if not result["variants"]:
        return NO_AGREEMENT
    listed = sum(len(v["disagreement_rows"]) for v in result["variants"])
    total = sum(v["disagreements"] for v in result["variants"])
    whose = "everyone's" if everyone else "your session's"
    return (f"Per variant: how often the verdict it predicted on its own answer (Correct, or not) matched the "
            f"participant's rating, over **{result['rated']}** rated answers with a predicted feedback. Balanced "
            "accuracy is the mean of its hit rates on the answers rated right and on those rated wrong (50 % is a "
            "coin toss); the interval is the Wilson score interval (95 %) of the agreement; *always the majority "
            f"rating* is what never judging would agree. Disagreements: {total}, of which {listed} listed below "
            f"({whose}).")


def export_jsonl(rows: list[dict], folder: Path) -> Path:
    path = folder / f"laffi-feedback-{dt.datetime.now():%Y%m%d-%H%M%S}.jsonl"
    write_jsonl_atomic(path, rows)
    return path


def export_dataset(rows: list[dict], folder: Path) -> Path:
    """A `datasets` folder (save_to_disk), zipped for download; built in a temp dir, renamed into place."""
    from datasets import Dataset

    name = f"laffi-feedback-{dt.datetime.now():%Y%m%d-%H%M%S}"
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        Dataset.from_list(rows).save_to_disk(str(Path(tmp) / name))
        archive = shutil.make_archive(str(Path(tmp) / name), "zip", tmp, name)
        final = folder / f"{name}.zip"
        os.replace(archive, final)
    return final


def build_feedback_tab(ctx, admin):
    store, exports = ctx.store, ctx.settings.data_dir / "exports"
    with gr.Row():
        variant = gr.Dropdown(["all"], value="all", label="Variant", allow_custom_value=True)
        rating = gr.Radio(["all", "👍", "👎"], value="all", label="Rating")
        annotator = gr.Textbox(label="Annotator contains")
        refresh = gr.Button("Refresh")
    summary = gr.Markdown()
    # Where collected rows are kept (local SQLite, and the Hub dataset push when configured): checked every minute.
    # A Textbox: the push error it may quote is never rendered as markup.
    gr.Textbox(lambda: sync_status(ctx.sync, ctx.settings), every=60, label="Where feedback is kept",
               interactive=False, elem_id="feedback-sync")
    grid = gr.Dataframe(headers=SHOWN, datatype="str", interactive=False, wrap=True, elem_id="feedback-table",
                        column_widths=["4%", "11%", "7%", "5%", "18%", "17%", "22%", "8%", "8%"])
    gr.Markdown("### LaFFi's predicted feedback against the room's ratings")
    agreement_md = gr.Markdown(NO_AGREEMENT, elem_id="agreement-note")
    agreement_grid = gr.Dataframe(headers=HEADERS, datatype="str", interactive=False, wrap=True, visible=False,
                                  elem_id="agreement-table", label="Agreement per variant")
    disagreeing = gr.Dataframe(headers=DISAGREEMENT_HEADERS, datatype="str", interactive=False, wrap=True,
                               visible=False, elem_id="agreement-disagreements",
                               label="Where the predicted verdict and the participant's rating disagree",
                               column_widths=["4%", "7%", "8%", "9%", "16%", "16%", "22%", "18%"])
    agreement_json = gr.JSON(visible=False)  # what /feedback_agreement returns
    exporting = ctx.settings.enable_export
    with gr.Row(visible=exporting):
        jsonl_btn = gr.Button("Export JSONL")
        ds_btn = gr.Button("Export as a `datasets` folder (zip)")
        hub_btn = gr.Button("Push to the Hub", visible=bool(ctx.settings.feedback_repo))
    download = gr.File(label="Download", interactive=False, visible=exporting)
    hub_status = gr.Markdown()
    with gr.Accordion("Withdraw feedback", open=False):
        gr.Markdown("Anyone can take back the feedback of their own session (the id shown under the feedback form "
                    "in the Ask tab): it is left out of the list, every export, every training run and the Hub copy "
                    "from then on. Withdrawing another session's feedback needs the admin on a shared app.")
        with gr.Row():
            withdraw_id = gr.Textbox(label="Session id", elem_id="withdraw-session")
            withdraw_btn = gr.Button("Withdraw this session's feedback", elem_id="withdraw-button")
        withdrawn = gr.Markdown(elem_id="withdraw-status")

    def visible_rows(unlocked, request: gr.Request | None):
        """Everyone's rows for the admin (or an app that serves only this machine); else this browser's own."""
        rows = store.rows()
        if sees_everyone(ctx.settings, unlocked):
            return rows
        own = getattr(request, "session_hash", None)
        return [r for r in rows if own and r["session_id"] == own]

    def current(unlocked, variant, rating, annotator, request: gr.Request | None = None):
        return filter_rows(visible_rows(unlocked, request), variant, rating, annotator)

    def show(unlocked, variant, rating, annotator, request: gr.Request):
        rows = current(unlocked, variant, rating, annotator, request)
        variants = ["all", *ordered({row["variant"] for row in visible_rows(unlocked, request) if row["variant"]})]
        return counts(rows), table(rows), gr.Dropdown(choices=variants,
                                                      value=variant if variant in variants else "all")

    def agreement_result(unlocked, request: gr.Request | None) -> dict:
        """The numbers over every visible row; the disagreeing rows' texts by the list's rule."""
        everyone, own = sees_everyone(ctx.settings, unlocked), getattr(request, "session_hash", None)
        return report(store.rows(), may_show=lambda r: everyone or bool(own) and r["session_id"] == own,
                      order=ordered)

    def show_agreement(unlocked, request: gr.Request):
        result = agreement_result(unlocked, request)
        shown = disagreement_table(result["variants"])
        return (agreement_note(result, sees_everyone(ctx.settings, unlocked)),
                gr.Dataframe(value=agreement_table(result["variants"]), visible=bool(result["variants"])),
                gr.Dataframe(value=shown, visible=bool(shown)))

    def feedback_agreement(unlocked, request: gr.Request):
        return agreement_result(unlocked, request)

    def feedback_withdraw(unlocked, session_id, request: gr.Request):
        sid = (session_id or "").strip()
        if not sid:
            raise error("Type the session id to withdraw (shown under the feedback form in the Ask tab).")
        if sid != getattr(request, "session_hash", None) and not sees_everyone(ctx.settings, unlocked):
            raise error("Only your own session's feedback can be withdrawn here; another session's needs the admin "
                        "password (under 'Admin' at the top of the page).")
        try:
            n = store.withdraw(sid)
        except LaffiError as e:
            raise error(e) from e
        return f"Withdrew {n} feedback row(s) of session `{sid}`: they are left out of every export and training run."

    def may_export(unlocked):
        require(ctx.settings, unlocked, "Exporting feedback", ctx.settings.enable_export, "LAFFI_ENABLE_EXPORT")

    def export(kind, unlocked, variant, rating, annotator):
        may_export(unlocked)
        rows = filter_rows(store.rows(), variant, rating, annotator)
        if not rows:
            raise error("There is no feedback to export with these filters.")
        exports.mkdir(parents=True, exist_ok=True)
        return str(export_jsonl(rows, exports) if kind == "jsonl" else export_dataset(rows, exports))

    def export_as_jsonl(unlocked, variant, rating, annotator):
        return export("jsonl", unlocked, variant, rating, annotator)

    def export_as_dataset(unlocked, variant, rating, annotator):
        return export("dataset", unlocked, variant, rating, annotator)

    def push(unlocked, variant, rating, annotator):
        from datasets import Dataset

        may_export(unlocked)
        repo, token = ctx.settings.feedback_repo, ctx.settings.hf_token
        if not repo or not token:
            raise error("Set LAFFI_FEEDBACK_REPO (e.g. you/laffi-feedback) and HF_TOKEN to push to the Hub.")
        rows = filter_rows(store.rows(), variant, rating, annotator)
        try:
            Dataset.from_list(rows).push_to_hub(repo, token=token, private=True)
        except Exception as e:  # network, permissions: the user's to fix
            raise error(f"Could not push to {repo}: {str(e).splitlines()[0][:200]}") from e
        return f"Pushed {len(rows)} rows to the private dataset `{repo}`."

    filters = [variant, rating, annotator]
    views = [(show, [admin, *filters], [summary, grid, variant]),
             (show_agreement, [admin], [agreement_md, agreement_grid, disagreeing])]
    refresh.click(show, [admin, *filters], [summary, grid, variant], api_name="feedback_list")
    refresh.click(show_agreement, [admin], views[1][2], api_name=False, **STORE_ONLY)
    refresh.click(feedback_agreement, [admin], agreement_json, api_name="feedback_agreement", **STORE_ONLY)
    jsonl_btn.click(export_as_jsonl, [admin, *filters], download, api_name="feedback_export_jsonl")
    ds_btn.click(export_as_dataset, [admin, *filters], download, api_name="feedback_export_dataset")
    hub_btn.click(push, [admin, *filters], hub_status, api_name="feedback_push")
    withdrawing = withdraw_btn.click(feedback_withdraw, [admin, withdraw_id], withdrawn, api_name="feedback_withdraw")
    for fn, inputs, outputs in views:
        withdrawing.then(fn, inputs, outputs, api_name=False)
    return views


def sees_everyone(settings, unlocked: bool) -> bool:
    """Whether this browser may see (and withdraw) everyone's feedback: the admin where a password is set; else
    an app that serves only this machine (not a Space, not a room)."""
    from laffi.ui.room import current_room

    if settings.admin_password:
        return bool(unlocked)
    return not (settings.on_space or current_room())
