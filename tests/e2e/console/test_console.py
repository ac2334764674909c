"""Every console screen in headless Chromium against a live server with data (see conftest)."""

from __future__ import annotations

import re
import time
from typing import Any

import psycopg
import pytest

from tests.e2e.console.conftest import TABLE, Console, login, shot

pytestmark = pytest.mark.timeout(120)


def texts(page: Any, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_inner_texts()]


def test_admin_browses_workspaces_peers_sessions_and_messages(page: Any, console: Console) -> None:
    login(page, console, console.admin_key)
    assert page.url == console.url("/")
    listed = texts(page, "#workspaces tbody td:first-child")
    assert console.ws in listed and console.other_ws in listed
    shot(page, "workspaces")

    page.click(f"#workspaces a:text-is('{console.ws}')")
    assert sorted(texts(page, "#peers tbody td:first-child")) == ["alice", "bob", "charlie"]
    assert sorted(texts(page, "#sessions tbody td:first-child")) == ["breakfast", "side-chat"]
    # Filter sessions by id.
    session_filter = "form:has(input[placeholder='Filter sessions'])"
    page.fill(f"{session_filter} input[name=q]", "side")
    page.click(f"{session_filter} button")
    assert texts(page, "#sessions tbody td:first-child") == ["side-chat"]
    # Search every message of the workspace.
    page.fill("#ws-search input[name=search]", "pancakes maple syrup")
    page.click("#ws-search button")
    hits = texts(page, "#search-hits tbody tr")
    assert hits and "pancakes with maple syrup" in hits[0] and "breakfast" in hits[0]
    shot(page, "workspace")

    page.goto(console.url(f"/w/{console.ws}/sessions/breakfast"))
    # Every message of the table, in order, with its author.
    assert texts(page, "#messages .content") == [c for _, c in TABLE]
    assert [
        li.get_attribute("data-peer") for li in page.locator("#messages li[data-peer]").all()
    ] == [p for p, _ in TABLE]
    shot(page, "session")
    page.select_option("#msg-filter select[name=peer]", "charlie")
    page.click("#msg-filter button")
    assert texts(page, "#messages .content") == ["I play Diplomacy every Friday night"]
    page.click("#messages li a:text-matches('^#')")
    assert page.inner_text("#message blockquote") == "I play Diplomacy every Friday night"


def test_peer_page_shows_every_perspective_with_sources(page: Any, console: Console) -> None:
    login(page, console, console.admin_key)
    page.goto(console.url(f"/w/{console.ws}/peers/alice"))
    columns = page.locator("#perspectives .view")
    observers = [columns.nth(i).get_attribute("data-observer") for i in range(columns.count())]
    assert observers == ["alice", "bob", "charlie"]  # global first, then each local view
    views = {o: page.locator(f".view[data-observer='{o}']") for o in observers}
    global_view = " ".join(texts(page, ".view[data-observer='alice'] .obs"))
    bob_view = " ".join(texts(page, ".view[data-observer='bob'] .obs"))
    charlie_view = " ".join(texts(page, ".view[data-observer='charlie'] .obs"))
    assert "attack" in global_view and "attack" in bob_view
    assert "peaceful" in charlie_view and "pancakes" in charlie_view
    assert "attack" not in charlie_view  # charlie never saw the side chat
    assert views["alice"].get_attribute("data-kind") == "global"
    shot(page, "peer")

    # An observation links to the message it came from.
    row = page.locator(".view[data-observer='charlie'] .observations li", has_text="peaceful")
    row.locator("a.source").first.click()
    assert page.inner_text("#message blockquote") == "I am going to be peaceful this turn"


