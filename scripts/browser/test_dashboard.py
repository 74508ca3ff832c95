"""The dashboard in a real browser: `batchbeam serve --sim` with a token, a search started
through the page's form (after one refused by the API's validation), followed live until its
last iteration's images show and it has succeeded; then the static report.html of a CLI run.
Screenshots go to $SCREENSHOTS. Every wait is on a condition, with a generous limit."""

import os
import re
import subprocess
import threading
import time

import pytest

from conftest import PageWatch

TOKEN = "browser-test-token-0123456789"
# A loaded two-core machine may build, run and judge slowly: wait on conditions, for long.
JOB_TIMEOUT_S = 420
START_TIMEOUT_S = 120


class Server:
    """A `batchbeam serve --sim` child on a free port, stopped when closed."""

    def __init__(self, batchbeam, scratch):
        env = dict(os.environ, BATCHBEAM_API_TOKEN=TOKEN)
        env.pop("OPENAI_API_KEY", None)
        env.pop("OPENAI_BASE_URL", None)
        self.log_path = scratch / "serve.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [str(batchbeam), "serve", "--sim", "--sim-time-scale", "1000", "--addr", "127.0.0.1:0",
             "--db", str(scratch / "batchbeam.db"), "--sessions", str(scratch / "sessions")],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.PIPE, env=env, text=True)
        self.url = None
        found = threading.Event()

        # It says `batchbeam serve: http://127.0.0.1:PORT/ …` on stderr; all of it goes to the log.
        def read():
            for line in self.proc.stderr:
                if not self.log.closed:
                    self.log.write(line)
                    self.log.flush()
                m = re.search(r"http://127\.0\.0\.1:\d+", line)
                if m and not found.is_set():
                    self.url = m.group(0)
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(START_TIMEOUT_S):
            self.close()
            raise AssertionError(f"batchbeam serve did not announce its address; log:\n{self.log_path.read_text()}")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def wait_until(page, predicate, timeout_s, what):
    """Polls `predicate` (a JavaScript function) in the page until it returns true. Not
    Playwright's wait_for_function: that evaluates a string, which the dashboard's
    Content-Security-Policy (no 'unsafe-eval') rightly refuses."""
    deadline = time.monotonic() + timeout_s
    while True:
        if page.evaluate(predicate):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting until {what}")
        page.wait_for_timeout(1000)


def scroll_through(page):
    """Scrolls the whole page so that lazy images load, then back to the top."""
    height = page.evaluate("document.body.scrollHeight")
    for y in range(0, height + 1, 600):
        page.evaluate(f"window.scrollTo(0, {y})")
        page.wait_for_timeout(50)
    wait_until(page, "() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)",
               60, "every image has loaded")
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(200)


def has_serve(batchbeam):
    """Whether this binary has `serve` (the server lands on its own branch; until it is merged
    here, clap refuses the subcommand and this test says so instead of failing)."""
    probe = subprocess.run([str(batchbeam), "serve", "--help"], capture_output=True, text=True)
    return not (probe.returncode == 2 and "unrecognized subcommand" in probe.stderr)


