"""Every app endpoint through gradio_client, on the tiny model (the UI's wiring, not the model's quality): readable
parameter names, the answers, feedback, exports, attention, evaluation and training jobs (stop early, resume,
replace only when asked)."""

import json
import re
import time

import pytest

from laffi.inference.answerability import ALWAYS_NO_ANSWER

from .conftest import launch_app

LIGHTHOUSE = "The Halvard lighthouse was lit in 1874 and converted to electricity in 1952."
TRAIN = dict(method="sft", data_source="upload", articles="all", questions=4, use_app_feedback=False,
             human_fraction=0.0, lora_r=4, lora_alpha=8, target_modules="q_proj,v_proj", learning_rate=3e-4,
             epochs=1, batch_size=2, max_length=2048)

# What a gradio_client user reads for each endpoint: the Python parameter names of the event's function.
PARAMETERS = {
    "/ask": ["passage", "question"],
    "/feedback": ["variant", "rating", "critique", "correct_answer", "annotator"],
    "/feedback_list": ["variant", "rating", "annotator"],
    "/feedback_export_jsonl": ["variant", "rating", "annotator"],
    "/feedback_export_dataset": ["variant", "rating", "annotator"],
    "/feedback_push": ["variant", "rating", "annotator"],
    "/attention": ["variant", "compare_with", "layer", "head"],
    "/attention_redraw": ["layer", "head"],
    "/evaluate": ["data_source", "upload_file", "articles", "questions", "seed", "variants", "self_feedback"],
    "/evaluate_filter": ["show"],
    "/train_start": ["method", "adapter_name", "data_source", "upload_file", "articles", "questions",
                     "use_app_feedback", "human_fraction", "lora_r", "lora_alpha", "target_modules",
                     "learning_rate", "epochs", "batch_size", "max_length", "replace_existing", "processes",
                     "early_stopping"],
    "/train_stop": [], "/train_resume": [], "/train_status": [], "/train_feedback_preview": [],
    "/feedback_withdraw": ["session_id"],
    "/feedback_agreement": [],
}


@pytest.fixture(scope="module")
def app(tiny_dir, tiny_adapters, tmp_path_factory):
    from gradio_client import Client

    demo = launch_app(tmp_path_factory.mktemp("app"), tiny_dir, tiny_adapters,  # its "shipped" adapters
                      enable_training=True, enable_upload=True, enable_export=True)
    try:
        yield Client(demo.local_url, verbose=False), demo.laffi_settings, demo.laffi_lm
    finally:
        demo.close()


def test_every_event_has_an_api_name_and_readable_parameters(app):
    client, _, _ = app
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert set(PARAMETERS) <= set(endpoints)
    names = {api: [p["parameter_name"] for p in info["parameters"]] for api, info in endpoints.items()}
    assert {api: names[api] for api in PARAMETERS} == PARAMETERS
    cryptic = {api: n for api, ns in names.items() for n in ns if len(n) < 4 or n.startswith("param")}
    assert cryptic == {}


def ask(client, question="When was it lit?"):
    out = client.predict(passage=LIGHTHOUSE, question=question, api_name="/ask")
    return out, out[-2]  # ..., status, raw JSON, radio (the State and the layout are not part of the API)


def test_ask_shows_every_variant_in_order_with_feedback_and_revision(app):
    client, _, _ = app
    out, result = ask(client)
    assert list(result["variants"]) == ["base", "sft", "laffi"]  # base, sft, laffi, then the rest A-Z
    for r in result["variants"].values():
        assert {"answer", "feedback", "verdict", "revised_answer"} <= set(r)
    # the API returns 6 values per card (title, answer, how sure, feedback, its caveat, revised; the layout is
    # not data)
    titles = [out[6 * i] for i in range(3)]
    assert titles == ["#### `base`", "#### `sft`", "#### `laffi`"]
    assert out[6 * 3] == "" and out[6 * 2 + 3] == result["variants"]["laffi"]["feedback"]
    assert "The model's own guess" in out[6 * 2 + 4] and "unmeasured" in out[6 * 2 + 4]
    for i, v in enumerate(["base", "sft", "laffi"]):  # what each variant thinks, even where it abstains
        r = result["variants"][v]
        assert f"Answerable: {100 * (1 - r['na_prob']):.0f} %" in out[6 * i + 2]
        assert "no threshold chosen yet" in out[6 * i + 2]
        assert ("so it answers" if r["answer"] else "so it says: no answer") in out[6 * i + 2]
    assert "3 variants in one batch" in out[-3] and "self-feedback" in out[-3]  # status, JSON, radio


def test_feedback_before_any_question_says_ask_first(app):
    from gradio_client import Client

    client, _, _ = app
    fresh = Client(client.src, verbose=False)  # a new session: nothing asked yet
    with pytest.raises(Exception, match="Ask a question first"):
        fresh.predict(variant="base", rating="👍 good answer", critique="", correct_answer="", annotator="",
                      api_name="/feedback")


