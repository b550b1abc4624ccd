"""The page (issue 21) in Debian's chromium: sign-in, live progress under a real worker
running real xtb, the table sorted and filtered on the server, one plotted point per
completed job, cancel, and what a viewer or a forged request cannot do."""

from __future__ import annotations

import subprocess
import sys

import httpx
from playwright.sync_api import expect

from qforge.record import Status
from qforge.server.sessions import COOKIE
from qforge.store.jobstore import JobStore
from qforge_runner.molecule import parse_xyz
from qforge_runner.result import JobError
from qforge_runner.spec import JobSpec
from tests.molecules import WATER_EXPERIMENTAL
from tests.unit.core.campaign_helpers import finish, summary

from .conftest import WAIT_MS, Server, Tab

TINY = {  # xtb's single points on these take a few hundredths of a second
    "h2": "2\nh2\nH 0 0 0\nH 0 0 0.74\n",
    "water": "3\nwater\nO 0 0 0.117\nH 0 0.757 -0.467\nH 0 -0.757 -0.467\n",
    "ammonia": "4\nammonia\nN 0 0 0.1\nH 0 0.94 -0.27\nH 0.81 -0.47 -0.27\nH -0.81 -0.47 -0.27\n",
    "methane": "5\nmethane\nC 0 0 0\nH 0.63 0.63 0.63\nH -0.63 -0.63 0.63\n"
               "H -0.63 0.63 -0.63\nH 0.63 -0.63 -0.63\n",
    "hf": "2\nhf\nF 0 0 0\nH 0 0 0.92\n",
    "lih": "2\nlih\nLi 0 0 0\nH 0 0 1.6\n",
}


def _submit_tiny(server: Server, group: str, names: list[str], owner_token: str) -> None:
    """Through the server, as the token's owner (the CLI's remote path)."""
    for name in names:
        path = server.home / f"{name}.xyz"
        path.write_text(TINY[name])
    done = server.remote(owner_token, "submit", *(str(server.home / f"{n}.xyz")
                                                  for n in names),
                         "--group", group, "--task", "sp")
    assert done.returncode == 0, done.stderr


def _campaign(store: JobStore, group: str, n: int, owner: str = "sam") -> list[str]:
    """`n` jobs written straight into the store (no xtb): what the table and plots read."""
    mol = parse_xyz(WATER_EXPERIMENTAL)
    items = []
    for i in range(n):
        moved = mol.model_copy(update={"geometry": tuple((x + 0.001 * i, y, z)
                                                         for x, y, z in mol.geometry)})
        items.append((JobSpec(molecule=moved, name=f"mol-{i:02d}", task="sp"),
                      moved.to_xyz()))
    return [s.record.job_id for s in store.submit_batch(items, group=group, owner=owner)]


def _worker(server: Server) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "qforge.cli.main", "--jobs-dir", str(server.jobs), "worker",
         "--until-idle", "--max-concurrent", "1", "--poll-interval", "0.2"],
        env=server.base_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _rows(tab: Tab, column: str) -> list[str]:
    return tab.page.locator(f"#jobs tbody td:nth-child({column})").all_inner_texts()


