"""The app through gradio_client, on the tiny model: `ask` answers with every variant."""

import pytest


@pytest.fixture(scope="module")
def client(tiny_lm):
    from gradio_client import Client

    from app import build_demo

    demo = build_demo(lm=tiny_lm)
    demo.queue().launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(demo.local_url, verbose=False)
    finally:
        demo.close()


def test_ask_returns_one_answer_per_variant(client):
    table, note = client.predict("The Halvard lighthouse was lit in 1874.", "When was it lit?", api_name="/ask")
    assert [row[0] for row in table["data"]] == ["base", "laffi", "sft"]
    assert all(isinstance(row[1], str) and row[1] for row in table["data"])
    assert "3 variant(s) answered in one batch" in note


def test_empty_question_is_a_clear_error(client):
    with pytest.raises(Exception, match="The question is empty"):
        client.predict("A passage.", "   ", api_name="/ask")


def test_base_only_says_adapters_are_not_trained(tiny_dir, tmp_path):
    from app import _status
    from laffi.models import ModelConfig, load_model

    lm = load_model(ModelConfig(base=str(tiny_dir), adapters_dir=str(tmp_path)))
    text = _status(lm)
    assert "`sft` and `laffi` adapters are not trained yet" in text and "only `base` answers" in text
