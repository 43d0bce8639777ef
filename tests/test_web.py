"""The web app in a real browser (Debian's Chromium driven by Playwright) against a real server.

Each test drives the page the way a person would — file input, Enter in the chat box, buttons — and checks
what the page shows. Every page also asserts that it raised no JavaScript error and asked for nothing
outside the server it came from (the app must work offline).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .conftest import EXAMPLES
from .serving import running_server

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPLY = "I moved to Lisbon in March [1]."
LISBON = ("# Moving\n\nIn March 2024 I moved to Lisbon, into a flat by the river. "
          "I moved to Lisbon because of the new job at the harbor.\n")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's Chromium; run `bash scripts/bootstrap.sh`")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: run `bash scripts/bootstrap.sh`")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


class Page:
    """A fresh browser context and page that records JS errors and every URL it requests."""

    def __init__(self, browser, origin: str) -> None:
        from playwright.sync_api import expect

        self.expect = expect
        self.origin = origin
        self.context = browser.new_context()
        self.context.set_default_timeout(20_000)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def check_clean(self) -> None:
        assert not self.errors, f"JavaScript errors: {self.errors}"
        outside = [u for u in self.requests if not u.startswith(self.origin + "/")]
        assert not outside, f"the app asked for something outside its server: {outside}"

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(browser):
    pages: list[Page] = []

    def make(url: str) -> Page:
        page = Page(browser, url)
        pages.append(page)
        return page
    yield make
    for p in pages:
        p.check_clean()
        p.close()


def test_upload_drop_search_and_forget(tmp_path, open_page):
    with running_server(tmp_path / "home") as srv:
        w = open_page(srv.url)
        page, expect = w.page, w.expect
        page.goto(srv.url + "/#memories")
        expect(page.locator("#source-list")).to_contain_text("No memories yet")
        page.set_input_files("#upload-files", files=[{"name": "cello.md", "mimeType": "text/markdown",
                             "buffer": b"# Sundays\n\nOn Sundays I play the cello with Rita by the river.\n"}])
        page.fill("#upload-source", "diary")
        page.click("#upload-submit")
        expect(page.locator("#ingest-job")).to_have_attribute("data-status", "done")
        expect(page.locator("#ingest-job progress")).to_have_attribute("value", "1")
        expect(page.locator('#source-list tr[data-source="diary"]')).to_be_visible()

        # a file dropped on the drop zone goes the same way (into the default source)
        page.fill("#upload-source", "")
        page.evaluate("""() => {
            const dt = new DataTransfer();
            dt.items.add(new File(["The harbor ferry leaves at seven; I take it to the bakery."], "ferry.txt",
                                  {type: "text/plain"}));
            document.querySelector("#dropzone").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
        }""")
        expect(page.locator('#source-list tr[data-source="uploads"]')).to_be_visible()

        page.fill("#search-q", "cello on Sundays")
        page.keyboard.press("Enter")
        first = page.locator("[data-testid=search-result]").first
        expect(first).to_contain_text("cello")
        expect(first).to_contain_text("diary")

        page.once("dialog", lambda d: d.accept())
        page.locator('#source-list tr[data-source="diary"] [data-testid=delete-source]').click()
        expect(page.locator('#source-list tr[data-source="diary"]')).to_have_count(0)
        expect(page.locator('#source-list tr[data-source="uploads"]')).to_have_count(1)


def test_chat_streams_an_answer_with_clickable_citations(tmp_path, open_page):
    with running_server(tmp_path / "home", persona=f"fake:{REPLY}") as srv:
        srv.ingest_text({"moving.md": LISBON})
        w = open_page(srv.url)
        page, expect = w.page, w.expect
        page.goto(srv.url + "/")
        expect(page.locator("#model-select option")).to_have_count(1)
        page.fill("#chat-input", "Where did I move in March?")
        page.keyboard.press("Shift+Enter")          # a new line, not a send
        page.keyboard.type("And why?")
        expect(page.locator("#chat-input")).to_have_value("Where did I move in March?\nAnd why?")
        page.keyboard.press("Enter")
        answer = page.locator("[data-testid=answer]").last
        expect(answer).to_contain_text("I moved to Lisbon in March")
        expect(page.locator("[data-testid=question]")).to_contain_text("And why?")
        cite = answer.locator("[data-testid=citation]")
        expect(cite).to_have_text("[1]")
        cite.click()
        expect(page.locator("#citation-panel")).to_be_visible()
        expect(page.locator("#citation-snippet")).to_contain_text("Lisbon")
        expect(page.locator("#citation-meta")).to_contain_text("moving.md")
        page.keyboard.press("Escape")
        expect(page.locator("#citation-panel")).to_be_hidden()

        # the conversation lives on the server: a reload lists it, and opening it shows the cited answer
        expect(page.locator("#conversation-list button")).to_have_count(1)
        page.reload()
        page.locator("#conversation-list button").first.click()
        expect(page.locator("[data-testid=answer]")).to_contain_text("Lisbon")
        expect(page.locator("[data-testid=answer] [data-testid=citation]")).to_have_count(1)
        # a follow-up continues the same conversation
        page.fill("#chat-input", "Anything else?")
        page.keyboard.press("Enter")
        expect(page.locator("[data-testid=answer]")).to_have_count(2)
        expect(page.locator("#conversation-list button")).to_have_count(1)

        page.keyboard.press("Alt+5")
        expect(page.locator("#view-settings")).to_be_visible()
        expect(page.locator("#model-list")).to_contain_text("fake:")


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    pytest.importorskip("peft")
    from secondself.train.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def test_build_then_train_with_live_progress_and_evaluation(tmp_path, open_page, tiny_base, monkeypatch):
    import torch

    from secondself.ingest.pipeline import ingest

    monkeypatch.setenv("SECONDSELF_REAL_MODELS", "allow")   # the tiny model is built in code, nothing real
    torch.set_num_threads(1)
    with running_server(tmp_path / "home", train_base=str(tiny_base)) as srv:
        rt = srv.runtime
        corpus = tmp_path / "corpus"
        shutil.copytree(EXAMPLES / "maya" / "corpus", corpus)
        with rt.lock:
            ingest(rt.store, rt.embedder, [corpus], source_name="maya", person_name="Maya")
        w = open_page(srv.url)
        page, expect = w.page, w.expect
        page.goto(srv.url + "/#profile")
        expect(page.locator("#profile-empty")).to_be_visible()
        page.click("[data-testid=build-submit]")
        expect(page.locator("#build-job")).to_have_attribute("data-status", "done", timeout=60_000)
        expect(page.locator("#profile-body")).to_be_visible()
        expect(page.locator("#version-list tr")).to_have_count(1)
        expect(page.locator("[data-testid=shade]").first).to_be_visible()
        expect(page.locator("#fact-list")).to_contain_text("Lisbon")
        # the person corrects a section: a new version, and the diff between the two says what changed
        page.click("[data-testid=edit-biography]")
        page.fill("[data-section=biography] textarea", "I am Maya and I live in Lisbon.")
        page.click("[data-section=biography] button[type=submit]")
        expect(page.locator("[data-section=biography]")).to_contain_text("I am Maya and I live in Lisbon.")
        expect(page.locator("#version-list tr")).to_have_count(2)
        page.click("#diff-form button[type=submit]")
        expect(page.locator("#diff-out")).to_contain_text("~ biography:")

        page.keyboard.press("Alt+4")
        expect(page.locator("#eval-empty")).to_be_visible()
        page.fill("#train-steps", "6")
        # record every state the progress indicator shows, from the page itself
        page.evaluate("""() => {
            window.seen = [];
            const box = document.querySelector("#train-job");
            new MutationObserver(() => {
                const bar = box.querySelector("progress");
                window.seen.push([box.dataset.status, bar && bar.getAttribute("value"), bar && bar.max,
                                  box.querySelector(".job-line")?.textContent]);
            }).observe(box, {subtree: true, childList: true, attributes: true, characterData: true});
        }""")
        page.click("#train-start")
        expect(page.locator("#train-cancel")).to_be_visible()
        expect(page.locator("#train-job")).to_have_attribute("data-status", "done", timeout=100_000)
        seen = page.evaluate("window.seen")
        running = {tuple(s) for s in seen if s[0] in ("queued", "running")}
        assert len(running) >= 2, f"the progress never changed before the end: {seen}"
        assert any("step" in (s[3] or "") for s in seen), seen
        expect(page.locator("#train-cancel")).to_be_hidden()
        expect(page.locator("#loss-chart path")).to_have_count(1)
        expect(page.locator("#eval-table")).to_be_visible()
        expect(page.locator("#eval-table tbody")).to_contain_text("memory_bpb")
        expect(page.locator("#eval-summary")).to_contain_text("compression gain")
        expect(page.locator("#scores-chart path").first).to_be_attached()
        expect(page.locator('#adapter-list tr[data-version="v001"]')).to_contain_text("in use")

        page.keyboard.press("Alt+1")
        expect(page.locator("#model-select option")).to_have_count(2)


def test_token_form_and_fragment_token(tmp_path, open_page):
    with running_server(tmp_path / "home") as srv:
        secret = srv.token("admin", name="browser")
        w = open_page(srv.url)
        page, expect = w.page, w.expect
        page.goto(srv.url + "/#settings")
        expect(page.locator("#token-form")).to_be_visible()
        expect(page.locator("#token-input")).to_be_focused()
        page.fill("#token-input", "ss-not-a-real-token")
        page.keyboard.press("Enter")
        expect(page.locator("#token-problem")).to_contain_text("refused")
        expect(page.locator("#token-form")).to_be_visible()
        page.fill("#token-input", secret)
        page.keyboard.press("Enter")
        expect(page.locator("#token-form")).to_be_hidden()
        expect(page.locator('#token-list tr[data-token="browser"]')).to_be_visible()

        # create a token in Settings: its secret is shown once
        page.fill("#new-token-name", "phone")
        page.click("#token-create-form button[type=submit]")
        expect(page.locator("#new-secret-value")).to_contain_text("ss-")
        expect(page.locator('#token-list tr[data-token="phone"]')).to_be_visible()

        # a link with #token= signs a fresh tab in and the token leaves the address bar
        w2 = open_page(srv.url)
        w2.page.goto(f"{srv.url}/#token={secret}&view=memories")
        w2.expect(w2.page.locator("#view-memories")).to_be_visible()
        w2.expect(w2.page.locator("#token-form")).to_be_hidden()
        w2.expect(w2.page.locator("#source-list")).to_contain_text("No memories yet")
        assert "token" not in w2.page.url
        assert w2.page.evaluate("sessionStorage.getItem('secondself.token')") == secret


def test_spaces_create_run_with_live_progress_and_show_skipped_turns(tmp_path, open_page):
    import socket

    from secondself.backends.chat import FakeChatModel
    from secondself.roles import create_role

    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_url = f"http://127.0.0.1:{dead.getsockname()[1]}/v1"
    dead.close()
    with running_server(tmp_path / "remote", person_name="Tomás") as remote, \
            running_server(tmp_path / "local", persona=f"fake:{REPLY}") as srv:
        remote.ingest_text({"japan.md": "# Moves\n\nI plan every move around the night train: Lisbon to Kyoto by rail.\n"})
        remote.runtime.use_model("fake", FakeChatModel(respond=lambda m: "Take the night train to Kyoto [1]."))
        secret = remote.token("chat")
        srv.ingest_text({"moving.md": LISBON})
        with srv.runtime.lock:
            create_role(srv.runtime.store, "buddy", "You plan trips with me.")
        w = open_page(srv.url)
        page, expect = w.page, w.expect
        page.goto(srv.url + "/")
        expect(page.locator("#view-chat")).to_be_visible()     # started (a key pressed earlier would be undone)
        page.keyboard.press("Alt+6")
        expect(page.locator("#view-spaces")).to_be_visible()
        expect(page.locator("#space-list")).to_contain_text("No spaces yet")
        page.fill("#space-topic", "Move to Lisbon")
        page.fill("#space-participants", f"role:buddy\n{remote.url}/v1?name=Tomás#{secret}\n{dead_url}")
        page.fill("#space-rounds", "1")
        page.click("[data-testid=space-create]")
        expect(page.locator("#space-title")).to_have_text("Move to Lisbon")
        expect(page.locator("#space-info")).to_contain_text(f"{remote.url}/v1?name=Tomás#***")
        expect(page.locator("#space-run")).to_have_text("Run")
        expect(page.locator("#space-notices")).to_contain_text(f"is sent to {remote.url}/v1")

        page.evaluate("""() => {
            window.counts = [];
            new MutationObserver(() => window.counts.push(document.querySelectorAll("#space-turns li").length))
                .observe(document.querySelector("#space-turns"), {childList: true});
        }""")
        page.click("#space-run")
        expect(page.locator("#space-job")).to_have_attribute("data-status", "done")
        turns = page.locator("[data-testid=space-turn]")
        expect(turns).to_have_count(5)
        expect(turns.nth(0)).to_have_attribute("data-kind", "opening")
        expect(turns.nth(1)).to_contain_text("Maya (buddy) · round 1")
        expect(turns.nth(1)).to_contain_text("I moved to Lisbon in March")
        expect(turns.nth(2)).to_contain_text("Tomás · round 1")
        expect(turns.nth(2)).to_contain_text("Take the night train to Kyoto")
        skipped = page.locator('[data-testid=space-turn][data-status="skipped"]')
        expect(skipped).to_have_count(1)
        expect(skipped).to_contain_text("skipped:")
        expect(skipped).to_contain_text("refused")
        expect(turns.nth(4)).to_have_attribute("data-kind", "summary")
        expect(turns.nth(4)).to_contain_text("Not heard")
        expect(page.locator("#space-run")).to_have_text("Run again")
        counts = page.evaluate("window.counts")
        assert len(set(counts)) >= 2, f"the transcript did not grow while the space ran: {counts}"
        assert secret not in page.content()

        page.reload()
        page.locator("#space-list button").first.click()
        expect(page.locator("[data-testid=space-turn]")).to_have_count(5)
        page.once("dialog", lambda d: d.accept())
        page.click("#space-delete")
        expect(page.locator("#space-list")).to_contain_text("No spaces yet")
        expect(page.locator("#space-detail")).to_be_hidden()