def test_sign_in_keeps_a_session_cookie_not_the_token_and_sign_out_ends_it(
        tab: Tab, server: Server) -> None:
    token = server.token("sam", "submitter")
    tab.open("/")
    assert tab.page.url == server.url + "/signin"  # not signed in: sent to the form
    tab.page.fill("#token", "qf_" + "x" * 43)
    tab.page.click("form.signin button[type=submit]")
    expect(tab.page.locator("#signin-message")).to_contain_text("Unknown or revoked token")
    tab.sign_in(token)
    expect(tab.page.locator("#who-name")).to_have_text("sam")
    expect(tab.page.locator("#who-role")).to_have_text("submitter")
    cookie = next(c for c in tab.page.context.cookies() if c["name"] == COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert not cookie["secure"]  # plain http on loopback; https sets Secure (docs/page.md)
    assert token not in cookie["value"]
    assert tab.page.evaluate("document.cookie") == ""  # scripts cannot read it
    # The token went in a form's body only: never in a URL, never in the server's log.
    assert not [u for u in tab.urls if token in u]
    assert token not in server.server_log()
    stolen = cookie["value"]
    tab.page.click("form.who button[type=submit]")
    tab.page.wait_for_url(server.url + "/signin", timeout=WAIT_MS)
    with httpx.Client(base_url=server.url, cookies={COOKIE: stolen}) as http:
        assert http.get("/ui/api/campaigns").status_code == 401  # signed out: gone


def test_revoking_the_token_ends_the_page_s_session_at_the_next_request(
        tab: Tab, server: Server) -> None:
    tab.sign_in(server.token("sam", "submitter"))
    assert server.local("token", "revoke", "sam").returncode == 0
    tab.open("/")
    assert tab.page.url == server.url + "/signin"


def test_a_campaign_s_progress_moves_while_a_worker_runs_real_xtb(
        tab: Tab, server: Server) -> None:
    token = server.token("sam", "submitter")
    names = list(TINY)
    _submit_tiny(server, "tiny", names, token)
    tab.sign_in(token)
    card = tab.page.locator('article[data-group="tiny"]')
    assert "0 of 6 finished" in card.inner_text(timeout=WAIT_MS)
    tab.open("/campaigns/tiny")
    expect(tab.page.locator("#progress .done-line")).to_contain_text("0 of 6 finished")
    expect(tab.page.locator('#progress li[data-status="QUEUED"]')).to_have_text("QUEUED: 6")
    tab.page.evaluate("window.__notReloaded = true")
    # Every value the progress line takes, as the page changes it.
    tab.page.evaluate("() => { window.__seen = []; new MutationObserver(() => "
                      "window.__seen.push(document.querySelector('#progress .done-line')"
                      "?.textContent)).observe(document.querySelector('#progress'), "
                      "{childList: true, subtree: true}); }")
    worker = _worker(server)
    try:
        tab.page.wait_for_function(
            "() => document.querySelector('#progress .done-line')?.textContent"
            ".startsWith('6 of 6 finished')", timeout=WAIT_MS)
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0, out
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=20)
    assert tab.page.evaluate("window.__notReloaded === true")  # updated in place
    seen = [int(t.split()[0]) for t in tab.page.evaluate("window.__seen") if t]
    assert seen[-1] == 6 and seen == sorted(seen), seen  # it only ever moved forward
    expect(tab.page.locator('#progress li[data-status="COMPLETED"]')).to_have_text(
        "COMPLETED: 6")
    expect(tab.page.locator("#progress .rate")).to_contain_text("Time left: 0 s")
    # The plot follows too: one point per completed job, each naming its molecule.
    tab.page.wait_for_function("() => document.querySelectorAll('#scatter circle.pt').length === 6",
                               timeout=WAIT_MS)
    titles = tab.page.locator("#scatter circle.pt title").all_text_contents()
    assert sorted(t.split(":")[0] for t in titles) == sorted(names)
    energies = tab.page.locator("#jobs tbody td.energy").all_inner_texts()
    assert len(energies) == 6 and all(e.endswith(" Eh") for e in energies)


def test_a_campaign_of_conformer_ensembles_counts_molecules_too(
        tab: Tab, server: Server) -> None:
    store = JobStore(server.jobs)
    mol = parse_xyz(WATER_EXPERIMENTAL)
    items = []
    for i, (name, key) in enumerate((("a.c01", "ma"), ("a.c02", "ma"), ("b.c01", "mb"))):
        moved = mol.model_copy(update={"geometry": tuple((x, y + 0.001 * i + 0.01, z)
                                                         for x, y, z in mol.geometry)})
        items.append((JobSpec(molecule=moved, name=name, task="sp"), moved.to_xyz(), None,
                      key))
    ids = [s.record.job_id for s in store.submit_batch(items, group="ens", owner="sam")]
    _campaign(store, "plain", 2)
    tab.sign_in(server.token("sam", "submitter"))
    tab.open("/campaigns/ens")
    line = tab.page.locator("#progress .molecules-line")
    expect(line).to_have_text("0 of 2 molecules complete; 0 of 3 conformer jobs")
    finish(store, ids[2], Status.COMPLETED)  # b's only conformer
    expect(line).to_have_text("1 of 2 molecules complete; 1 of 3 conformer jobs",
                              timeout=WAIT_MS)
    tab.open("/campaigns/plain")
    expect(tab.page.locator("#progress .done-line")).to_contain_text("0 of 2 finished")
    expect(tab.page.locator("#progress .molecules-line")).to_have_count(0)


