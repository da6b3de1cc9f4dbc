"""What a person sees, in headless Chromium (Debian's, driven by Playwright; no browser download): ask, see every
variant's answer and self-feedback, give a thumbs-down with a critique, find it in the Feedback tab, render the
attention heatmap — with every request to anything but the app blocked, and hostile text never run as script.
Screenshots land in tests/artifacts/ for a human to look at."""

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
HOSTILE = '<img src=x onerror="window.__pwned=1"> "><svg onload="window.__pwned=2">'
CONTEXT = f"The Halvard lighthouse was lit in 1874 and converted to electricity in 1952. {HOSTILE}"
CRITIQUE = "<script>window.__pwned=3</script>Incorrect: the lamp was converted in 1952."


@pytest.fixture(scope="module")
def url(tiny_lm, tmp_path_factory):
    from laffi.ui import build_demo
    from laffi.settings import Settings

    root = tmp_path_factory.mktemp("browser-app")
    demo = build_demo(lm=tiny_lm, settings=Settings.from_env(data_dir=root / "data", runs_dir=root / "runs"))
    demo.queue().launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        yield demo.local_url.rstrip("/")
    finally:
        demo.close()


@pytest.fixture(scope="module")
def page(url):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (make test installs it: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.external = []

        def route(r):
            if r.request.url.startswith(url) or r.request.url.startswith(("data:", "blob:", "about:")):
                return r.continue_()
            pg.external.append(r.request.url)
            return r.abort()

        pg.route("**/*", route)
        pg.goto(url, wait_until="load")  # not "networkidle": the Train tab polls its job every 2 s
        pg.wait_for_selector("#ask-button", timeout=60_000)
        yield pg
        browser.close()


def field(page, elem_id):
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def test_ask_feedback_browse_and_attention(page):
    field(page, "ask-context").fill(CONTEXT)
    field(page, "ask-question").fill("When was the lamp converted? <script>window.__pwned=5</script>")
    page.click("#ask-button")
    for i in range(3):  # base, laffi, sft: each shows its answer and, after the second pass, its feedback
        page.wait_for_function(
            f"() => {{ const t = document.querySelector('#variant-feedback-{i} textarea');"
            " return t && t.value && !t.value.startsWith('…'); }", timeout=60_000)
        assert field(page, f"variant-answer-{i}").input_value()
    page.screenshot(path=str(ARTIFACTS / "1-ask.png"), full_page=True)

    page.locator("#fb-variant").get_by_text("sft", exact=True).click()
    page.locator("#fb-rating").get_by_text("👎 bad answer").click()
    field(page, "fb-critique").fill(CRITIQUE)
    field(page, "fb-annotator").fill('"><svg onload="window.__pwned=4">ana')
    page.click("#fb-send")
    page.wait_for_function("() => document.querySelector('#fb-status').innerText.includes('Saved feedback')")
    page.screenshot(path=str(ARTIFACTS / "2-feedback-sent.png"), full_page=True)

    page.get_by_role("tab", name="Feedback").click()
    page.get_by_role("button", name="Refresh").click()
    page.wait_for_function("() => document.querySelector('#feedback-table').innerText.includes('Incorrect: the lamp')")
    page.screenshot(path=str(ARTIFACTS / "3-feedback-tab.png"), full_page=True)

    page.get_by_role("tab", name="Attention").click()
    page.click("#attn-button")
    page.wait_for_selector("#attn-heatmap .js-plotly-plot .main-svg", timeout=60_000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "4-attention.png"), full_page=True)

    # bertviz: its scripts come from the app (require.js, d3, jQuery in node_modules), so it draws offline
    page.get_by_text("bertviz head view").click()
    page.frame_locator("#bertviz-head iframe").locator("#vis svg").first.wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "5-bertviz.png"), full_page=True)

    # no user or model text ran as script: not in the page, not in the bertviz frame
    assert [f.evaluate("window.__pwned") for f in page.frames] == [None] * len(page.frames)
    assert page.external == []  # nothing outside the app was needed