def test_a_search_started_from_the_form_is_followed_live(batchbeam, scratch, screenshots, browser):
    if not has_serve(batchbeam):
        pytest.skip("this batchbeam has no `serve` command yet")
    server = Server(batchbeam, scratch)
    try:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
        page = context.new_page()
        # The first request has no token yet (401, the page asks for one); the first form is
        # refused by the API's validation (400).
        watch = PageWatch(page, expected_statuses=[(401, "/api/"), (400, "/api/beam-search")])
        page.goto(server.url + "/")

        page.locator("#bb-token").fill(TOKEN)
        page.locator(".dialog button[type=submit]").click()
        page.locator("#bb-jobs").wait_for()

        # The form opens by itself on an empty list; open it if not.
        if not page.locator("#bb-form").is_visible():
            page.locator("#bb-new").click()
        page.locator("#f-prompt").fill("a lighthouse in a storm")
        page.locator("#f-n").fill("5")
        page.locator("#f-m").fill("2")
        page.locator("#f-iterations").fill("2")
        page.locator("#f-seed").fill("7")
        assert page.locator("#f-useBatch").is_checked()
        page.locator("#bb-form button[type=submit]").click()
        error = page.locator(".field.invalid .error")
        error.first.wait_for(timeout=30_000)
        assert error.first.inner_text().strip(), "the 400's message shows next to its field"
        page.screenshot(path=str(screenshots / "dashboard-form-error.png"))

        page.locator("#f-n").fill("4")
        page.locator("#bb-form button[type=submit]").click()
        page.wait_for_url(re.compile(r"#/job/"), timeout=30_000)
        job_id = page.url.split("#/job/")[1]

        wait_until(
            page,
            """() => {
                const done = document.querySelector('#bb-status .badge.succeeded');
                const last = document.querySelector('section[data-iteration="1"]');
                if (!last) return false;
                const imgs = last.querySelectorAll('.cand img');
                if (imgs.length < 4) return false;
                last.scrollIntoView();
                return !!done && Array.from(imgs).every(i => i.complete && i.naturalWidth > 0);
            }""",
            JOB_TIMEOUT_S, "the job has succeeded and its last iteration's images have loaded")
        # The live view shows what the brief asks of it.
        assert page.locator("#bb-log .ev").count() > 0, "the event log shows the job's events"
        # The final tree follows the job's end (the page fetches it when it sees the end).
        wait_until(
            page,
            "() => document.querySelectorAll('#bb-curve svg circle').length === 2",
            30, "the rating curve shows both iterations of the ended job")
        assert page.locator("#bb-costs tbody tr").count() >= 1
        assert page.locator("section[data-iteration='0'] .cand").count() == 4
        assert page.locator(".lineage a").count() > 0
        cost = page.locator("#bb-head").inner_text()
        assert "all-standard" in cost and "Simulated models" in cost

        # Lineage: "from i0cN" scrolls to and highlights the parent.
        link = page.locator("section[data-iteration='1'] .lineage a").first
        parent = link.get_attribute("data-target")
        link.click()
        page.locator(f"#cand-{parent}.highlight").wait_for(timeout=5_000)
        page.wait_for_timeout(2_600)

        scroll_through(page)
        page.screenshot(path=str(screenshots / "dashboard-job.png"), full_page=True)
        page.locator("#bb-events").screenshot(path=str(screenshots / "dashboard-events.png"))
        page.emulate_media(color_scheme="dark")
        page.screenshot(path=str(screenshots / "dashboard-job-dark.png"))
        page.emulate_media(color_scheme="light")

        page.locator(".crumbs a").click()
        page.locator(f'tr[data-job="{job_id}"] .badge.succeeded').wait_for(timeout=60_000)
        page.screenshot(path=str(screenshots / "dashboard-jobs.png"), full_page=True)
        page.locator(".filters button[data-status=failed]").click()
        page.locator("#bb-jobs .empty").wait_for(timeout=30_000)
        page.locator(".filters button[data-status=completed]").click()
        page.locator(f'tr[data-job="{job_id}"]').wait_for(timeout=30_000)
        page.locator(".filters button[data-status='']").click()
        page.locator(f'tr[data-job="{job_id}"]').wait_for(timeout=30_000)
        watch.check()
        assert not watch.expected, f"expected answers that never came: {watch.expected}"
        context.close()
    finally:
        server.close()


def test_report_html_of_a_cli_run_renders_offline(batchbeam, scratch, screenshots, browser):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    sessions = scratch / "sessions"
    run = subprocess.run(
        [str(batchbeam), "run", "a lighthouse in a storm", "--batch", "--sim", "--seed", "7",
         "-n", "4", "-m", "2", "-i", "2", "--db", str(scratch / "batchbeam.db"),
         "--sessions", str(sessions)],
        capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    m = re.search(r"^report: (.+report\.html)$", run.stdout, re.M)
    assert m, f"run prints where report.html is:\n{run.stdout}"
    report = m.group(1)
    assert os.path.isfile(report) and os.path.dirname(report) == str(next(sessions.iterdir()))

    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    page = context.new_page()
    watch = PageWatch(page)
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto("file://" + report)
    page.locator("section[data-iteration='1'] .cand").first.wait_for(timeout=30_000)
    scroll_through(page)
    assert page.locator(".cand img").count() == 8
    assert page.locator("#bb-events").count() == 0, "a report has no live event log"
    page.screenshot(path=str(screenshots / "report.png"), full_page=True)
    watch.check()
    outside = [u for u in requests if not u.startswith("file://") and not u.startswith("data:")]
    assert not outside, f"report.html loads only files beside it: {outside}"
    context.close()
