"""The Feedback tab scores LaFFi's predicted feedback against the room's, in headless Chromium: a sentence before
any rated answer, then, after rating answers in the Ask tab, the agreement table per variant (and the rows where
the predicted verdict and the rating disagree), updated as ratings arrive. Screenshots land in tests/artifacts/."""

import pytest

from .conftest import ARTIFACTS, served_app
from .test_browser import field, open_page, visible_errors
from .test_browser_demo_loop import ask

pytestmark = pytest.mark.browser

PASSAGE = "The Halvard lighthouse was lit in 1874 and converted to electricity in 1952."


@pytest.fixture(scope="module")
def app(tiny_dir, tiny_adapters, tmp_path_factory):
    with served_app(tmp_path_factory.mktemp("browser-agreement"), tiny_dir, tiny_adapters) as served:
        yield served


def rate(page, variant, rating, critique=""):
    page.locator("#fb-variant").get_by_text(variant, exact=True).click()
    page.locator("#fb-rating").get_by_text(rating).click()
    field(page, "fb-critique").fill(critique)
    before = page.locator("#fb-status").inner_text()
    page.click("#fb-send")
    page.wait_for_function("(b) => { const t = document.querySelector('#fb-status').innerText;"
                           " return t.includes('Saved feedback') && t !== b; }", arg=before)


def table_rows(page, elem_id, first: str):
    """The body rows of a table (gradio's virtual rows) as lists of cell texts, once its first cell reads `first`."""
    page.wait_for_function("([id, first]) => document.querySelector(`#${id} [role=gridcell]`)?.innerText.trim()"
                           " === first", arg=[elem_id, first], timeout=20_000)
    return [[c.inner_text().strip() for c in r.locator("[role=gridcell]").all()]
            for r in page.locator(f"#{elem_id} [role=row].virtual-row").all()]


def test_the_feedback_tab_shows_agreement_once_an_answer_is_rated(app, browser):
    from laffi.feedback.store import FeedbackStore

    url, settings = app
    pg = open_page(browser, url)
    try:
        pg.get_by_role("tab", name="Feedback").click()
        pg.wait_for_function("() => document.querySelector('#agreement-note')?.innerText"
                             ".includes('No rated answer has a predicted self-feedback yet')")
        assert not pg.locator("#agreement-table").is_visible()

        pg.get_by_role("tab", name="Ask").click()
        ask(pg, PASSAGE, "When was it lit?")
        rate(pg, "laffi", "👎 bad answer", "Incorrect: <b>it</b> was lit in 1874.")
        pg.get_by_role("tab", name="Feedback").click()
        pg.locator("#agreement-table").wait_for(state="visible", timeout=20_000)
        rows = table_rows(pg, "agreement-table", "laffi")
        [row] = FeedbackStore(settings.data_dir / "feedback.sqlite").rows()
        agreed = row["predicted_verdict"] in ("partly", "incorrect")  # rated 👎: "not correct" agrees
        assert [r[:3] for r in rows] == [["laffi", "1", "1" if agreed else "0"]]
        assert rows[0][3] == ("100.0" if agreed else "0.0")
        assert "over 1 rated answers" in pg.locator("#agreement-note").inner_text()
        disagreeing = pg.locator("#agreement-disagreements")
        assert disagreeing.is_visible() != agreed
        if not agreed:  # the row, its critique as the very characters typed (never markup)
            assert "Incorrect: <b>it</b> was lit in 1874." in disagreeing.inner_text()
            assert disagreeing.locator("b").count() == 0

        pg.get_by_role("tab", name="Ask").click()
        rate(pg, "sft", "👍 good answer")
        pg.get_by_role("tab", name="Feedback").click()
        assert [r[0] for r in table_rows(pg, "agreement-table", "sft")] == ["sft", "laffi"]  # display order
        assert "over 2 rated answers" in pg.locator("#agreement-note").inner_text()
        pg.wait_for_timeout(500)
        assert visible_errors(pg) == []
        pg.locator("#agreement-table").scroll_into_view_if_needed()
        pg.screenshot(path=str(ARTIFACTS / "agreement-feedback-tab.png"), full_page=True)
    finally:
        pg.close()