def test_graph_draws_every_view_with_its_size(page: Any, console: Console) -> None:
    login(page, console, console.admin_key)
    page.goto(console.url(f"/w/{console.ws}/graph"))
    api_views = console.api.get(f"/v3/workspaces/{console.ws}/views").json()["items"]
    local = {
        (v["observer_id"], v["observed_id"]): v["conclusions"]
        for v in api_views
        if v["observer_id"] != v["observed_id"]
    }
    edges = page.locator("#graph .edge")
    drawn = {
        (
            edges.nth(i).get_attribute("data-observer"),
            edges.nth(i).get_attribute("data-observed"),
        ): int(edges.nth(i).get_attribute("data-conclusions") or -1)
        for i in range(edges.count())
    }
    assert drawn == local and drawn
    # bob saw the side chat, charlie did not: bob knows more about alice.
    assert drawn[("bob", "alice")] > drawn[("charlie", "alice")] > 0
    assert int(page.get_attribute("#graph .node[data-peer='alice']", "data-self") or 0) > 0
    shot(page, "graph")
    page.click("#graph .node[data-peer='charlie']")
    assert page.url.endswith("/peers/charlie")


def test_playground_streams_an_answer_with_evidence(page: Any, console: Console) -> None:
    login(page, console, console.admin_key)
    page.goto(console.url(f"/w/{console.ws}/playground"))
    page.select_option("#chat select[name=peer]", "alice")
    page.fill("#chat input[name=query]", "What does alice eat for breakfast?")
    page.click("#chat button[type=submit]")
    page.wait_for_selector("#answer[data-state=done]")
    answer = page.inner_text("#answer")
    assert answer.strip() and "error" not in answer.lower()
    evidence = " ".join(texts(page, "#evidence-list li"))
    assert "pancakes" in evidence
    shot(page, "playground-chat")

    # The same question to bob's and to charlie's view of alice: only bob was in the side chat.
    seen: dict[str, str] = {}
    for observer in ("bob", "charlie"):
        page.select_option("#chat select[name=peer]", observer)
        page.select_option("#chat select[name=target]", "alice")
        page.fill("#chat input[name=query]", "Is alice going to attack Charlie in Moscow?")
        page.click("#chat button[type=submit]")
        page.wait_for_selector("#answer[data-state=done]")
        seen[observer] = " ".join(texts(page, "#evidence-list li")) + page.inner_text("#answer")
    assert "secretly going to attack" in seen["bob"]
    assert "secretly" not in seen["charlie"] and "side-chat" not in seen["charlie"]


@pytest.mark.parametrize("budget", [40, 200])
def test_context_budget_bar_never_exceeds_the_budget(
    page: Any, console: Console, budget: int
) -> None:
    login(page, console, console.admin_key)
    page.goto(console.url(f"/w/{console.ws}/playground"))
    page.select_option("#context-form select[name=session]", "breakfast")
    page.fill("#context-form input[name=tokens]", str(budget))
    page.select_option("#context-form select[name=peer_target]", "alice")
    page.select_option("#context-form select[name=peer_perspective]", "charlie")
    page.click("#context-form button[type=submit]")
    bar = page.locator("#budget")
    assert int(bar.get_attribute("data-budget") or 0) == budget
    legend = page.locator("ul.legend li[data-name]")
    tokens = {
        legend.nth(i).get_attribute("data-name"): int(
            legend.nth(i).get_attribute("data-tokens") or 0
        )
        for i in range(legend.count())
    }
    assert set(tokens) == {"summary", "messages", "representation", "card"}
    assert 0 < sum(tokens.values()) <= budget
    # The drawn segments are the same numbers, as shares of the budget.
    segs = page.locator("#budget .seg")
    widths = 0.0
    for i in range(segs.count()):
        seg = segs.nth(i)
        assert int(seg.get_attribute("data-tokens") or 0) == tokens[seg.get_attribute("data-name")]
        widths += float(re.findall(r"[\d.]+", seg.get_attribute("style") or "")[0])
    assert widths <= 100.0
    if budget >= 200:
        assert tokens["messages"] > 0 and tokens["representation"] > 0
        representation = page.inner_text("#ctx-representation")
        assert "peaceful" in representation and "attack" not in representation
        shot(page, "playground-context")


