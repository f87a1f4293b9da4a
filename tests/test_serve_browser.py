"""The web page end to end in a real headless Chromium (Debian's /usr/bin/chromium driven by the
playwright package): the real server on 127.0.0.1, real images uploaded through the page, the
labels and bars it shows checked against the API. Screenshots go to out/test-artifacts/."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from test_serve import ServerProcess, httpx, multipart  # skips this module too without the serve extra

from predict_support import CLASSES

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "out" / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing (pip install playwright)")


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    with ServerProcess(exported.onnx, tmp_path_factory.mktemp("browser") / "server.log") as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    """A fresh page on the app that records console errors and any request leaving 127.0.0.1."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.problems = []
    page.on("console", lambda m: m.type == "error" and page.problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))
    page.on("request", lambda r: urlsplit(r.url).scheme in ("http", "https")
            and urlsplit(r.url).hostname != "127.0.0.1" and page.problems.append(f"external request: {r.url}"))
    page.goto(server.url + "/")
    sync_api.expect(page.locator("#model-info")).to_have_text(re.compile("^Model model.onnx"))
    yield page
    context.close()
    assert page.problems == []


def wait_for_cards(page, count: int) -> list:
    # Locator waits, not wait_for_function: the page's CSP (rightly) forbids the eval it uses.
    sync_api.expect(page.locator("#results .card")).to_have_count(count)
    sync_api.expect(page.locator("#results .card[aria-busy]")).to_have_count(0, timeout=30_000)
    return page.query_selector_all("#results .card")


def shown_bars(card) -> dict[str, float]:
    return {bar.get_attribute("data-class"): float(bar.query_selector("[role=meter]").get_attribute("aria-valuenow"))
            for bar in card.query_selector_all(".bar")}


def api_results(server, paths) -> list[dict]:
    return httpx.post(server.url + "/v1/predict", files=multipart(*paths), timeout=30).json()["results"]


def test_upload_through_the_page_shows_labels_and_bars(page, server, exported, bad_corpus):
    paths = exported.images[:5] + [bad_corpus["text_as_jpg"]]
    page.set_input_files("#file-input", [str(p) for p in paths])
    cards = wait_for_cards(page, len(paths))
    expected = api_results(server, paths)
    for card, want in zip(cards[:5], expected):
        assert card.query_selector(".label-name").inner_text().lower() == want["label"]
        assert card.query_selector(".confidence").inner_text() == f"{want['confidence'] * 100:.1f}%"
        bars = shown_bars(card)
        assert list(bars) == CLASSES
        for name in CLASSES:
            assert bars[name] == pytest.approx(want["probabilities"][name] * 100, abs=0.06)
        widths = card.eval_on_selector_all(".bar-fill", "fills => fills.map(f => f.getBoundingClientRect().width)")
        assert widths.index(max(widths)) == CLASSES.index(want["label"])  # the longest bar is the label
        assert card.eval_on_selector(".preview-image", "img => img.complete && img.naturalWidth > 0")
    failed = cards[5]
    assert "failed" in failed.get_attribute("class")
    assert "not an image" in failed.query_selector(".error").inner_text()
    assert "Classified 5 of 6 images" in page.inner_text("#status")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-page.png"), full_page=True)


def test_drop_files_and_explain(page, server, exported):
    page.check("#explain")
    files = [{"name": p.name, "data": base64.b64encode(p.read_bytes()).decode()} for p in exported.images[:2]]
    dropped = page.evaluate_handle("""files => {
        const transfer = new DataTransfer();
        for (const f of files) {
            const bytes = Uint8Array.from(atob(f.data), c => c.charCodeAt(0));
            transfer.items.add(new File([bytes], f.name, {type: 'image/jpeg'}));
        }
        return transfer;
    }""", files)
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": dropped})
    cards = wait_for_cards(page, 2)
    expected = api_results(server, exported.images[:2])
    for card, want in zip(cards, expected):
        assert card.query_selector(".label-name").inner_text().lower() == want["label"]
        assert card.eval_on_selector(".heatmap-image", "img => !img.hidden && img.complete && img.naturalWidth === 256")
        assert card.query_selector(".heatmap-toggle").get_attribute("aria-pressed") == "true"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-page-explain.png"), full_page=True)
    toggle = cards[0].query_selector(".heatmap-toggle")
    toggle.click()  # back to the original image
    assert cards[0].eval_on_selector(".heatmap-image", "img => img.hidden")
    assert toggle.get_attribute("aria-pressed") == "false" and toggle.inner_text() == "Show heatmap"


def test_readable_on_a_phone(browser, server, exported):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    page = context.new_page()
    page.goto(server.url + "/")
    page.set_input_files("#file-input", [str(p) for p in exported.images[:2]])
    wait_for_cards(page, 2)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    assert page.get_by_label("choose files").count() == 1  # the file input has an accessible name
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-page-phone.png"), full_page=True)
    context.close()


def test_api_docs_render_offline(page, server):
    pytest.importorskip("swagger_ui_bundle", reason="swagger-ui-bundle-v2 not installed: /docs uses a CDN")
    page.goto(server.url + "/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
    assert "artstyle" in page.inner_text(".swagger-ui .info .title")
    assert page.locator(".opblock-summary-path", has_text="/v1/predict").count() == 1



def test_a_video_shows_its_row_and_a_strip_of_frames(page, server, shared_subset, tmp_path):
    from predict_support import video_frames, write_video

    video = tmp_path / "clip.avi"
    assert write_video(video, video_frames(sorted((shared_subset / "anime").iterdir())[:6]), "MJPG", 4.0)
    page.set_input_files("#file-input", [str(video)])
    (card,) = wait_for_cards(page, 1)
    (want,) = api_results(server, [video])
    assert card.get_attribute("data-label") == want["label"]
    assert card.query_selector(".size").inner_text().startswith(f"Video, 1.5 s: {want['frames']} frames")
    strip = card.query_selector_all(".frame-strip li")
    assert [item.get_attribute("data-label") for item in strip] == [f["label"] for f in want["frame_strip"]]
    assert all(item.eval_on_selector("img", "img => img.complete && img.naturalWidth === 96") for item in strip)
    assert card.eval_on_selector(".preview-image", "img => !img.hidden && img.naturalWidth === 96")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "video-card.png"), full_page=True)
