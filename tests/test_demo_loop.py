"""The demo loop end to end: on a passage written here, ask, send three 👎 with critiques and correct answers and
one 👍; train a tiny LaFFi adapter on exactly that feedback from the Train tab; it answers in Ask without a
restart, its manifest lists the four rows, and the loss log has both curves. Through gradio_client here, and as a
person does it in headless Chromium (tests/test_browser_demo_loop.py)."""

import json
import time

import pytest

from .conftest import launch_app

PASSAGE = ("The Corran ferry has crossed the Lune estuary since 1911. Its first boat, the Heron, carried twelve "
           "passengers; the present one, built in 1988, carries eighty.")
QUESTION = "When did the ferry start crossing the estuary?"
FEEDBACK = [  # (variant, rating, critique, correct answer)
    ("base", "👎 bad answer", "Incorrect: the passage says the ferry has crossed since 1911.", "1911"),
    ("sft", "👎 bad answer", "Incorrect: 1988 is when the present boat was built, not when the ferry began.", "1911"),
    ("laffi", "👎 bad answer", "Partly correct: the year is right but the answer adds words.", "1911"),
    ("sft", "👍 good answer", "", ""),
]


@pytest.fixture(scope="module")
def app(tiny_dir, tiny_adapters, tmp_path_factory):
    from gradio_client import Client

    demo = launch_app(tmp_path_factory.mktemp("loop"), tiny_dir, tiny_adapters, enable_training=True)
    try:
        yield Client(demo.local_url, verbose=False), demo.laffi_settings
    finally:
        demo.close()


def start_args(**kw) -> dict:
    return {**dict(method="laffi", adapter_name="audience", data_source="feedback collected here", upload_file=None,
                   articles="train", questions=4, use_app_feedback=False, human_fraction=1.0, lora_r=4,
                   lora_alpha=8, target_modules="all-linear", learning_rate=1e-3, epochs=1, batch_size=1,
                   max_length=1024, replace_existing=False, processes=1), **kw}


def test_no_feedback_yet_and_unknown_session_are_one_sentence(app):
    client, _ = app
    text, rows = client.predict(api_name="/train_feedback_preview")
    assert text.startswith("No feedback collected yet") and not rows["data"]
    with pytest.raises(Exception, match="No feedback collected yet that can train"):
        client.predict(**start_args(), api_name="/train_start")
    with pytest.raises(Exception, match="No feedback was given in a session with the id 'not-a-session'"):
        client.predict(session_id="not-a-session", api_name="/feedback_withdraw")


@pytest.mark.slow
def test_the_audience_feedback_trains_the_next_adapter(app):
    client, settings = app
    client.predict(passage=PASSAGE, question=QUESTION, api_name="/ask")
    ids = []
    for variant, rating, critique, correct in FEEDBACK:
        saved = client.predict(variant=variant, rating=rating, critique=critique, correct_answer=correct,
                               annotator="room", api_name="/feedback")[0]
        ids.append(int(saved.split("#")[1].split()[0]))
    text, rows = client.predict(api_name="/train_feedback_preview")
    assert "**4 feedback rows** from 1 session(s)" in text and [r[0] for r in rows["data"]] == ids
    status, _, cli = client.predict(**start_args(), api_name="/train_start")
    assert "audience" in status and "--data" in cli and "feedback.sqlite" in cli
    deadline = time.time() + 300
    while "running" in (status := client.predict(api_name="/train_status")[0]).split("—")[0]:
        assert time.time() < deadline, status
        time.sleep(1)
    assert "finished" in status, status
    folder = settings.trained_dir / "audience"
    assert json.loads((folder / "data_manifest.json").read_text())["feedback_rows"] == ids
    log = [json.loads(line) for line in (folder / "loss_log.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in log) and any("heldout_loss" in r for r in log)  # both curves
    out = client.predict(passage=PASSAGE, question=QUESTION, api_name="/ask")
    assert "audience" in out[-2]["variants"]  # answers at once, no restart
    # the participant withdraws: the rows leave every later training run
    sid = client.session_hash
    assert "Withdrew 4 feedback row(s)" in client.predict(session_id=sid, api_name="/feedback_withdraw")
    assert client.predict(api_name="/train_feedback_preview")[0].startswith("No feedback collected yet")