def test_dead_letter_is_listed_with_its_error_and_retried(page: Any, console: Console) -> None:
    ws = console.ws
    # A storage fault for one message: its conclusions cannot be written.
    fault = "storage fault injected by the console test"
    with psycopg.connect(console.dsn, autocommit=True) as db:
        db.execute(
            "CREATE OR REPLACE FUNCTION console_fault() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{fault}'; END $$"
        )
        db.execute(
            "CREATE TRIGGER console_fault BEFORE INSERT ON conclusions FOR EACH ROW "
            "WHEN (NEW.content LIKE '%unicorn%') EXECUTE FUNCTION console_fault()"
        )
    try:
        before = console.api.get(f"/v3/workspaces/{ws}/queue/status").json()
        r = console.api.post(
            f"/v3/workspaces/{ws}/sessions/breakfast/messages",
            json={"messages": [{"peer_id": "bob", "content": "I keep a unicorn in my garden"}]},
        )
        assert r.status_code == 201, r.text
        deadline = time.monotonic() + 30
        while (
            console.api.get(f"/v3/workspaces/{ws}/queue/status").json()["dead_letter_work_units"]
            != 1
        ):
            assert time.monotonic() < deadline, "the faulty message was never dead-lettered"
            time.sleep(0.2)

        login(page, console, console.admin_key)
        page.goto(console.url(f"/w/{ws}/deriver"))
        rows = page.locator("#dead-letters tbody tr[data-id]")
        assert rows.count() == 1
        assert fault in rows.first.inner_text()
        assert "representation" in rows.first.inner_text()
        assert page.inner_text("#q-dead") == "1"
        session_row = page.locator("#sessions-queue tr[data-session='breakfast']")
        assert session_row.count() == 1
        # The lag chart fills with samples as the page polls.
        page.wait_for_function(
            "Number(document.getElementById('lag').dataset.samples || 0) >= 2", timeout=10_000
        )
        shot(page, "deriver")
    finally:
        with psycopg.connect(console.dsn, autocommit=True) as db:
            db.execute("DROP TRIGGER IF EXISTS console_fault ON conclusions")
            db.execute("DROP FUNCTION IF EXISTS console_fault()")

    # The fault is repaired: retry from the console.
    page.click("#dead-letters button.retry")
    assert "published again" in page.inner_text("#retried-note")
    deadline = time.monotonic() + 30
    while True:
        page.reload()
        if page.locator("#dead-letters tbody tr[data-id]").count() == 0:
            break
        assert time.monotonic() < deadline, "the retried dead letter is still listed"
        time.sleep(0.5)
    # The deriver takes the message up again and completes it this time.
    while True:
        status = console.api.get(f"/v3/workspaces/{ws}/queue/status").json()
        if status["completed_work_units"] == before["completed_work_units"] + 1:
            break
        assert time.monotonic() < deadline, f"the retried message was not derived: {status}"
        time.sleep(0.2)
    assert (status["dead_letter_work_units"], status["pending_work_units"]) == (0, 0)
    page.reload()
    assert page.inner_text("#q-dead") == "0"
    assert "No dead letter" in page.inner_text("#dead-letters")
    bob = console.api.post(
        f"/v3/workspaces/{ws}/conclusions/list",
        json={"filters": {"observer_id": "bob", "observed_id": "bob"}},
    ).json()["items"]
    assert any("unicorn" in c["content"] for c in bob)