def test_feedback_is_stored_and_listed(app):
    client, settings, _ = app
    ask(client)
    msg, critique, correct = client.predict(variant="sft", rating="👎 bad answer",
                                            critique="Incorrect: it was lit in 1874.", correct_answer="1874",
                                            annotator="ana", api_name="/feedback")
    assert msg.startswith("Saved feedback #") and critique == "" and correct == ""
    from laffi.feedback.store import FeedbackStore

    rows = FeedbackStore(settings.data_dir / "feedback.sqlite").rows()
    row = rows[-1]
    assert (row["variant"], row["thumbs"], row["critique"], row["correct_answer"], row["annotator"]) == (
        "sft", -1, "Incorrect: it was lit in 1874.", "1874", "ana")
    assert row["question"] == "When was it lit?" and row["context"] == LIGHTHOUSE and row["session_id"]
    summary, table, _ = client.predict(variant="sft", rating="👎", annotator="an", api_name="/feedback_list")
    assert "👎 1" in summary
    assert any(r[6] == "Incorrect: it was lit in 1874." for r in table["data"])


def test_feedback_needs_a_variant_and_some_content(app):
    client, _, _ = app
    ask(client)
    with pytest.raises(Exception, match="Choose which variant"):
        client.predict(variant=None, rating="👍 good answer", critique="", correct_answer="", annotator="",
                       api_name="/feedback")
    with pytest.raises(Exception, match="Give a rating"):
        client.predict(variant="base", rating=None, critique=" ", correct_answer="", annotator="",
                       api_name="/feedback")


def test_exports(app, tmp_path):
    import zipfile

    client, _, _ = app
    ask(client)
    client.predict(variant="base", rating="👍 good answer", critique="Correct.", correct_answer="", annotator="",
                   api_name="/feedback")
    path = client.predict(variant="all", rating="all", annotator="", api_name="/feedback_export_jsonl")
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    assert rows and {"question", "answer", "critique", "variant"} <= set(rows[0])
    archive = client.predict(variant="all", rating="all", annotator="", api_name="/feedback_export_dataset")
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path)
    from datasets import load_from_disk

    folder = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert load_from_disk(str(folder)).num_rows == len(rows)
    with pytest.raises(Exception, match="LAFFI_FEEDBACK_REPO"):
        client.predict(variant="all", rating="all", annotator="", api_name="/feedback_push")


def test_attention_views(app, monkeypatch):
    import threading

    import laffi.ui.attention_tab as tab
    from laffi.inference.model_thread import on_model_thread

    client, _, _ = app
    ask(client)
    made_on = []
    real = tab.bertviz_html
    monkeypatch.setattr(tab, "bertviz_html", lambda *a: made_on.append(threading.current_thread()) or real(*a))
    plot, passage, diff, notes, head_html, model_html = client.predict(
        variant="sft", compare_with="base", layer=1, head="mean", api_name="/attention")
    # bertviz's torch ops run on the model thread, not in Gradio's worker (laffi.inference.model_thread)
    assert made_on and set(made_on) == {on_model_thread(threading.current_thread)}
    assert plot and passage and diff and "red: more attention in `sft`, purple: more in `base`" in notes
    assert 'sandbox="allow-scripts"' in head_html and "/gradio_api/file=" in head_html
    redraw = client.predict(layer=0, head="2", api_name="/attention_redraw")
    assert redraw[0] and redraw[1]


def test_attention_before_any_question_is_a_notice_not_an_error(app):
    from gradio_client import Client

    client, _, _ = app
    fresh = Client(client.src, verbose=False)
    plot, passage, diff, notes, _, _ = fresh.predict(variant="sft", compare_with="base", layer=1, head="mean",
                                                     api_name="/attention")
    assert plot is None and passage is None and notes.startswith("Ask a question in the Ask tab first")


def test_evaluate_on_an_upload(app, small_squad):
    from gradio_client import handle_file

    client, _, _ = app
    table, chart, archive, detail = client.predict(
        data_source="upload", upload_file=handle_file(str(small_squad)), articles="all", questions=5, seed=0,
        variants=["sft", "base"], self_feedback=True, api_name="/evaluate")
    assert [row[0] for row in table["data"]] == ["base", "sft", ALWAYS_NO_ANSWER] and len(table["headers"]) == 12
    nothing = dict(zip(table["headers"], table["data"][2]))
    assert nothing["abstain %"] == 100 and nothing["F1"] == nothing["EM"]  # "" is right exactly on NoAns
    assert archive.endswith(".zip")
    everything = client.predict(show="all", api_name="/evaluate_filter")
    assert len(everything["data"]) == 5 and everything["headers"][:3] == ["qid", "question", "gold"]


def test_evaluate_rejects_no_variant(app):
    client, _, _ = app
    with pytest.raises(Exception, match="at least one variant"):
        client.predict(data_source="shared SQuAD file", upload_file=None, articles="all", questions=5, seed=0,
                       variants=[], self_feedback=False, api_name="/evaluate")


