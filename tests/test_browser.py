"""What a person sees, in headless Chromium (Debian's, driven by Playwright; no browser download): ask, see every
variant's answer and self-feedback with its caveat, give a thumbs-down with a critique, find it in the Feedback tab,
render the attention heatmap - with every request to anything but the app blocked, and hostile text never run as
script nor rendered as markup, in the page or in a pop-up. Then every tab of a fresh page, with feedback stored,
shows no "Error" badge. Screenshots land in tests/artifacts/ for a human to look at."""


import pytest

from .conftest import ARTIFACTS, served_app

pytestmark = pytest.mark.browser

HOSTILE = '<img src=x onerror="window.__pwned=1"> "><svg onload="window.__pwned=2">'
CONTEXT = f"The Halvard lighthouse was lit in 1874 and converted to electricity in 1952. {HOSTILE}"
CRITIQUE = "<script>window.__pwned=3</script>Incorrect: the lamp was converted in 1952."
# Markup that sanitising keeps (an image that calls out, big bold text, a password-looking form): as an adapter
# name it must show as these characters, and the image must never be requested.
MARKUP = ('<img src="http://127.0.0.1:7861/track.png?leak=1"><b style="font-size:40px">BIG</b><form><input '
          'placeholder=password></form>')


@pytest.fixture(scope="module")
def app(tiny_lm, tmp_path_factory):
    with served_app(tmp_path_factory.mktemp("browser-app"), None, lm=tiny_lm, enable_training=True,
                    enable_upload=True) as served:
        yield served


def open_page(browser, url):
    """A page of the app in a new session; pg.external lists requests to anything else, pg.leaks any request
    for the MARKUP's image (wherever it points)."""
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    pg.external, pg.leaks = [], []

    def route(r):
        if "track.png" in r.request.url:
            pg.leaks.append(r.request.url)
            return r.abort()
        if r.request.url.startswith(url) or r.request.url.startswith(("data:", "blob:", "about:")):
            return r.continue_()
        pg.external.append(r.request.url)
        return r.abort()

    pg.route("**/*", route)
    pg.goto(url, wait_until="load")  # not "networkidle": the Train tab polls its job every 2 s
    pg.wait_for_selector("#ask-button", timeout=60_000)
    return pg


@pytest.fixture(scope="module")
def page(app, browser):
    pg = open_page(browser, app[0])
    yield pg
    pg.close()


def field(page, elem_id):
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def visible_errors(page) -> list[str]:
    """Every visible "Error" badge or pop-up on the page."""
    return [t for t in page.get_by_text("Error", exact=True).all() if t.is_visible()] + \
        [t.inner_text() for t in page.locator(".toast-body.error").all() if t.is_visible()]


def test_ask_feedback_browse_and_attention(page):
    field(page, "ask-context").fill(CONTEXT)
    field(page, "ask-question").fill("When was the lamp converted? <script>window.__pwned=5</script>")
    page.click("#ask-button")
    # Cards stream token by token: the status line says "self-feedback in" only once every variant is done.
    page.wait_for_function("() => (document.querySelector('#ask-status textarea') || {}).value"
                           "?.includes('self-feedback in')", timeout=120_000)
    for i in range(3):  # base, sft, laffi: each shows its answer and its feedback
        assert not field(page, f"variant-feedback-{i}").input_value().startswith("…")
        assert field(page, f"variant-answer-{i}").input_value()
        caveat = page.locator(f"#variant-caveat-{i}")  # right under the feedback, saying it is a guess
        assert caveat.is_visible() and "The model's own guess" in caveat.inner_text()
    titles = [page.locator(f"#variant-title-{i}").inner_text() for i in range(3)]
    assert titles == ["base", "sft", "laffi"]
    page.screenshot(path=str(ARTIFACTS / "1-ask.png"), full_page=True)

    page.locator("#fb-variant").get_by_text("sft", exact=True).click()
    page.locator("#fb-rating").get_by_text("👎 bad answer").click()
    field(page, "fb-critique").fill(CRITIQUE)
    field(page, "fb-annotator").fill('"><svg onload="window.__pwned=4">ana')
    page.click("#fb-send")
    page.wait_for_function("() => document.querySelector('#fb-status').innerText.includes('Saved feedback')")
    page.screenshot(path=str(ARTIFACTS / "2-feedback-sent.png"), full_page=True)

    page.get_by_role("tab", name="Feedback").click()  # no Refresh needed: the save updated the table
    page.wait_for_function("() => document.querySelector('#feedback-table').innerText.includes('Incorrect: the lamp')",
                           timeout=20_000)
    page.screenshot(path=str(ARTIFACTS / "3-feedback-tab.png"), full_page=True)

    page.get_by_role("tab", name="Attention").click()
    page.click("#attn-button")
    page.wait_for_selector("#attn-heatmap .js-plotly-plot .main-svg", timeout=60_000)
    page.wait_for_function("() => document.querySelector('#attn-heatmap').textContent.includes('layer 1')")
    layer = page.locator("#attn-layer input[type=number]")  # typing a layer (then Enter) redraws
    layer.fill("0")
    layer.press("Enter")
    page.wait_for_function("() => document.querySelector('#attn-heatmap').textContent.includes('layer 0')",
                           timeout=20_000)
    page.screenshot(path=str(ARTIFACTS / "4-attention.png"), full_page=True)

    # bertviz: its scripts come from the app (require.js, d3, jQuery in node_modules), so it draws offline
    page.get_by_text("bertviz head view").click()
    page.frame_locator("#bertviz-head iframe").locator("#vis svg").first.wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "5-bertviz.png"), full_page=True)

    # no user or model text ran as script: not in the page, not in the bertviz frame
    assert [f.evaluate("window.__pwned") for f in page.frames] == [None] * len(page.frames)
    assert page.external == []  # nothing outside the app was needed