def test_the_table_sorts_and_filters_on_the_server(tab: Tab, server: Server) -> None:
    store = JobStore(server.jobs)
    ids = _campaign(store, "big", 60)
    energies = {}
    for i, job_id in enumerate(ids[:50]):
        energies[job_id] = -5.0 - ((i * 37) % 50) / 100
        finish(store, job_id, Status.COMPLETED, result=summary(energies[job_id]))
    for job_id in ids[50:55]:
        finish(store, job_id, Status.FAILED,
               error=JobError(type="convergence_error", message="SCC did not converge"))
    tab.sign_in(server.token("val", "viewer"))
    tab.open("/campaigns/big")
    tab.page.wait_for_function("() => document.querySelector('#page-info').textContent"
                               " === 'Jobs 1 to 50 of 60'")
    tab.page.click('#jobs th[data-sort="energy"] button')
    tab.page.wait_for_selector('#jobs th[data-sort="energy"][aria-sort="ascending"]')
    shown = [float(t.split()[0]) for t in _rows(tab, "4")]
    assert len(shown) == 50 and shown == sorted(energies.values())[:50]
    tab.page.click('#jobs th[data-sort="energy"] button')
    tab.page.wait_for_selector('#jobs th[data-sort="energy"][aria-sort="descending"]')
    assert float(_rows(tab, "4")[0].split()[0]) == max(energies.values())
    tab.page.click("#next")
    tab.page.wait_for_function("() => document.querySelector('#page-info').textContent"
                               " === 'Jobs 51 to 60 of 60'")
    assert [t for t in _rows(tab, "4") if t != "—"] == []  # no energy: last, both ways
    tab.page.select_option("#filter-status", "FAILED")
    tab.page.click("#filters button[type=submit]")
    tab.page.wait_for_function("() => document.querySelector('#page-info').textContent"
                               " === 'Jobs 1 to 5 of 5'")
    assert set(_rows(tab, "3")) == {"FAILED"}
    expect(tab.page.locator('.failure[data-error-type="convergence_error"] h3')).to_have_text(
        "convergence_error: 5 job(s)")
    tab.page.select_option("#filter-status", "")
    tab.page.fill("#filter-text", "MOL-0")
    tab.page.click("#filters button[type=submit]")
    tab.page.wait_for_function("() => document.querySelector('#page-info').textContent"
                               " === 'Jobs 1 to 10 of 10'")
    assert all(n.startswith("mol-0") for n in _rows(tab, "1"))


def test_the_plot_draws_one_point_per_completed_job_and_a_click_opens_it(
        tab: Tab, server: Server) -> None:
    store = JobStore(server.jobs)
    ids = _campaign(store, "plot", 9)
    for i, job_id in enumerate(ids[:7]):
        finish(store, job_id, Status.COMPLETED, result=summary(-5.0 - i / 10, gap=8 + i))
    finish(store, ids[7], Status.FAILED)
    tab.sign_in(server.token("val", "viewer"))
    tab.open("/campaigns/plot")
    tab.page.wait_for_function("() => document.querySelectorAll('#scatter circle.pt').length > 0")
    points = tab.page.locator("#scatter circle.pt")
    assert points.count() == 7
    assert sorted(points.evaluate_all("ps => ps.map(p => p.dataset.job)")) == sorted(ids[:7])
    assert sum(int(t.split()[0]) for t in tab.page.locator(
        "#histogram rect.binr title").all_text_contents()) == 7
    target = tab.page.locator(f'#scatter circle.pt[data-job="{ids[3]}"]')
    target.hover()
    expect(tab.page.locator("#scatter + .tip")).to_contain_text("mol-03")
    expect(tab.page.locator("#scatter + .tip")).to_contain_text("Eh")
    target.click()
    tab.page.wait_for_url(f"{server.url}/jobs/{ids[3]}", timeout=WAIT_MS)
    tab.page.wait_for_function("() => document.querySelector('#result').textContent"
                               ".includes('Eh')")
    expect(tab.page.locator("#result")).to_contain_text("-5.3")
    tab.open("/jobs/no_such_job_20260101_000000_abcd")
    tab.page.wait_for_function("() => document.querySelector('#page-error').textContent"
                               ".includes('no such job')")


def test_cancelling_a_queued_job_in_the_page_ends_it_cancelled(
        tab: Tab, server: Server) -> None:
    token = server.token("sam", "submitter")
    _submit_tiny(server, "stop", ["h2", "water"], token)
    tab.sign_in(token)
    tab.open("/campaigns/stop")
    row = tab.page.locator("#jobs tbody tr", has_text="water")
    row.get_by_role("button", name="Cancel job water").click()
    tab.page.wait_for_function("() => document.querySelector('#action-status').textContent"
                               ".startsWith('Cancel of water requested: 1 job(s)')")
    worker = _worker(server)  # the scheduler honours the request before it starts jobs
    try:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0, out
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=20)
    tab.page.wait_for_function(
        "() => [...document.querySelectorAll('#jobs tbody tr')].some(r => "
        "r.textContent.includes('water') && r.dataset.status === 'CANCELLED')",
        timeout=WAIT_MS)
    expect(tab.page.locator('#progress li[data-status="CANCELLED"]')).to_have_text(
        "CANCELLED: 1")
    expect(tab.page.locator('#progress li[data-status="COMPLETED"]')).to_have_text(
        "COMPLETED: 1")
    assert row.locator("button.cancel").count() == 0  # nothing left to cancel


