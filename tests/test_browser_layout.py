"""What a person sees as the app grows and gets busy, in headless Chromium: an adapter trained while the page is
open reaches every list (header, Attention, Evaluate) and the Ask tab, four variant cards sit 2 x 2 in the order
base, sft, laffi, then the rest; and an Ask that waits behind other people's shows its place in the queue and an
estimate. Screenshots in tests/artifacts/."""

import threading
import time

import pytest

from .conftest import ARTIFACTS, served_app
from .test_browser import field, open_page

pytestmark = pytest.mark.browser
PASSAGE = "The Halvard lighthouse was lit in 1874 and converted to electricity in 1952."


@pytest.fixture(scope="module")
def app(tiny_dir, tiny_adapters, tmp_path_factory):
    with served_app(tmp_path_factory.mktemp("browser-layout"), tiny_dir, tiny_adapters) as served:
        yield served


def ask_in_page(page, question="When was the lamp converted?"):
    field(page, "ask-context").fill(PASSAGE)
    field(page, "ask-question").fill(question)
    page.click("#ask-button")


def test_a_new_adapter_reaches_every_list_and_four_cards_sit_two_by_two(app, browser, tiny_dir):
    from laffi.inference.tiny import build_tiny_adapter

    url, settings = app
    page = open_page(browser, url)
    try:
        assert "`zeta`" not in page.locator("body").inner_text()
        # a training job finishes while the page is open (an adapter folder appears where the app trains)
        build_tiny_adapter(tiny_dir, settings.trained_dir / "zeta", seed=3)
        page.get_by_role("tab", name="Attention").click()  # opening the tab lists it
        page.locator("#attn-variant input").click()
        page.get_by_role("option", name="zeta", exact=True).wait_for(timeout=20_000)
        page.keyboard.press("Escape")
        page.get_by_role("tab", name="Evaluate").click()
        page.locator("#eval-variants").get_by_text("zeta", exact=True).wait_for(timeout=20_000)

        page.get_by_role("tab", name="Ask").click()
        ask_in_page(page)
        page.wait_for_function("() => { const t = document.querySelector('#variant-revised-3 textarea');"
                               " return t && t.value; }", timeout=60_000)
        titles = [page.locator(f"#variant-title-{i}").inner_text() for i in range(4)]
        assert titles == ["base", "sft", "laffi", "zeta"]
        boxes = [page.locator(f"#variant-answer-{i}").locator("xpath=ancestor::*[contains(@class,'variant-card')]")
                 .first.bounding_box() for i in range(4)]
        rows = sorted({round(b["y"]) for b in boxes})
        assert len(rows) == 2, boxes  # 2 x 2: two rows ...
        assert [round(b["width"]) for b in boxes].count(round(boxes[0]["width"])) == 4, boxes  # ... equal cards
        assert boxes[0]["x"] == boxes[2]["x"] and boxes[1]["x"] == boxes[3]["x"], boxes
        page.screenshot(path=str(ARTIFACTS / "10-four-variants.png"), full_page=True)

        page.reload()
        page.wait_for_selector("#ask-button", timeout=60_000)
        page.wait_for_function("() => document.body.innerText.includes('zeta')", timeout=20_000)  # the header
    finally:
        page.close()


@pytest.mark.slow
def test_a_waiting_ask_shows_its_queue_position_and_an_estimate(app, browser, monkeypatch):
    from gradio_client import Client

    from .conftest import slow_answers

    url, _ = app
    slow_answers(monkeypatch, 2.0)
    Client(url, verbose=False).predict(passage=PASSAGE, question="warm-up", api_name="/ask")  # a time to go by
    others = [threading.Thread(target=lambda i=i: Client(url, verbose=False).predict(
        passage=PASSAGE, question=f"someone else {i}", api_name="/ask")) for i in range(3)]
    for t in others:
        t.start()
    page = open_page(browser, url)
    try:
        time.sleep(1.0)
        ask_in_page(page)
        page.wait_for_function(  # the scheduler's sentence: its place, and the wait measured from earlier calls
            r"() => /\d+ questions? (is|are) ahead of yours; yours starts in about \d+ s/"
            r".test(document.querySelector('#ask-status textarea').value)", timeout=30_000)
        assert page.locator("#ask-status").is_visible()
        page.screenshot(path=str(ARTIFACTS / "11-queued.png"), full_page=True)
        page.wait_for_function("() => document.querySelector('#ask-status textarea').value.includes('Answered')",
                               timeout=120_000)
    finally:
        page.close()
        for t in others:
            t.join(timeout=120)