def test_scoped_keys_see_only_what_the_api_lets_them(page: Any, console: Console) -> None:
    # A workspace key lands in its workspace and cannot open another one.
    login(page, console, console.key(workspace_id=console.other_ws))
    assert page.url == console.url(f"/w/{console.other_ws}")
    assert texts(page, "#peers tbody td:first-child") == ["zed"]
    response = page.goto(console.url(f"/w/{console.ws}"))
    assert response is not None and response.status == 403
    assert "This key cannot see this" in page.inner_text("h1")
    assert console.ws in page.inner_text("#error-detail")
    assert "pancakes" not in page.content()
    shot(page, "forbidden")
    response = page.goto(console.url(f"/w/{console.ws}/peers/alice"))
    assert response is not None and response.status == 403
    assert "attack" not in page.content()
    # Asking alice's memory through the console is refused by the API the same way.
    answer = page.request.post(
        console.url(f"/w/{console.ws}/peers/alice/chat"), data={"query": "Any attack?"}
    )
    assert answer.status == 403 and console.ws in answer.json()["detail"]

    # Something that does not exist is a 404 page, not a 500.
    page.context.clear_cookies()
    login(page, console, console.admin_key)
    response = page.goto(console.url("/w/no-such-workspace/sessions/nope"))
    assert response is not None and response.status == 404
    assert "Not found" in page.inner_text("h1")
    assert "not found" in page.inner_text("#error-detail").lower()

    # A forged key is refused at the login form, with the server's reason.
    page.context.clear_cookies()
    login(page, console, console.key(admin=True) + "x")
    assert "did not accept this key (401)" in page.inner_text("#login-error")
    # Something that is not a key at all.
    login(page, console, "hello")
    assert "not a Rapport API key" in page.inner_text("#login-error")
    # No key at all: any page sends you to the login form.
    page.goto(console.url(f"/w/{console.ws}/graph"))
    assert "/console/login" in page.url


def test_lag_chart_follows_the_backlog_as_it_grows_and_drains(page: Any, console: Console) -> None:
    ws = console.ws
    login(page, console, console.admin_key)
    page.goto(console.url(f"/w/{ws}/deriver"))
    page.wait_for_function("Number(document.getElementById('lag').dataset.samples || 0) >= 1")
    assert page.get_attribute("#lag", "data-peak") == "0"
    # A burst of work in a session of its own (dave is alone and observes nobody).
    console.api.post(f"/v3/workspaces/{ws}/sessions", json={"id": "busy", "peers": {"dave": {}}})
    lines = [f"I counted {n} sheep before sleeping on night {n}" for n in range(100)]
    r = console.api.post(
        f"/v3/workspaces/{ws}/sessions/busy/messages",
        json={"messages": [{"peer_id": "dave", "content": c} for c in lines]},
    )
    assert r.status_code == 201, r.text
    # The chart sees the backlog, then sees it drain to nothing.
    page.wait_for_function(
        "Number(document.getElementById('lag').dataset.peak || 0) > 0", timeout=30_000
    )
    page.wait_for_function("document.getElementById('lag').dataset.latest === '0'", timeout=60_000)
    assert int(page.get_attribute("#lag", "data-peak") or 0) <= 100
    assert page.inner_text("#q-pending") == "0"
    shot(page, "deriver-lag")
    page.reload()
    row = page.locator("#sessions-queue tr[data-session='busy'] td.num")
    assert [int(t) for t in row.all_inner_texts()] == [0, 0, 100, 100]
    # The 100 messages page by 20, in order.
    page.goto(console.url(f"/w/{ws}/sessions/busy"))
    assert len(texts(page, "#messages .content")) == 20
    assert "page 1 of 5" in page.inner_text(".pager")
    page.click(".pager a.next")
    shown = texts(page, "#messages .content")
    assert shown[0] == lines[20] and shown[-1] == lines[39]
    assert "page 2 of 5" in page.inner_text(".pager")


def test_a_peer_key_sees_only_the_views_it_holds(page: Any, console: Console) -> None:
    login(page, console, console.key(workspace_id=console.ws, peer_id="charlie"))
    assert page.url == console.url(f"/w/{console.ws}/peers/charlie")
    page.goto(console.url(f"/w/{console.ws}/peers/alice"))
    columns = page.locator("#perspectives .view")
    observers = [columns.nth(i).get_attribute("data-observer") for i in range(columns.count())]
    # alice's own view is refused by the API; bob's view is not even listed for charlie.
    assert observers == ["alice", "charlie"]
    assert "cannot read this view" in page.inner_text(".view[data-observer='alice'] .view-error")
    charlie_view = " ".join(texts(page, ".view[data-observer='charlie'] .obs"))
    assert "peaceful" in charlie_view and "pancakes" in charlie_view
    assert "attack" not in page.content()
    shot(page, "peer-key")