def test_a_viewer_sees_no_cancel_and_forged_cancels_are_refused(
        tab: Tab, server: Server) -> None:
    store = JobStore(server.jobs)
    ids = _campaign(store, "kept", 3)
    tab.sign_in(server.token("val", "viewer"))
    tab.open("/campaigns/kept")
    tab.page.wait_for_function("() => document.querySelectorAll('#jobs tbody tr').length === 3")
    assert tab.page.locator("#jobs button.cancel").count() == 0
    assert tab.page.locator("#cancel-group").is_hidden()
    tab.open(f"/jobs/{ids[0]}")
    tab.page.wait_for_function("() => document.querySelector('#state').textContent"
                               ".includes('QUEUED')")
    assert tab.page.locator("#cancel-job").is_hidden()
    waits = tab.page.locator("#fact-why li").all_inner_texts()  # `qforge show`'s lines
    assert any(w.startswith("queue position 1 of 3") for w in waits), waits
    assert any("no worker has ever run on this store" in w for w in waits), waits
    # The viewer's own session, even with its CSRF token: the role forbids it.
    csrf = tab.page.evaluate("qf.csrf()")
    refused = tab.page.evaluate(
        "async ([id, csrf]) => (await fetch('/api/v1/cancel', {method: 'POST', headers: "
        "{'Content-Type': 'application/json', 'X-CSRF-Token': csrf}, "
        "body: JSON.stringify({job_ids: [id]})})).status", [ids[0], csrf])
    assert refused == 403
    # An admin's session: without the CSRF token, or from another origin, refused.
    admin = tab.page.context.browser.new_context()  # type: ignore[union-attr]
    try:
        other = Tab(admin.new_page(), server)
        other.sign_in(server.token("ada", "admin"))
        forged = other.page.evaluate(
            "async (id) => (await fetch('/api/v1/cancel', {method: 'POST', headers: "
            "{'Content-Type': 'application/json'}, body: JSON.stringify({job_ids: [id]})}))"
            ".status", ids[1])
        assert forged == 403
        cookie = next(c["value"] for c in admin.cookies() if c["name"] == COOKIE)
        admin_csrf = other.page.evaluate("qf.csrf()")
    finally:
        admin.close()
    with httpx.Client(base_url=server.url, cookies={COOKIE: cookie}) as http:
        cross = http.post("/api/v1/cancel", json={"job_ids": [ids[1]]},
                          headers={"X-CSRF-Token": admin_csrf,
                                   "Origin": "http://evil.example"})
        assert cross.status_code == 403 and "another origin" in cross.json()["detail"]
        # A form posted from another site: SameSite=Strict keeps the cookie home, so
        # the request arrives with no identity at all.
    with httpx.Client(base_url=server.url) as http:
        assert http.post("/api/v1/cancel", json={"job_ids": [ids[1]]},
                         headers={"Origin": "http://evil.example"}).status_code == 401
    assert not any(store.cancels.requested(i) for i in ids)
    assert {store.read(i).status for i in ids} == {Status.QUEUED}


def test_every_page_has_no_serious_accessibility_violation_and_fits_a_laptop(
        tab: Tab, server: Server) -> None:
    token = server.token("sam", "submitter")
    store = JobStore(server.jobs)
    ids = _campaign(store, "a11y", 6, owner="sam")
    for job_id in ids[:4]:
        finish(store, job_id, Status.COMPLETED)
    finish(store, ids[4], Status.FAILED)
    found: dict[str, list[dict[str, object]]] = {}
    tab.open("/signin")
    found["/signin"] = tab.axe()
    tab.sign_in(token)
    ready = {"/": "#campaigns article", "/campaigns/a11y": "#scatter svg",
             f"/jobs/{ids[0]}": "#result dt", f"/jobs/{ids[5]}": "#state dt"}
    for path, selector in ready.items():
        tab.open(path)
        tab.page.wait_for_selector(selector)
        found[path] = tab.axe()
        for width in (1280, 1024):  # a laptop's width: nothing wider than the window
            tab.page.set_viewport_size({"width": width, "height": 800})
            assert tab.page.evaluate(
                "document.documentElement.scrollWidth <= window.innerWidth"), (path, width)
        tab.page.set_viewport_size({"width": 1366, "height": 800})
    assert not {p: v for p, v in found.items() if v}, found
    # Keyboard: the table's sort buttons and the pager are reachable with Tab alone.
    tab.open("/campaigns/a11y")
    tab.page.wait_for_selector("#jobs tbody tr")
    reached = set()
    for _ in range(60):
        tab.page.keyboard.press("Tab")
        reached.add(tab.page.evaluate("document.activeElement.id || "
                                      "document.activeElement.textContent.trim()"))
    assert {"Energy (Eh)", "filter-status", "filter-text"} <= reached
    # Air-gapped: everything the pages asked for came from the server itself, and the
    # Content-Security-Policy blocked nothing.
    assert all(u.startswith(server.url) or u.startswith("data:") for u in tab.urls), [
        u for u in tab.urls if not u.startswith(server.url)]
    assert not [c for c in tab.console if "Content Security Policy" in c]
