"""A public deployment: what is off by default, the admin password, request limits, bad input, load and overload.
Every app here runs on loopback with the tiny model."""

import statistics
import tempfile
import threading
import time

import pytest

from .conftest import launch_app

ASKS_PER_USER = 1
PASSAGE = "The Halvard lighthouse was lit in 1874 and converted to electricity in 1952."


def train_args(**overrides) -> dict:
    """/train_start's arguments by name: a small SFT run on the shared file."""
    return {**dict(method="sft", data_source="shared SQuAD file", upload_file=None, articles="train", questions=4,
                   use_app_feedback=False, human_fraction=0.0, lora_r=4, lora_alpha=8, target_modules="q_proj",
                   learning_rate=3e-4, epochs=1, batch_size=1, max_length=128, replace_existing=False),
            **overrides}


def _launch(tiny_dir, tiny_adapters, root, queue_size=64, **settings):
    return launch_app(root, tiny_dir, lm=_lm(tiny_dir, tiny_adapters), queue_size=queue_size, **settings)


def _lm(tiny_dir, tiny_adapters):
    from laffi.inference.models import ModelConfig, load_model

    return load_model(ModelConfig(base=str(tiny_dir), adapters_dir=str(tiny_adapters)))


def _crowd(demo, user, n: int, timeout: float) -> None:
    """n threads run user(i) against the app at once; the app is closed when they are done (or timed out)."""
    try:
        threads = [threading.Thread(target=user, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=timeout)
    finally:
        demo.close()


@pytest.fixture
def space_app(tiny_dir, tiny_adapters, tmp_path, monkeypatch):
    """The defaults on a Hugging Face Space (SPACE_ID set, nothing enabled)."""
    from gradio_client import Client

    monkeypatch.setenv("SPACE_ID", "someone/laffi")
    for flag in ("LAFFI_ENABLE_TRAINING", "LAFFI_ENABLE_UPLOAD", "LAFFI_ENABLE_EXPORT", "LAFFI_ADMIN_PASSWORD"):
        monkeypatch.delenv(flag, raising=False)
    demo = _launch(tiny_dir, tiny_adapters, tmp_path)
    yield Client(demo.local_url, verbose=False)
    demo.close()


@pytest.fixture
def locked_app(tiny_dir, tiny_adapters, tmp_path):
    demo = _launch(tiny_dir, tiny_adapters, tmp_path, enable_training=True, enable_upload=True, enable_export=True,
                   admin_password="correct horse", max_context_chars=150_000, max_context_tokens=200)
    yield demo
    demo.close()


def test_on_a_space_training_upload_and_export_are_off_but_asking_and_feedback_work(space_app, small_squad):
    from gradio_client import handle_file

    endpoints = set(space_app.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert "/train_start" not in endpoints and "/ask" in endpoints and "/feedback" in endpoints
    with pytest.raises(Exception, match="Exporting feedback is turned off.*LAFFI_ENABLE_EXPORT=1"):
        space_app.predict(variant="all", rating="all", annotator="", api_name="/feedback_export_jsonl")
    with pytest.raises(Exception, match="'upload' .*is not in the list of choices"):  # no such choice on a Space
        space_app.predict(data_source="upload", upload_file=handle_file(str(small_squad)), articles="all",
                          questions=2, seed=0, variants=["base"], self_feedback=False, api_name="/evaluate")
    out = space_app.predict(passage=PASSAGE, question="When was it lit?", api_name="/ask")
    assert "variants in one batch" in out[-3]  # ..., status, raw JSON, radio
    msg, _, _ = space_app.predict(variant="base", rating="👎 bad answer", critique="Wrong year.",
                                  correct_answer="1874", annotator="visitor", api_name="/feedback")
    assert "Saved" in msg


def test_upload_gate_names_the_variable_and_the_password(small_squad):
    import gradio as gr

    from laffi.settings import Settings
    from laffi.ui.context import data_path

    off = Settings.from_env(enable_upload=False)
    with pytest.raises(gr.Error, match="Uploading data is turned off.*LAFFI_ENABLE_UPLOAD=1"):
        data_path(off, "upload", str(small_squad))
    locked = Settings.from_env(enable_upload=True, admin_password="pw")
    with pytest.raises(gr.Error, match="Uploading data needs the admin password"):
        data_path(locked, "upload", str(small_squad))
    assert data_path(locked, "upload", str(small_squad), unlocked=True) == str(small_squad)
    assert data_path(off, "shared SQuAD file", None) == str(off.squad)  # the shared file is always open


def test_admin_password_guards_export_per_session(locked_app):
    from gradio_client import Client

    client, other = Client(locked_app.local_url, verbose=False), Client(locked_app.local_url, verbose=False)
    client.predict(passage=PASSAGE, question="When was it lit?", api_name="/ask")
    client.predict(variant="base", rating="👍 good answer", critique="", correct_answer="", annotator="",
                   api_name="/feedback")
    with pytest.raises(Exception, match="needs the admin password"):
        client.predict(variant="all", rating="all", annotator="", api_name="/feedback_export_jsonl")
    with pytest.raises(Exception, match="Wrong admin password"):
        client.predict(password="Tr0ub4dor", api_name="/admin_unlock")
    client.predict(password="correct horse", api_name="/admin_unlock")
    assert client.predict(variant="all", rating="all", annotator="", api_name="/feedback_export_jsonl").endswith(
        ".jsonl")
    with pytest.raises(Exception, match="needs the admin password"):  # another visitor is still locked out
        other.predict(variant="all", rating="all", annotator="", api_name="/feedback_export_jsonl")
    with pytest.raises(Exception, match="needs the admin password"):
        other.predict(**train_args(adapter_name="x"), api_name="/train_start")


def test_bad_input_gets_one_sentence_naming_the_field(locked_app):
    from gradio_client import Client

    client = Client(locked_app.local_url, verbose=False)
    for context, question, message in [("   ", "When?", "The passage is empty"), ("", "When?", "The passage is empty"),
                                       (PASSAGE, " \n ", "The question is empty"),
                                       ("x" * 150_001, "When?", "at most 150,000")]:
        with pytest.raises(Exception, match=message):
            client.predict(passage=context, question=question, api_name="/ask")
    client.predict(password="correct horse", api_name="/admin_unlock")
    with pytest.raises(Exception, match="The adapter name '../escape' is not valid"):  # no path reaches the disk
        client.predict(**train_args(adapter_name="../escape"), api_name="/train_start")
    with pytest.raises(Exception, match=r"Learning rate must be in \(0, 1\), not -1.0"):
        client.predict(**train_args(adapter_name="ok-name", learning_rate=-1.0), api_name="/train_start")


def test_a_100_kb_passage_is_cut_around_the_question_with_a_notice(locked_app):
    from gradio_client import Client

    filler = "Nothing about lights happened in the valley that year. " * 920  # twice: ~100 KB
    context = filler + "The Halvard lighthouse was lit in 1874 by the harbour master. " + filler
    assert len(context) > 100_000
    out = Client(locked_app.local_url, verbose=False).predict(
        passage=context, question="When was the Halvard lighthouse lit?", api_name="/ask")
    timing, last = out[-3], out[-2]
    assert "the model reads at most 200" in timing and "best match for the question" in timing
    assert "Halvard lighthouse was lit in 1874" in last["context"] and len(last["context"]) < 2000


def test_20_concurrent_users_all_answered_and_all_feedback_stored(tiny_dir, tiny_adapters, tmp_path, monkeypatch):
    from gradio_client import Client

    import laffi.inference.selffeedback as selffeedback
    from laffi.feedback.store import FeedbackStore

    # 20 users at once is the point, not reply length: short replies keep the run to tens of seconds
    monkeypatch.setattr(selffeedback, "FEEDBACK_MAX_NEW_TOKENS", 8)
    demo = _launch(tiny_dir, tiny_adapters, tmp_path, max_new_tokens=8)
    latencies, errors = [], []

    def user(i):
        try:
            client = Client(demo.local_url, verbose=False)
            for q in range(ASKS_PER_USER):
                start = time.perf_counter()
                client.predict(passage=PASSAGE, question=f"When was the lighthouse lit? ({i}.{q})", api_name="/ask")
                latencies.append(time.perf_counter() - start)
            client.predict(variant="base", rating="👎 bad answer", critique=f"user {i}", correct_answer="",
                           annotator=f"user-{i}", api_name="/feedback")
        except Exception as e:  # collected, asserted below
            errors.append(repr(e))

    _crowd(demo, user, 20, timeout=300)
    assert not errors and len(latencies) == 20 * ASKS_PER_USER
    q = statistics.quantiles(latencies, n=20)
    print(f"\nload: 20 users x {ASKS_PER_USER} asks, p50 {statistics.median(latencies):.2f} s, p95 {q[18]:.2f} s")
    stored = FeedbackStore(tmp_path / "data" / "feedback.sqlite").rows()
    assert sorted(r["annotator"] for r in stored) == sorted(f"user-{i}" for i in range(20))


def test_uploads_that_are_not_squad_are_refused_with_the_reason_and_limits_hold(locked_app, small_squad, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(locked_app.local_url, verbose=False)
    client.predict(password="correct horse", api_name="/admin_unlock")
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'{"data": "caf\xe9"}')
    for api, args in [("/evaluate", dict(data_source="upload", articles="all", questions=2, seed=0,
                                         variants=["base"], self_feedback=False)),
                      ("/train_start", train_args(adapter_name="from-latin1", data_source="upload"))]:
        with pytest.raises(Exception) as caught:
            client.predict(**{**args, "upload_file": handle_file(str(bad))}, api_name=api)
        message = str(caught.value)
        assert "latin1.json is not UTF-8" in message, message
        assert tempfile.gettempdir() not in message and "/" not in message.split("latin1.json")[0], message
    with pytest.raises(Exception, match=r"Questions \(seeded sample\) must be between 1 and 500, not 10000"):
        client.predict(data_source="upload", upload_file=handle_file(str(small_squad)), articles="all",
                       questions=10_000, seed=0, variants=["base"], self_feedback=False, api_name="/evaluate")


def test_files_outside_the_apps_own_cannot_be_fetched(locked_app, tmp_path):
    import urllib.error
    import urllib.parse
    import urllib.request

    from laffi.serving.webassets import ensure_js

    secret = tmp_path / "data" / "feedback.sqlite"
    js = ensure_js()
    paths = ["/etc/passwd", str(secret), str(secret.parent / ".." / "data" / "feedback.sqlite")]
    if js:
        paths.append(f"{js}/../../README.md")  # out of the served JavaScript folder
    for path in paths:
        url = f"{locked_app.local_url.rstrip('/')}/gradio_api/file={urllib.parse.quote(path)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        assert status in (403, 404), (path, status)