def test_every_tab_of_a_fresh_page_shows_no_error(app, browser):
    """Once feedback is stored (one row with an empty answer), a new visitor opens every tab, and presses Compute
    attention before asking anything: notices, never an "Error" badge."""
    from laffi.feedback.store import FeedbackStore

    url, settings = app
    FeedbackStore(settings.data_dir / "feedback.sqlite").add(
        session_id="test", variant="sft", adapter=None, context=CONTEXT, question="Who built it?", answer="",
        predicted_feedback="Correct.", thumbs=-1, critique="It says nothing about who built it.",
        correct_answer=None, annotator=None)
    pg = open_page(browser, url)
    try:
        for tab in ("Ask", "Results", "Attention", "Train", "Evaluate", "Feedback"):
            pg.get_by_role("tab", name=tab).click()
            pg.wait_for_timeout(1500)
            assert visible_errors(pg) == [], tab
            pg.screenshot(path=str(ARTIFACTS / f"6-tab-{tab.lower()}.png"), full_page=True)
        rows = pg.locator("#feedback-table").inner_text()
        assert "It says nothing about who built it." in rows and "(no answer)" in rows
        pg.get_by_role("tab", name="Results").click()  # the committed study, drawn without the model
        table = pg.locator("#results-table").inner_text()
        assert table.index("always no answer") < table.index("sft") and "laffi" in table
        pg.wait_for_selector("#results-figure .main-svg")
        assert pg.locator("#results-figure .point").count() >= 8  # every policy's points, with intervals
        from laffi.evaluation.published import curve_difference_rows, curve_trivial_rows, published

        _, curve = published()
        if curve is not None and curve_difference_rows(curve):  # LaFFi against SFT, once both landed at a size
            shown = pg.locator("#results-curve-differences").inner_text()
            assert "laffi − sft" in shown and curve_difference_rows(curve)[0][4] in shown
        if curve is not None and curve_trivial_rows(curve):  # each method against the policy, seeds averaged
            shown = pg.locator("#results-curve-trivial").inner_text()
            assert 'always "no answer"' in shown and curve_trivial_rows(curve)[-1][4] in shown
        from laffi.evaluation.thresholds_view import newest_thresholds, threshold_rows

        if (thresholds := newest_thresholds()) is not None:  # the leave-one-article-out thresholds, as committed
            shown = pg.locator("#results-thresholds").inner_text()
            assert all(row[0] in shown and row[2] in shown for row in threshold_rows(thresholds)[1])
        from laffi.evaluation.study_view import newest_study, trial_rows

        if (study := newest_study()) is not None:  # the trials that chose the recipe, as committed
            shown = pg.locator("#results-study").inner_text()
            assert all(row[1] in shown and row[3] in shown for row in trial_rows(study)[1])
        pg.get_by_role("tab", name="Attention").click()
        pg.click("#attn-button")
        pg.wait_for_function("() => document.querySelector('#attn-notes').innerText.includes('Ask a question')")
        pg.wait_for_timeout(500)
        assert visible_errors(pg) == []
    finally:
        pg.close()


