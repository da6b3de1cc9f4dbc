"""The app's rules for what people read, without a browser: pop-ups show text as text (and every pop-up goes through
one helper), filters take None, empty answers say so, variants come in one order, adapter names never collide, the
Train tab's status says what the job does, the self-feedback caveat reads the adapter's metrics, and a replaced
adapter is re-attached."""

import ast
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from .conftest import REPO

HOSTILE = ('<img src="http://127.0.0.1:7861/track.png?leak=1"><b style="font-size:40px">BIG</b><form><input '
           'placeholder=password></form>')


def test_popups_and_status_lines_show_markup_as_text():
    from laffi.ui.text import as_text, error, md_literal

    message = error(f"The adapter name {HOSTILE!r} is not valid.").message
    assert "<" not in message and ">" not in message
    assert message.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == \
        f"The adapter name {HOSTILE!r} is not valid."
    assert as_text("Choose another name, e.g. 'laffi-live-2'.") == "Choose another name, e.g. 'laffi-live-2'."
    literal = md_literal("**bold** [link](http://x) <b>tag</b> `code`")
    assert "<b>" not in literal and "\\*\\*bold\\*\\*" in literal and "\\[link\\]\\(http://x\\)" in literal


def popup_calls(path: Path) -> list[str]:
    """gr.Error / gr.Warning / gr.Info calls in a module (the helper's own excepted by the caller)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("Error", "Warning", "Info") and getattr(node.func.value, "id", "") == "gr"):
            found.append(f"{path.name}:{node.lineno} gr.{node.func.attr}")
    return found


def test_every_popup_in_the_app_goes_through_the_text_helper(tmp_path):
    ui = REPO / "laffi" / "ui"
    assert [c for p in sorted(ui.glob("*.py")) if p.name != "text.py" for c in popup_calls(p)] == []
    assert popup_calls(ui / "text.py")  # the helper itself does call them
    bad = tmp_path / "bad.py"
    bad.write_text("import gradio as gr\nraise gr.Error(name)\n")
    assert popup_calls(bad) == ["bad.py:2 gr.Error"]  # the check can fail


def test_feedback_filters_take_none_as_everything():
    from laffi.ui.feedback_tab import filter_rows, table

    rows = [{"id": 1, "created_at": 0, "variant": "sft", "thumbs": -1, "question": "q", "answer": "",
             "critique": None, "correct_answer": None, "annotator": None},
            {"id": 2, "created_at": 0, "variant": "base", "thumbs": 1, "question": "q", "answer": "1874",
             "critique": "ok", "correct_answer": None, "annotator": "Ana"}]
    assert filter_rows(rows, None, None, None) == rows  # what the page sends on load
    assert filter_rows(rows, "all", "👍", " an ") == [rows[1]]
    assert [r[5] for r in table(rows)] == ["(no answer)", "1874"]


def test_variants_are_shown_base_sft_laffi_then_the_rest_alphabetically():
    from laffi.ui.context import ordered

    assert ordered(["laffi", "zeta", "base", "Alpha", "sft", "laffi-sft"]) == \
        ["base", "sft", "laffi", "Alpha", "laffi-sft", "zeta"]
    assert ordered(["mine", "base"]) == ["base", "mine"]


@pytest.fixture
def ctx(tmp_path):
    """An AppContext around a stand-in model with two shipped adapters (sft, laffi) and one trained in the app."""
    from laffi.settings import Settings
    from laffi.ui.context import AppContext

    shipped = tmp_path / "shipped"
    settings = Settings.from_env(data_dir=tmp_path / "data", adapters_dir=str(shipped))
    for folder in (shipped / "sft", shipped / "laffi", settings.trained_dir / "laffi-live"):
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text("{}")
        (folder / "adapter_model.safetensors").write_text("")
    folders = os.pathsep.join(map(str, (shipped, settings.trained_dir)))
    lm = SimpleNamespace(variants=["base", "sft", "laffi", "laffi-live"], adapters={}, watch=lambda folder: None,
                         use_generator=lambda generator: None, config=SimpleNamespace(adapters_dir=folders))
    return AppContext.create(lm, settings)


def test_a_new_adapter_gets_a_fresh_name_and_no_name_replaces_by_accident(ctx):
    import gradio as gr

    from laffi.ui.train_tab import check_name, fresh_name, taken_names

    assert fresh_name("laffi", taken_names(ctx)) == "laffi-live-2" and fresh_name("laffi+sft", set()) == \
        "laffi-sft-live"
    for name, replace, message in [("", False, "The adapter name is empty"),
                                   ("  ", True, "The adapter name is empty"),
                                   ("sft", True, "'sft' is an adapter that came with the app"),
                                   ("laffi", False, "'laffi' is an adapter that came with the app"),
                                   ("base", True, "is not valid"), ("../x", False, "is not valid"),
                                   ("laffi-live", False, "already exists.*tick 'Replace")]:
        with pytest.raises(gr.Error, match=message):
            check_name(ctx, name, replace)
    assert check_name(ctx, " laffi-live ", True) == "laffi-live"  # trained in the app, and asked for
    assert check_name(ctx, "brand-new", False) == "brand-new"


def test_train_status_says_training_while_steps_run_and_shows_errors_as_text():
    from laffi.ui.train_tab import describe

    loss = [{"step": 1, "max_steps": 10, "loss": 2.0, "seconds": 1.0}, {"step": 2, "max_steps": 10, "loss": 1.5,
                                                                         "seconds": 2.0}]
    running = describe({"name": "x", "state": "running", "phase": "training",
                        "detail": "loading the model and the data", "loss": loss})
    assert "running** — training" in running and "loading" not in running and "Step 2/10" in running
    upload = "/tmp/gradio/abc123/my file.json"
    failed = describe({"name": "x", "state": "failed", "error": f"{upload} has <b>bad</b> records"}, upload)
    assert "<b>" not in failed and upload not in failed and "my file" in failed


def test_the_self_feedback_caveat_reads_the_adapters_metrics(tmp_path):
    from laffi.ui.ask import self_feedback_caveat

    (tmp_path / "laffi").mkdir()
    (tmp_path / "laffi" / "metrics.json").write_text(json.dumps({"n": 200, "balanced_verdict_accuracy": 61.2}))
    (tmp_path / "sft").mkdir()
    lm = SimpleNamespace(adapters={"laffi": tmp_path / "laffi", "sft": tmp_path / "sft"})
    measured = self_feedback_caveat(lm, "laffi")
    assert "own guess" in measured and "right 61% of the time on 200 evaluation questions" in measured
    (tmp_path / "laffi" / "metrics.json").write_text(json.dumps({"n": 200, "balanced_verdict_accuracy": 98.2,
                                                                 "eval_articles": "validation"}))
    assert "right 98% of the time on 200 validation-article questions" in self_feedback_caveat(lm, "laffi")
    for variant in ("sft", "base"):  # no metrics.json; no folder at all
        assert "own guess" in self_feedback_caveat(lm, variant) and "unmeasured" in self_feedback_caveat(lm, variant)
    # the measure on the most questions (self_feedback.json, from the pooled evaluation) wins over metrics.json
    (tmp_path / "laffi" / "self_feedback.json").write_text(json.dumps(
        {"n": 1596, "balanced_verdict_accuracy": 58.4, "ci": [55.1, 61.9], "verdicts_given": 99.5,
         "eval_articles": "eval"}))
    assert ("right 58% of the time [95 % interval 55-62%] on 1,596 eval-article questions"
            in self_feedback_caveat(lm, "laffi"))
    (tmp_path / "sft" / "self_feedback.json").write_text(json.dumps(
        {"n": 1596, "balanced_verdict_accuracy": 50.0, "verdicts_given": 0.0, "eval_articles": "eval"}))
    no_verdict = self_feedback_caveat(lm, "sft")
    assert "gave no verdict on 1,596" in no_verdict and "50%" not in no_verdict


def test_an_uploads_server_path_is_never_shown():
    from laffi.errors import LaffiError
    from laffi.ui.context import upload_message

    path = "/tmp/gradio/0123abcd/latin1.json"
    for text in (f"{path} is not UTF-8 text (byte 10).", f"The data file {path!r} does not exist."):
        shown = upload_message(LaffiError(text), path)
        assert "latin1.json" in shown and "/tmp" not in shown


def test_difference_colours_are_the_passage_views_colours(tiny_lm):
    """The heatmap's scale ends in the two colours gr.HighlightedText gives scores (read from Gradio's own
    JavaScript): red for more attention in the variant, purple for more in the other."""
    import gradio

    from laffi.inference.attention import DIFF_COLORSCALE, attention_view, heatmap_figure

    assets = Path(gradio.__file__).parent / "templates" / "frontend" / "assets"
    script = next(p.read_text() for p in assets.glob("Index-*.js") if "rgba(239, 68, 60" in p.read_text())
    negative, positive = re.search(r"e<0\?`rgba\((\d+, \d+, \d+), \$\{-e\}\)`:`rgba\((\d+, \d+, \d+)", script).groups()
    assert (DIFF_COLORSCALE[0][1], DIFF_COLORSCALE[-1][1]) == (f"rgb({negative})", f"rgb({positive})")
    view = attention_view(tiny_lm, "The bridge opened in 1931.", "When?", "1931", "sft")
    other = attention_view(tiny_lm, "The bridge opened in 1931.", "When?", "1931", "base")
    fig = heatmap_figure(view, 0, "mean", other=other)
    assert [list(c) for c in fig.data[0].colorscale] == DIFF_COLORSCALE and fig.data[0].zmid == 0


def test_a_replaced_adapter_is_attached_again(tiny_dir, tmp_path):
    import os
    import shutil

    from laffi.inference.models import ModelConfig, load_model
    from laffi.inference.tiny import build_tiny_adapter
    from laffi.settings import Settings
    from laffi.ui.context import AppContext

    build_tiny_adapter(tiny_dir, tmp_path / "adapters" / "mine", seed=1, r=4)
    lm = load_model(ModelConfig(base=str(tiny_dir), adapters_dir=str(tmp_path / "adapters")))
    ctx = AppContext.create(lm, Settings.from_env(data_dir=tmp_path / "data"))
    assert ctx.sync_adapters() == [] and lm.model.peft_config["mine"].r == 4
    build_tiny_adapter(tiny_dir, tmp_path / "new", seed=2, r=2)  # what "Replace" does: a new folder renamed in
    os.rename(tmp_path / "adapters" / "mine", tmp_path / "old")
    os.rename(tmp_path / "new", tmp_path / "adapters" / "mine")
    shutil.rmtree(tmp_path / "old")
    ctx.sync_adapters()
    assert lm.model.peft_config["mine"].r == 2 and lm.variants == ["base", "mine"] and not lm.warnings
