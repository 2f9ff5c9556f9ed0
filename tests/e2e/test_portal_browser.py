"""The web portal in a real browser: Debian's chromium, headless, driven by
Playwright for Python (which never downloads a browser of its own here).

Log in, upload (file picker and drop), start backgrounded folder moves on a
slow mount and watch them in Actions In Progress, stop one with the keyboard,
see the listing refresh itself when a job completes; an admin's view of
another user's stuck job; and file names that look like HTML stay text.

The screenshot of the open dropdown lands in the test's tmp_path; with
``E2E_ARTIFACTS=1`` it is also copied to tests/e2e/artifacts/.
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import PASSWORDS, unique_memory

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).parent / "artifacts"
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} missing (scripts/test installs Debian's chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def portal(gateway_factory, browser, tmp_path):
    """A gateway with a local "/" (``r.files``) and a 15 ms-per-call
    slow::memory "/slow", and ``open(user)`` → a logged-in page. Every page
    records JS errors and dialogs, which the test then requires to be empty."""
    files = tmp_path / "files"
    files.mkdir()
    # A short event-stream window: stopping the HTTP server waits for open
    # streams to end, and the page reconnects (and resyncs) after each one.
    r = gateway_factory(protocols=("http",), sections={"http": {"events_window_s": 3}}, mounts={
        "/": f"file://{files}", "/slow": (f"slow::memory://{unique_memory()}", {"slow": {"latency_ms": 15}})})
    r.files = files
    r.base = f"http://127.0.0.1:{r.port('http')}"
    contexts, r.problems = [], []

    def open_page(user: str = "alice", viewport: dict | None = None):
        ctx = browser.new_context(viewport=viewport or {"width": 1280, "height": 800})
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(15000)
        page.add_init_script("window.__alerts = 0; const realAlert = window.alert;"
                             "window.alert = (...a) => { window.__alerts++; return realAlert.apply(window, a); };")
        page.on("pageerror", lambda exc: r.problems.append(f"page error: {exc}"))
        page.on("dialog", lambda d: (r.problems.append(f"dialog: {d.message}"), d.dismiss()))
        page.goto(r.base + "/ui/")
        page.fill("#login-user", user)
        page.fill("#login-password", PASSWORDS[user])
        page.keyboard.press("Enter")
        page.wait_for_selector("#files-view:not([hidden])")
        return page

    r.open = open_page
    yield r
    for ctx in contexts:
        ctx.close()


def make_tree(r, root: str, n: int) -> None:
    """``n`` small files under ``root``, written through the core (in
    parallel: each slow call just waits)."""
    s = r.session("alice")
    r.ops.mkdir(s, root)

    def one(i: int) -> None:
        up = r.ops.open_write(s, f"{root}/f{i:03}.bin")
        up.write(b"x" * 4096)
        up.commit()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(n)))


def names(page) -> list[str]:
    return page.eval_on_selector_all("#file-rows tr", "rows => rows.map(r => r.dataset.name)")


def job_entry(page, text: str):
    return page.locator("#jobs-list li.job", has_text=text)


def wait_job(page, text: str, state: str, timeout: float = 15000) -> None:
    """Wait until the job entry naming ``text`` shows ``state``. (Predicates
    are functions: the page's CSP forbids evaluating strings.)"""
    page.wait_for_function("""([text, state]) => [...document.querySelectorAll('#jobs-list li.job')]
        .some(li => li.textContent.includes(text) && li.dataset.state === state)""", arg=[text, state],
                           timeout=timeout)


def open_folder(page, path: str) -> None:
    """Click the mount's link in the side bar and wait for its listing."""
    page.get_by_role("link", name=path, exact=True).click()
    page.wait_for_selector(f"table.files[data-path='{path}']")


def start_move(page, name: str, to: str) -> None:
    page.get_by_role("button", name=f"Move {name}", exact=True).click()
    page.fill("#dialog-input", to)
    page.keyboard.press("Enter")


def test_upload_move_stop_and_refresh(portal, tmp_path):
    make_tree(portal, "/slow/a", 240)  # long enough to still run after the steps below
    make_tree(portal, "/slow/b", 150)
    page = portal.open("alice")

    # Upload through the file picker, then by dropping a file on the list.
    source = tmp_path / "hello.txt"
    source.write_bytes(b"hello portal\n" * 1000)
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Upload files").click()
    chooser.value.set_files(str(source))
    page.wait_for_selector("#file-rows tr[data-name='hello.txt']")
    assert (portal.files / "hello.txt").read_bytes() == source.read_bytes()
    done = page.locator("#uploads li[data-name='hello.txt']")
    assert done.locator("progress").evaluate("e => e.value") == 100 and "done" in done.inner_text()
    page.evaluate("""() => {
        const dt = new DataTransfer();
        dt.items.add(new File(["dropped"], "dropped.txt", {type: "text/plain"}));
        document.getElementById("drop").dispatchEvent(
            new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""")
    page.wait_for_selector("#file-rows tr[data-name='dropped.txt']")
    assert (portal.files / "dropped.txt").read_bytes() == b"dropped"

    # Download, new folder, copy, rename and delete, each through the REST API.
    with page.expect_download() as download:
        page.get_by_role("link", name="Download hello.txt").click()
    assert Path(download.value.path()).read_bytes() == source.read_bytes()
    page.get_by_role("button", name="New folder").click()
    page.fill("#dialog-input", "docs")
    page.keyboard.press("Enter")
    page.wait_for_selector("#file-rows tr[data-name='docs']")
    page.get_by_role("button", name="Copy hello.txt", exact=True).click()
    assert page.input_value("#dialog-input") == "/hello (copy).txt"
    page.fill("#dialog-input", "/docs/hello.txt")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Rename dropped.txt", exact=True).click()
    page.fill("#dialog-input", "renamed.txt")
    page.keyboard.press("Enter")
    page.wait_for_selector("#file-rows tr[data-name='renamed.txt']")
    page.get_by_role("button", name="Delete renamed.txt", exact=True).click()
    page.keyboard.press("Enter")  # the dialog's focus is on its Delete button
    page.wait_for_function("() => !document.querySelector(\"#file-rows tr[data-name='renamed.txt']\")")
    assert (portal.files / "docs" / "hello.txt").read_bytes() == source.read_bytes()
    assert sorted(p.name for p in portal.files.iterdir()) == ["docs", "hello.txt"]

    # A folder move on the slow mount is backgrounded and listed at once.
    open_folder(page, "/slow")
    start_move(page, "a", "/slow/a-moved")
    toggle = page.locator("#jobs-toggle")
    toggle.press("Enter")
    assert toggle.get_attribute("aria-expanded") == "true"
    entry = job_entry(page, "/slow/a-moved")
    entry.wait_for()
    assert "Move" in entry.inner_text() and "/slow/a" in entry.inner_text()
    page.wait_for_function("() => Number(document.getElementById('jobs-badge').textContent) >= 1")
    # The initiating session sees the outcome at once (the view's overlay).
    page.wait_for_selector("#file-rows tr[data-name='a-moved']")

    # Its percentage rises, live from the event stream.
    bar = entry.locator("progress")
    samples: list[float] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (len(samples) >= 2 and samples[-1] > samples[0] > 0):
        value = float(bar.evaluate("e => e.value"))
        if 0 < value < 100 and entry.get_attribute("data-state") == "running":
            samples.append(value)
        time.sleep(0.3)
    assert len(samples) >= 2 and samples[-1] > samples[0] > 0, samples
    assert "items" in entry.locator(".job-stats").inner_text()

    # Start another and stop it from the keyboard: it rolls back.
    page.keyboard.press("Escape")
    assert toggle.get_attribute("aria-expanded") == "false"
    assert page.evaluate("document.activeElement.id") == "jobs-toggle"
    start_move(page, "b", "/slow/b-moved")
    toggle.press("Enter")
    other = job_entry(page, "/slow/b-moved")
    wait_job(page, "/slow/b-moved", "running")
    stop = other.get_by_role("button", name="Stop move of /slow/b")
    stop.focus()
    page.keyboard.press("Enter")
    wait_job(page, "/slow/b-moved", "stopped")
    assert "stopped" in other.locator(".job-state").inner_text()
    buttons = other.locator(".job-action")  # Stop/Cancel, and an admin's Retry and Abandon
    assert all(buttons.nth(i).is_hidden() for i in range(buttons.count()))  # a stopped job offers none
    assert page.evaluate("document.activeElement.closest('#jobs-panel') !== null")  # focus stays in the list
    shot = tmp_path / "actions-in-progress.png"
    boxes = [page.locator(sel).bounding_box() for sel in ("#jobs-toggle", "#jobs-panel")]
    left, top = min(b["x"] for b in boxes) - 8, min(b["y"] for b in boxes) - 8
    page.screenshot(path=str(shot), clip={
        "x": left, "y": top, "width": max(b["x"] + b["width"] for b in boxes) + 8 - left,
        "height": max(b["y"] + b["height"] for b in boxes) + 8 - top})
    if os.environ.get("E2E_ARTIFACTS"):
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copyfile(shot, ARTIFACTS / shot.name)

    # Let the refresh after the stop settle, then change the folder behind
    # the page's back: only the move's completion may bring it into view.
    page.wait_for_selector("#file-rows tr[data-name='b']")
    page.wait_for_timeout(600)
    assert entry.get_attribute("data-state") == "running", "the move ended before the refresh could be observed"
    outsider = portal.session("bob")
    portal.ops.open_write(outsider, "/slow/marker.txt").commit()
    assert "marker.txt" not in names(page)
    wait_job(page, "/slow/a-moved", "completed", timeout=60000)
    page.wait_for_selector("#file-rows tr[data-name='marker.txt']", timeout=5000)
    assert set(names(page)) == {"a-moved", "b", "marker.txt"}
    assert "100.0%" in entry.locator(".job-stats").inner_text()
    assert page.text_content("#jobs-badge") == "0"
    # The move really happened, the stopped one left the tree as it was.
    assert portal.ops.exists(outsider, "/slow/a-moved/f239.bin") and not portal.ops.exists(outsider, "/slow/a")
    assert portal.ops.exists(outsider, "/slow/b/f149.bin") and not portal.ops.exists(outsider, "/slow/b-moved")
    assert portal.problems == []


def test_admin_sees_every_users_jobs_with_owner_stuck_and_stalled_flags(portal):
    from gateway.jobs.model import Job

    # A job of bob's that no worker serves, flagged stuck and stalled as the watchdog does.
    portal.gw.store.create(Job(id="stuck-job-1", queue="nobody", operation="copy", src="/slow/x", dst="/slow/y",
                               owner="bob", session_id="test:bob", protocol="test", stuck=True, stalled=True))
    page = portal.open("admin")
    page.locator("#jobs-toggle").click()
    entry = job_entry(page, "/slow/y")
    entry.wait_for()
    assert entry.locator(".job-owner").inner_text() == "by bob"
    flags = entry.locator(".job-flag")
    assert [flags.nth(i).inner_text() for i in range(flags.count()) if flags.nth(i).is_visible()] == [
        "stuck", "stalled"]
    assert page.text_content("#jobs-badge") == "1"
    # An admin answers a stalled job: Retry or Abandon (here: nothing was written, so it is cancelled).
    assert entry.get_by_role("button", name="Retry copy of /slow/x").is_visible()
    entry.get_by_role("button", name="Abandon copy of /slow/x").click()
    wait_job(page, "/slow/y", "cancelled")
    assert page.text_content("#jobs-badge") == "0"
    assert portal.gw.store.get("stuck-job-1").state == "cancelled"
    # Alice sees none of it.
    alice = portal.open("alice")
    alice.locator("#jobs-toggle").click()
    alice.wait_for_timeout(1000)  # the event stream's first snapshot
    assert alice.locator("#jobs-list li.job").count() == 0
    assert alice.locator("#jobs-empty").is_visible()
    assert portal.problems == []


def test_html_in_file_names_stays_text(portal):
    page = portal.open("alice", viewport={"width": 390, "height": 800})  # a phone-sized screen, too
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Upload files").click()
    chooser.value.set_files([{"name": XSS, "mimeType": "text/plain", "buffer": b"not html"}])
    page.wait_for_function("""name => [...document.querySelectorAll('#file-rows tr')]
        .some(tr => tr.dataset.name === name)""", arg=XSS)
    assert (portal.files / XSS).read_bytes() == b"not html"
    row = page.locator("#file-rows tr", has_text=XSS)
    assert row.locator("a").inner_text() == XSS

    # The same name as a folder in a backgrounded delete: in the job list,
    # the live announcement and the dialogs.
    make_tree(portal, f"/slow/{XSS}", 5)
    open_folder(page, "/slow")
    page.get_by_role("button", name=f"Delete {XSS}", exact=True).click()
    assert XSS in page.locator("#dialog-message").inner_text()
    page.locator("#dialog-ok").click()
    page.locator("#jobs-toggle").click()
    job_entry(page, XSS).wait_for()
    wait_job(page, XSS, "completed")
    page.wait_for_function("name => document.getElementById('announce').textContent === `Delete of ${name} completed.`",
                           arg=XSS)

    assert page.evaluate("document.querySelectorAll('img, script:not([src])').length") == 0
    assert page.evaluate("window.__alerts") == 0
    assert portal.problems == []