def toast_for(page, text: str):
    """The pop-up message holding `text` (Gradio groups messages of one kind in one pop-up)."""
    message = page.locator("[data-testid=toast-text]").filter(has_text=text).last
    message.wait_for(timeout=30_000)
    return message


def assert_shown_as_text(page, message):
    shown = message.inner_text()
    assert MARKUP in shown, shown  # the very characters, not what they would render as
    for tag in ("img", "b", "form", "input"):
        assert message.locator(tag).count() == 0, tag
    page.wait_for_timeout(500)
    assert page.leaks == [] and page.external == []


def test_popups_show_user_and_file_text_as_text(app, browser, small_squad, tmp_path):
    import json

    pg = open_page(browser, app[0])
    try:
        pg.get_by_role("tab", name="Train").click()
        field(pg, "train-name").fill(MARKUP)
        pg.click("#train-start")
        assert_shown_as_text(pg, toast_for(pg, "adapter name"))
        pg.screenshot(path=str(ARTIFACTS / "7-popup-name.png"), full_page=True)

        field(pg, "train-name").fill("fine-name")
        field(pg, "train-modules").fill(MARKUP)
        pg.click("#train-start")
        assert_shown_as_text(pg, toast_for(pg, "no module named"))

        doc = json.loads(small_squad.read_text())  # a file with one bad record whose id is markup
        doc["data"][0]["paragraphs"][0]["qas"].append({"id": MARKUP, "question": "", "answers": []})
        upload = tmp_path / "with-markup.json"
        upload.write_text(json.dumps(doc))
        pg.get_by_role("tab", name="Evaluate").click()
        assert not pg.locator("#eval-upload").is_visible()  # the upload box only with "upload" chosen
        pg.locator("label").filter(has_text="upload").last.click()
        pg.locator("#eval-upload").wait_for(state="visible")
        pg.locator("#eval-upload input[type=file]").set_input_files(str(upload))
        pg.locator("#eval-articles input").click()
        pg.get_by_role("option", name="all", exact=True).click()
        pg.wait_for_timeout(1000)
        pg.get_by_role("button", name="Evaluate", exact=True).click()
        assert_shown_as_text(pg, toast_for(pg, "bad record(s) skipped"))
        pg.screenshot(path=str(ARTIFACTS / "8-popup-file.png"), full_page=True)
    finally:
        pg.close()


@pytest.mark.slow
def test_train_tab_upload_box_and_a_refreshed_page_shows_the_jobs_settings(app, browser, small_squad):
    import time

    from gradio_client import Client, handle_file

    url, _ = app
    client = Client(url, verbose=False)
    client.predict(method="sft", adapter_name="reattach-me", data_source="upload",
                   upload_file=handle_file(str(small_squad)), articles="all", questions=8, use_app_feedback=False,
                   human_fraction=0.25, lora_r=6, lora_alpha=12, target_modules="q_proj", learning_rate=1e-3,
                   epochs=2, batch_size=1, max_length=1024, replace_existing=False, api_name="/train_start")
    client.predict(api_name="/train_stop")
    deadline = time.time() + 60
    while "running" in client.predict(api_name="/train_status")[0].split("—")[0] and time.time() < deadline:
        time.sleep(0.5)
    pg = open_page(browser, url)  # what someone sees after a refresh: the job and the settings it ran with
    try:
        pg.get_by_role("tab", name="Train").click()
        pg.wait_for_function("() => document.querySelector('#train-status').innerText.includes('reattach-me')",
                             timeout=20_000)
        assert field(pg, "train-name").input_value() == "reattach-me"
        assert field(pg, "train-modules").input_value() == "q_proj"
        numbers = {name: pg.locator(f"#train-{name} input[type=number]").input_value()
                   for name in ("r", "alpha", "batch", "epochs")}
        assert numbers == {"r": "6", "alpha": "12", "batch": "1", "epochs": "2"}
        assert pg.locator("#train-source input[value=upload]").is_checked()
        pg.locator("#train-upload").wait_for(state="visible", timeout=10_000)  # the source's change event shows it
        pg.locator("#train-source").get_by_text("shared SQuAD file").click()
        pg.locator("#train-upload").wait_for(state="hidden")
        pg.screenshot(path=str(ARTIFACTS / "9-train-reattached.png"), full_page=True)
    finally:
        pg.close()
