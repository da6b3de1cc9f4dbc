"""The demo loop as a person does it, in headless Chromium: ask about a passage written here, send three 👎 with
critiques and correct answers and one 👍, choose the collected feedback in the Train tab (4 rows shown before
Start), train a tiny LaFFi adapter, watch both loss curves, and ask again: the new adapter answers, no restart.
Also: an empty passage is said in the status line (no "Error" badges), and Ask and the feedback form work at a
phone's width. Screenshots land in tests/artifacts/."""

import json

import pytest

from .conftest import ARTIFACTS, served_app
from .test_browser import field, open_page, visible_errors
from .test_demo_loop import FEEDBACK, PASSAGE, QUESTION

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tiny_dir, tiny_adapters, tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-loop")
    with served_app(root, tiny_dir, tiny_adapters, enable_training=True) as served:
        yield served


def ask(page, passage, question):
    field(page, "ask-context").fill(passage)
    field(page, "ask-question").fill(question)
    page.click("#ask-button")
    page.wait_for_function("() => (document.querySelector('#ask-status textarea') || {}).value"
                           "?.includes('self-feedback in')", timeout=120_000)


def test_an_empty_passage_is_said_in_the_status_with_no_error_badges(app, browser):
    pg = open_page(browser, app[0])
    try:
        field(pg, "ask-question").fill("When?")
        pg.click("#ask-button")
        pg.wait_for_function("() => (document.querySelector('#ask-status textarea') || {}).value"
                             "?.includes('The passage is empty: paste a passage')", timeout=10_000)
        pg.wait_for_timeout(500)
        assert visible_errors(pg) == []  # no red "Error" badge on the status or the variant picker
        pg.screenshot(path=str(ARTIFACTS / "loop-0-empty-passage.png"), full_page=True)
    finally:
        pg.close()


@pytest.mark.slow
def test_feedback_from_the_room_trains_the_next_adapter(app, browser):
    url, settings = app
    pg = open_page(browser, url)
    try:
        ask(pg, PASSAGE, QUESTION)
        assert "Answerable:" in field(pg, "variant-confidence-0").input_value()
        for variant, rating, critique, correct in FEEDBACK:
            pg.locator("#fb-variant").get_by_text(variant, exact=True).click()
            pg.locator("#fb-rating").get_by_text(rating).click()
            field(pg, "fb-critique").fill(critique)
            field(pg, "fb-correct").fill(correct)
            before = pg.locator("#fb-status").inner_text()
            pg.click("#fb-send")
            pg.wait_for_function("(b) => { const t = document.querySelector('#fb-status').innerText;"
                                 " return t.includes('Saved feedback') && t !== b; }", arg=before)
        assert "Your session id" in pg.locator("#fb-session").inner_text()
        pg.screenshot(path=str(ARTIFACTS / "loop-1-feedback.png"), full_page=True)

        pg.get_by_role("tab", name="Train").click()
        pg.locator("#train-source").get_by_text("feedback collected here").click()
        pg.wait_for_function("() => (document.querySelector('#train-feedback-count') || {}).innerText"
                             "?.includes('4 feedback rows')", timeout=20_000)
        assert pg.locator("#train-feedback-rows").inner_text().count("room") == 0  # annotator left blank here
        field(pg, "train-name").fill("room-adapter")
        fraction = pg.locator("#train-fraction input[type=number]")
        fraction.fill("1")
        fraction.press("Enter")
        for knob, value in (("r", "4"), ("alpha", "8"), ("batch", "1")):
            box = pg.locator(f"#train-{knob} input[type=number]")
            box.fill(value)
            box.press("Enter")
        pg.screenshot(path=str(ARTIFACTS / "loop-2-train-preview.png"), full_page=True)
        pg.click("#train-start")
        pg.wait_for_function("() => (document.querySelector('#train-status') || {}).innerText"
                             "?.includes('finished')", timeout=300_000)
        pg.wait_for_function("() => (document.querySelector('#train-plot') || {}).textContent"
                             "?.includes('held-out loss')", timeout=20_000)
        pg.screenshot(path=str(ARTIFACTS / "loop-3-trained.png"), full_page=True)
        manifest = json.loads((settings.trained_dir / "room-adapter" / "data_manifest.json").read_text())
        assert len(manifest["feedback_rows"]) == 4

        pg.get_by_role("tab", name="Ask").click()
        ask(pg, PASSAGE, QUESTION)
        # (the last line: a card still drawing shows Gradio's timer above its title)
        titles = [pg.locator(f"#variant-title-{i}").inner_text().splitlines()[-1] for i in range(4)]
        assert titles == ["base", "sft", "laffi", "room-adapter"]  # joined without a restart
        pg.screenshot(path=str(ARTIFACTS / "loop-4-new-adapter-answers.png"), full_page=True)
        assert visible_errors(pg) == []
    finally:
        pg.close()


def test_ask_and_feedback_work_at_a_phones_width(app, browser):
    url, _ = app
    pg = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        pg.goto(url, wait_until="load")
        pg.wait_for_selector("#ask-button", timeout=60_000)
        ask(pg, PASSAGE, QUESTION)
        width = pg.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390 + 2, f"the page scrolls sideways on a phone ({width} px)"
        for i in range(3):
            box = pg.locator(f"#variant-answer-{i}").bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 392
        pg.locator("#fb-variant").get_by_text("sft", exact=True).tap()
        pg.locator("#fb-rating").get_by_text("👍 good answer").tap()
        pg.locator("#fb-send").scroll_into_view_if_needed()
        pg.locator("#fb-send").tap()
        pg.wait_for_function("() => document.querySelector('#fb-status').innerText.includes('Saved feedback')")
        pg.screenshot(path=str(ARTIFACTS / "loop-5-phone.png"), full_page=True)
        assert visible_errors(pg) == []
    finally:
        pg.close()
