"""Every app endpoint through gradio_client, on the tiny model (the UI's wiring, not the model's quality)."""

import json

import pytest

LIGHTHOUSE = "The Halvard lighthouse was lit in 1874 and converted to electricity in 1952."


@pytest.fixture(scope="module")
def app(tiny_dir, tiny_adapters, tmp_path_factory):
    import shutil

    from gradio_client import Client

    from laffi.ui import build_demo
    from laffi.models import ModelConfig, load_model
    from laffi.settings import Settings

    root = tmp_path_factory.mktemp("app")
    shutil.copytree(tiny_adapters, root / "adapters")  # this app trains into its own adapters folder
    lm = load_model(ModelConfig(base=str(tiny_dir), adapters_dir=str(root / "adapters")))
    settings = Settings.from_env(data_dir=root / "data", runs_dir=root / "runs", enable_training=True, enable_upload=True,
                           enable_export=True)
    demo = build_demo(lm=lm, settings=settings)
    demo.queue().launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(demo.local_url, verbose=False), settings
    finally:
        demo.close()


def test_every_event_has_an_api_name(app):
    client, _ = app
    names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/ask", "/feedback", "/feedback_list", "/feedback_export_jsonl", "/feedback_export_dataset",
            "/feedback_push", "/attention", "/attention_redraw", "/evaluate", "/evaluate_filter", "/train_start",
            "/train_stop", "/train_resume", "/train_status"} <= names


def ask(client, question="When was it lit?"):
    out = client.predict(LIGHTHOUSE, question, api_name="/ask")
    return out, out[-2]  # ..., timing, raw JSON, radio (the State is not part of the API)


def test_ask_shows_every_variant_with_feedback_and_revision(app):
    client, _ = app
    out, result = ask(client)
    assert list(result["variants"]) == ["base", "laffi", "sft"]
    for v, r in result["variants"].items():
        assert {"answer", "feedback", "verdict", "revised_answer"} <= set(r)
    # the API returns 4 values per card (title, answer, feedback, revised; the column's visibility is layout)
    titles = [out[4 * i] for i in range(3)]
    assert titles == ["#### `base`", "#### `laffi`", "#### `sft`"]
    assert out[4 * 3] == "" and out[4 * 1 + 2] == result["variants"]["laffi"]["feedback"]
    assert "3 variants in one batch" in out[-3] and "self-feedback" in out[-3]  # timing, JSON, radio


def test_feedback_is_stored_and_listed(app):
    client, settings = app
    ask(client)
    msg, critique, correct = client.predict("sft", "👎 bad answer", "Incorrect: it was lit in 1874.", "1874",
                                            "ana", api_name="/feedback")
    assert msg.startswith("Saved feedback #") and critique == "" and correct == ""
    from laffi.feedback_store import FeedbackStore

    rows = FeedbackStore(settings.data_dir / "feedback.sqlite").rows()
    row = rows[-1]
    assert (row["variant"], row["thumbs"], row["critique"], row["correct_answer"], row["annotator"]) == (
        "sft", -1, "Incorrect: it was lit in 1874.", "1874", "ana")
    assert row["question"] == "When was it lit?" and row["context"] == LIGHTHOUSE and row["session_id"]
    summary, table, _ = client.predict("sft", "👎", "an", api_name="/feedback_list")
    assert "👎 1" in summary or "👎" in summary
    assert any(r[6] == "Incorrect: it was lit in 1874." for r in table["data"])


def test_feedback_needs_a_variant_and_some_content(app):
    client, _ = app
    ask(client)
    with pytest.raises(Exception, match="Choose which variant"):
        client.predict(None, "👍 good answer", "", "", "", api_name="/feedback")
    with pytest.raises(Exception, match="Give a rating"):
        client.predict("base", None, " ", "", "", api_name="/feedback")


def test_exports(app, tmp_path):
    import zipfile

    client, _ = app
    ask(client)
    client.predict("base", "👍 good answer", "Correct.", "", "", api_name="/feedback")
    path = client.predict("all", "all", "", api_name="/feedback_export_jsonl")
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    assert rows and {"question", "answer", "critique", "variant"} <= set(rows[0])
    archive = client.predict("all", "all", "", api_name="/feedback_export_dataset")
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path)
    from datasets import load_from_disk

    folder = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert load_from_disk(str(folder)).num_rows == len(rows)
    with pytest.raises(Exception, match="LAFFI_FEEDBACK_REPO"):
        client.predict("all", "all", "", api_name="/feedback_push")


def test_attention_views(app):
    client, _ = app
    ask(client)
    plot, passage, diff, notes, head_html, model_html = client.predict("sft", "base", 1, "mean",
                                                                       api_name="/attention")
    assert plot and passage and diff
    assert 'sandbox="allow-scripts"' in head_html and "/gradio_api/file=" in head_html
    redraw = client.predict(0, "2", api_name="/attention_redraw")
    assert redraw[0] and redraw[1]


def test_evaluate_on_an_upload(app, small_squad):
    from gradio_client import handle_file

    client, _ = app
    table, chart, archive, detail = client.predict("upload", handle_file(str(small_squad)), "all", 5, 0,
                                                   ["base", "sft"], True, api_name="/evaluate")
    assert [row[0] for row in table["data"]] == ["base", "sft"] and len(table["headers"]) == 9
    assert archive.endswith(".zip")
    everything = client.predict("all", api_name="/evaluate_filter")
    assert len(everything["data"]) == 5 and everything["headers"][:3] == ["qid", "question", "gold"]


def test_evaluate_rejects_no_variant(app):
    client, _ = app
    with pytest.raises(Exception, match="at least one variant"):
        client.predict("shared SQuAD file", None, "all", 5, 0, [], False, api_name="/evaluate")


def test_status_text_says_adapters_are_not_trained(tiny_dir, tmp_path):
    from laffi.ui import status_text
    from laffi.models import ModelConfig, load_model

    lm = load_model(ModelConfig(base=str(tiny_dir), adapters_dir=str(tmp_path)))
    text = status_text(lm)
    assert "`sft` and `laffi` adapters are not trained yet" in text and "only `base` answers" in text


def test_train_from_the_ui_and_the_adapter_joins_ask(app, small_squad):
    import time

    from gradio_client import handle_file

    client, _ = app
    status, _, cli = client.predict("sft", "ui-run", "upload", handle_file(str(small_squad)), "all", 4, False, 0.0,
                                    4, 8, "q_proj,v_proj", 3e-4, 1, 2, 2048, api_name="/train_start")
    assert "ui-run" in status and "python -m laffi train" in cli
    with pytest.raises(Exception, match="already running"):
        client.predict("sft", "second", "upload", handle_file(str(small_squad)), "all", 4, False, 0.0, 4, 8,
                       "q_proj,v_proj", 3e-4, 1, 2, 2048, api_name="/train_start")
    deadline = time.time() + 240
    while time.time() < deadline:
        status, _, _ = client.predict(api_name="/train_status")
        if "finished" in status or "failed" in status:
            break
        time.sleep(1)
    assert "finished" in status, status
    with pytest.raises(Exception, match="No training job is running"):
        client.predict(api_name="/train_stop")
    with pytest.raises(Exception, match="has finished; start a new one"):
        client.predict(api_name="/train_resume")
    _, result = ask(client)
    assert "ui-run" in result["variants"]  # no restart needed
