"""Fast start and streaming in the app, on the tiny model: the page is served while the model loads (a loader held
back by the test), an Ask sent meanwhile says it is loading and is answered once the model is ready; a failed load
is a sentence, not a crash; an Ask streams each variant's text before its final result."""

import json
import threading
import urllib.request

import pytest

LIGHTHOUSE = "The Halvard lighthouse was lit in 1874 and converted to electricity in 1952."


def launch(lm, settings):
    from laffi.ui import build_demo

    demo = build_demo(lm=lm, settings=settings)
    demo.queue().launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    return demo


@pytest.fixture
def settings(tiny_dir, tiny_adapters, tmp_path):
    import shutil

    from laffi.settings import Settings

    shutil.copytree(tiny_adapters, tmp_path / "adapters")
    return Settings.from_env(base=str(tiny_dir), adapters_dir=str(tmp_path / "adapters"), data_dir=tmp_path / "data",
                             enable_training=False)


def test_the_page_is_served_before_the_model_is_ready_and_an_ask_waits_for_it(settings):
    from gradio_client import Client

    from laffi.inference.models import ModelConfig, load_model
    from laffi.ui import status_text
    from laffi.ui.loading import LazyModel

    release, loads = threading.Event(), []

    def held_back():  # the model loads only when the test says so
        release.wait(timeout=120)
        loads.append(1)
        return load_model(ModelConfig(**settings.model_kwargs()))

    lazy = LazyModel(settings, load=held_back, warm=False)
    demo = launch(lazy, settings)
    try:
        with urllib.request.urlopen(demo.local_url, timeout=30) as page:
            assert page.status == 200
        assert not lazy.ready and loads == []
        # the header and the variant lists come from the folders on disk, and say the model is loading
        header = status_text(lazy)
        assert "Loading the model" in header and "`sft`" in header and "`laffi`" in header
        client = Client(demo.local_url, verbose=False)
        # the layer count came from config.json, not from the model: the tiny model has 2 layers
        with pytest.raises(Exception, match="Layer must be between 0 and 1, not 7"):
            client.predict(layer=7, head="mean", api_name="/attention_redraw")
        job = client.submit(passage=LIGHTHOUSE, question="When was it lit?", api_name="/ask")
        while not job.outputs() and not job.done():
            job.status()  # the first update arrives while the loader is still held back
            threading.Event().wait(0.05)
        assert not job.done() and not lazy.ready
        first = job.outputs()[0]
        assert "Loading the model" in first[-3]  # the Ask's status line; answers wait
        release.set()
        final = job.result(timeout=120)
        assert lazy.ready and loads == [1]
        result = final[-2]
        assert list(result["variants"]) == ["base", "sft", "laffi"] and result["phase"] == "done"
        assert all("feedback" in r for r in result["variants"].values())
        assert "Loading the model" not in status_text(lazy)
    finally:
        release.set()
        demo.close()


def test_a_model_that_fails_to_load_is_a_sentence(settings):
    from gradio_client import Client

    from laffi.ui import status_text
    from laffi.ui.loading import LazyModel

    def broken():
        raise OSError("no such model folder: /nowhere")

    lazy = LazyModel(settings, load=broken, warm=False)
    demo = launch(lazy, settings)
    try:
        client = Client(demo.local_url, verbose=False)
        with pytest.raises(Exception, match="The model failed to load, so nothing can be answered: no such model"):
            client.predict(passage=LIGHTHOUSE, question="When was it lit?", api_name="/ask")
        assert "failed to load" in status_text(lazy) and "/nowhere" in status_text(lazy)
    finally:
        demo.close()


def test_ask_streams_every_variant_before_the_final_result(tiny_lm, settings):
    from laffi.ui.ask import run_ask
    from laffi.ui.context import AppContext

    ctx = AppContext.create(tiny_lm, settings)
    assert ctx.calls.streams
    results = list(run_ask(ctx, LIGHTHOUSE, "When was it lit?", interval=0))  # interval 0: one yield per update
    phases = [r["phase"] for r in results]
    assert phases[-1] == "done" and phases.count("answered") == 1
    assert phases.index("answering") < phases.index("answered") < phases.index("feedback")
    final = results[-1]
    partial = [r for r in results if r["phase"] == "answering"]
    for v, row in final["variants"].items():
        if row["answer_path"] != "direct":
            continue
        seen = [p["variants"][v]["answer"] for p in partial if p["variants"][v]["answer"]]
        assert len(set(seen)) >= 2, (v, seen)  # the answer grew over several updates
        assert all(final["variants"][v]["raw"].startswith(s) for s in seen), (v, seen, final["variants"][v]["raw"])
    streamed_feedback = [r for r in results if r["phase"] == "feedback"]
    assert any(r["variants"][v].get("feedback") for r in streamed_feedback for v in r["variants"])
    assert final["answer_first_token_seconds"] <= final["answer_seconds"]
    assert final["total_seconds"] >= final["answer_seconds"]
    json.dumps(final)  # the /ask API's result: plain JSON


def test_ask_without_streaming_on_zerogpu_gives_the_same_answers(tiny_lm, settings):
    import dataclasses

    from laffi.ui.ask import run_ask
    from laffi.ui.context import AppContext

    from laffi.serving.scheduler import Scheduler

    ctx = AppContext.create(tiny_lm, settings)
    calls = dataclasses.replace(ctx.calls, streams=False)
    zero = dataclasses.replace(ctx, calls=calls, scheduler=Scheduler(calls, ctx.lm))
    whole = list(run_ask(zero, LIGHTHOUSE, "When was it lit?"))
    assert [r["phase"] for r in whole] == ["answered", "done"]  # no text before each stage is complete
    streamed = list(run_ask(ctx, LIGHTHOUSE, "When was it lit?"))[-1]
    assert {v: r["answer"] for v, r in whole[-1]["variants"].items()} == {
        v: r["answer"] for v, r in streamed["variants"].items()}
    assert "answer_first_token_seconds" not in whole[-1]


def test_the_api_returns_the_final_result_after_the_streamed_ones(tiny_lm, settings):
    from gradio_client import Client

    demo = launch(tiny_lm, settings)
    try:
        client = Client(demo.local_url, verbose=False)
        job = client.submit(passage=LIGHTHOUSE, question="When was it lit?", api_name="/ask")
        final = job.result(timeout=120)
        outputs = job.outputs()
        assert len(outputs) >= 2 and outputs[-1] == final  # answers first, then with feedback: the last one
        assert final[-2]["phase"] == "done" and "self-feedback" in final[-3] and "first token after" in final[-3]
    finally:
        demo.close()