def test_out_of_range_numbers_name_the_field(app, small_squad):
    from gradio_client import handle_file

    client, _, _ = app
    with pytest.raises(Exception, match=r"Questions \(seeded sample\) must be between 1 and 500, not 10000"):
        client.predict(data_source="shared SQuAD file", upload_file=None, articles="all", questions=10_000,
                       seed=0, variants=["base"], self_feedback=False, api_name="/evaluate")
    with pytest.raises(Exception, match="LoRA r must be between 1 and 64, not 0"):
        client.predict(**{**TRAIN, "lora_r": 0}, adapter_name="x", upload_file=handle_file(str(small_squad)),
                       api_name="/train_start")
    with pytest.raises(Exception, match="Layer must be between 0 and 1, not 7"):
        client.predict(layer=7, head="mean", api_name="/attention_redraw")
    with pytest.raises(Exception, match="Learning rate must be in"):  # checked by TrainConfig, named as in the tab
        client.predict(**{**TRAIN, "learning_rate": -1.0}, adapter_name="x", upload_file=handle_file(str(small_squad)),
                       api_name="/train_start")


def test_status_text_says_adapters_are_not_trained(tiny_dir, tmp_path):
    from laffi.inference.models import ModelConfig, load_model
    from laffi.ui import status_text

    lm = load_model(ModelConfig(base=str(tiny_dir), adapters_dir=str(tmp_path)))
    text = status_text(lm)
    assert "`sft` and `laffi` adapters are not trained yet" in text and "only `base` answers" in text


def wait_until_done(client, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, _, _ = client.predict(api_name="/train_status")
        if "running" not in status.split("—")[0]:
            return status
        time.sleep(1)
    raise AssertionError(f"still running: {status}")


def test_adapter_names_never_overwrite_by_accident(app, small_squad):
    from gradio_client import handle_file

    client, settings, _ = app
    upload = handle_file(str(small_squad))
    for name, message in [("", "The adapter name is empty"), ("   ", "The adapter name is empty"),
                          ("sft", "'sft' is an adapter that came with the app"),
                          ("laffi", "'laffi' is an adapter that came with the app"),
                          ("base", "is not valid")]:
        for replace in (False, True):  # a shipped adapter can't be replaced even when asked
            with pytest.raises(Exception, match=message):
                client.predict(**TRAIN, adapter_name=name, upload_file=upload, replace_existing=replace,
                               api_name="/train_start")
    assert not (settings.runs_dir / "jobs" / "current.json").exists()  # nothing started


@pytest.mark.slow
def test_stop_right_after_start_is_stopped_and_resume_finishes_and_joins_ask(app, small_squad):
    """Stop a second after Start (the job is still starting): "stopped" with what Resume does, not "failed"."""
    from gradio_client import handle_file

    client, settings, _ = app
    status, _, cli = client.predict(**TRAIN, adapter_name="ui-run", upload_file=handle_file(str(small_squad)),
                                    replace_existing=False, api_name="/train_start")
    assert "ui-run" in status and "python -m laffi train" in cli
    with pytest.raises(Exception, match="already running"):
        client.predict(**TRAIN, adapter_name="second", upload_file=handle_file(str(small_squad)),
                       replace_existing=False, api_name="/train_start")
    time.sleep(1.0)
    client.predict(api_name="/train_stop")
    status = wait_until_done(client, timeout=60)
    assert "stopped" in status and "failed" not in status, status
    assert re.search(r"Resume (starts it again|continues from it)", status), status
    client.predict(api_name="/train_resume")
    status = wait_until_done(client)
    assert "finished" in status, status
    with pytest.raises(Exception, match="No training job is running"):
        client.predict(api_name="/train_stop")
    with pytest.raises(Exception, match="has finished; start a new one"):
        client.predict(api_name="/train_resume")
    assert (settings.trained_dir / "ui-run" / "adapter_config.json").is_file()
    _, result = ask(client)
    assert list(result["variants"]) == ["base", "sft", "laffi", "ui-run"]  # no restart needed


@pytest.mark.slow
def test_replacing_an_app_trained_adapter_needs_the_tick_and_ask_uses_the_new_one(app, small_squad):
    from gradio_client import handle_file

    client, settings, lm = app
    if not (settings.trained_dir / "ui-run").is_dir():
        pytest.skip("needs the adapter trained by the previous test")
    upload = handle_file(str(small_squad))
    with pytest.raises(Exception, match="An adapter named 'ui-run' already exists.*tick 'Replace"):
        client.predict(**TRAIN, adapter_name="ui-run", upload_file=upload, replace_existing=False,
                       api_name="/train_start")
    # the folder's record of how it was trained (its weights may be the best held-out checkpoint: on 2 steps with a
    # warm-up, possibly the first, which both runs share)
    before = (settings.trained_dir / "ui-run" / "training_config.json").read_text()
    client.predict(**{**TRAIN, "lora_alpha": 32}, adapter_name="ui-run", upload_file=upload, replace_existing=True,
                   api_name="/train_start")
    assert "finished" in wait_until_done(client)
    after = json.loads((settings.trained_dir / "ui-run" / "training_config.json").read_text())
    assert after != json.loads(before) and after["train"]["alpha"] == 32
    ask(client)  # the next answer re-attaches the replaced adapter
    assert lm.model.peft_config["ui-run"].lora_alpha == 32
