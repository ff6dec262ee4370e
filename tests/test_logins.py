"""Logins (--auth): several users, each with conversations and batches of their own; wrong
passwords slowed down per client address; no Gradio route answers without a login. Through
real HTTP against one launched --demo app with two users, plus unit tests of the pieces."""

from __future__ import annotations

import json
import math
import sqlite3
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import gradio as gr
import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app.config import AppConfig
from app.history import LOCAL_USER, History, StoredMessage
from app.login_guards import LOG_IN_FIRST
from app.login_throttle import (
    FIRST_WAIT_S,
    FREE_FAILURES,
    LOGIN_NOTE,
    MAX_ADDRESSES,
    MAX_WAIT_S,
    FailedLogins,
)
from app.page.gradio_api import GONE
from app.page.owners import user_of
from app.page.side_list import Conversations
from bench.samples import photo
from launch import build_config, parse_args
from tests.conftest import SHORT_REPLY_TOKENS, health_when_loaded, start_app, stop_app

ANA = ("ana", "correct-horse")
BEN = ("ben", "battery-staple")
WRONG_TRIES = 100


@pytest.fixture(scope="module")
def team_app(miniature: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One --demo app with two logins (one by --auth, one from --auth-file), and its URL."""
    data = tmp_path_factory.mktemp("team-data")
    users = data.parent / "users.txt"
    users.write_text(f"# the team\n{':'.join(BEN)}\n")
    process, url = start_app(
        "--demo",
        "--auth",
        ":".join(ANA),
        "--auth-file",
        str(users),
        env={"LOUPE_DATA_DIR": str(data)},
    )
    try:
        health_when_loaded(process, url)
        yield url
    finally:
        output = stop_app(process)
        assert "Traceback" not in output, output


@contextmanager
def logged_in(url: str, user: tuple[str, str]) -> Iterator[httpx.Client]:
    """A client with the cookie of a login as `user`."""
    with httpx.Client(base_url=url, timeout=60) as session:
        answer = session.post("/login", data={"username": user[0], "password": user[1]})
        assert answer.status_code == 200, answer.text
        yield session


def from_address(url: str, address: str) -> httpx.Client:
    """A client whose requests come from another loopback address (a client of its own)."""
    return httpx.Client(base_url=url, transport=httpx.HTTPTransport(local_address=address))


# -- through HTTP -------------------------------------------------------------------------------


def test_the_page_needs_a_login_and_health_answers_without(team_app: str):
    health = httpx.get(f"{team_app}/health").json()  # no credentials: monitors need no login
    assert health["status"] == "ok" and "ana" not in json.dumps(health)
    refused = httpx.get(f"{team_app}/config")
    assert refused.status_code == 401
    # The login page shows how wrong passwords are slowed down.
    assert refused.json()["detail"]["auth_message"] == LOGIN_NOTE
    for user in (ANA, BEN):
        with logged_in(team_app, user) as session:
            assert session.get("/config").json()["username"] == user[0]
            # The login opens the page, not the OpenAI-compatible /v1: that needs --api-key.
            closed = session.get("/v1/models")
            assert closed.status_code == 401 and "--api-key" in closed.json()["error"]["message"]
    assert httpx.get(f"{team_app}/v1/models").status_code == 401


def test_wrong_passwords_are_slowed_down_per_address(team_app: str):
    """Before: 100 wrong passwords were all checked, in 0.2 s. Now the first few are; the rest
    are refused unchecked, with a sentence and Retry-After, until the client's wait is over."""
    with from_address(team_app, "127.0.0.2") as guesser:
        started = time.monotonic()
        answers, sent, answered = [], [], []
        for n in range(WRONG_TRIES):
            sent.append(time.monotonic())
            answers.append(
                guesser.post("/login", data={"username": "ana", "password": f"guess-{n}"})
            )
            answered.append(time.monotonic())
        elapsed = time.monotonic() - started
        codes = [answer.status_code for answer in answers]
        assert codes[:FREE_FAILURES] == [400] * FREE_FAILURES, codes
        assert set(codes) == {400, 429}, codes
        # A try past the free ones is checked only once its wait, doubled after each check, is
        # over: on a slow machine, 100 tries may outlast the first waits (1 s, 2 s, ...).
        checked, wait = FREE_FAILURES - 1, FIRST_WAIT_S
        for n in range(FREE_FAILURES, WRONG_TRIES):
            if codes[n] == 400:
                assert answered[n] - sent[checked] >= wait, (n, codes)
                checked, wait = n, wait * 2
        assert codes.count(400) - FREE_FAILURES <= math.log2(1 + elapsed / FIRST_WAIT_S), codes
        last = answers[-1]
        if codes[-1] == 400:  # its wait was over: the next try's is not
            last = guesser.post("/login", data={"username": "ana", "password": "guess-last"})
        assert "Too many wrong passwords from this address: wait" in last.json()["detail"]
        assert 1 <= int(last.headers["retry-after"]) <= MAX_WAIT_S
        # During the wait even the right password is not checked.
        right = {"username": ANA[0], "password": ANA[1]}
        assert guesser.post("/login", data=right).status_code == 429
        # Another address is not held up meanwhile.
        with from_address(team_app, "127.0.0.1") as other:
            assert other.post("/login", data=right).status_code == 200
        time.sleep(int(last.headers["retry-after"]))
        assert guesser.post("/login", data=right).status_code == 200  # and the count restarts
        assert guesser.post("/login", data={"username": "ana", "password": "x"}).status_code == 400
    print(f"{WRONG_TRIES} wrong passwords: {elapsed:.2f} s, {codes.count(400)} checked")


def test_tries_sent_at_once_are_counted_before_they_are_answered(team_app: str):
    def guess(n: int) -> int:
        with from_address(team_app, "127.0.0.3") as guesser:
            data = {"username": "ben", "password": f"guess-{n}"}
            return guesser.post("/login", data=data).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = sorted(pool.map(guess, range(20)))
    assert codes == [400] * FREE_FAILURES + [429] * (20 - FREE_FAILURES), codes


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("POST", "/gradio_api/cancel", {"session_hash": "x", "fn_index": 0, "event_id": "y"}),
        ("POST", "/gradio_api/stream/some-event/close", None),
        ("POST", "/gradio_api/reset", {"event_id": "y"}),
        ("GET", "/gradio_api/heartbeat/some-session", None),
    ],
)
def test_no_gradio_route_answers_without_a_login(team_app: str, method: str, path: str, body):
    answer = httpx.request(method, f"{team_app}{path}", json=body)
    assert answer.status_code == 401 and answer.json() == {"detail": LOG_IN_FIRST}, answer.text
    with logged_in(team_app, ANA) as session:
        if path.endswith("/cancel"):
            assert session.post(path, json=body).json() == {"success": True}


def test_each_user_has_conversations_of_their_own(team_app: str, image_file: Path):
    ana = Client(team_app, auth=ANA, verbose=False)
    ben = Client(team_app, auth=BEN, verbose=False)
    conversation_id = ana.predict(api_name="/new_conversation")
    ana.predict(
        {"text": "My secret plan", "files": [handle_file(image_file)]},
        conversation_id=conversation_id,
        max_new_tokens=16,
        api_name="/chat",
    )
    calls = {
        "/chat": lambda: ben.predict(
            {"text": "Show me", "files": []}, conversation_id=conversation_id, api_name="/chat"
        ),
        "/describe": lambda: ben.predict(
            handle_file(image_file), "brief", conversation_id, api_name="/describe"
        ),
        "/regenerate": lambda: ben.predict(conversation_id, api_name="/regenerate"),
        "/edit": lambda: ben.predict(conversation_id, 0, "Mine now", api_name="/edit"),
        "/export": lambda: ben.predict(conversation_id, "json", api_name="/export"),
    }
    for name, call in calls.items():
        with pytest.raises(AppError) as refused:
            call()
        assert GONE in str(refused.value), name
    exported = json.loads(ana.predict(conversation_id, "json", api_name="/export"))
    assert [m["text"] for m in exported["messages"]][0] == "My secret plan"  # untouched
    assert len(exported["messages"]) == 2
    # Its files, which Gradio serves by path, go to Ana alone.
    [kept] = [a["path"] for m in exported["messages"] for a in m["attachments"]]
    export = Path(kept).parents[2] / "exports" / conversation_id / "My secret plan.md"
    assert export.is_file()
    with logged_in(team_app, ANA) as as_ana, logged_in(team_app, BEN) as as_ben:
        for target in (
            f"/gradio_api/file={kept}",
            f"/gradio_api/file={quote(kept, safe='')}",
            f"/gradio_api/file/{kept}",
            f"/gradio_api/file={quote(str(export))}",
        ):
            assert as_ana.get(target).status_code == 200, target
            assert as_ben.get(target).status_code == 404, target
    # Ben's own conversation works as ever.
    his = ben.predict(api_name="/new_conversation")
    hello = {"text": "Hi", "files": []}
    ben.predict(hello, conversation_id=his, max_new_tokens=16, api_name="/chat")
    with pytest.raises(AppError, match=GONE):
        ana.predict(his, api_name="/export")


def test_the_pages_own_events_act_for_their_user(team_app: str):
    """The page's Send, and its edit of a message, as the browser calls them: the
    conversation is the logged-in user's; the other user's edit of it changes nothing."""
    with logged_in(team_app, ANA) as ana_session, logged_in(team_app, BEN) as ben_session:
        events, values = page_events(ana_session)
        send, edit = events["message", "submit"], events["chat", "edit"]
        data = [values[component] for component in send["inputs"]]  # the page's settings
        data[0] = {"text": "Written on the page", "files": []}
        ok, outputs = call_event(ana_session, send["id"], data, uuid.uuid4().hex[:11])
        assert ok, outputs
        conversation_id = outputs[2]
        data = [values[component] for component in edit["inputs"]]
        data[0] = conversation_id
        for session, text in ((ana_session, "Edited by Ana"), (ben_session, "Ben was here")):
            edited = {"index": 0, "value": text, "previous_value": "Written on the page"}
            ok, _ = call_event(session, edit["id"], data, uuid.uuid4().hex[:11], edited)
            assert ok
    ana = Client(team_app, auth=ANA, verbose=False)
    kept = json.loads(ana.predict(conversation_id, "json", api_name="/export"))
    assert [message["text"] for message in kept["messages"]][0] == "Edited by Ana"
    assert len(kept["messages"]) == 2  # the question and its new answer
    with pytest.raises(AppError, match=GONE):
        Client(team_app, auth=BEN, verbose=False).predict(conversation_id, api_name="/export")


def test_in_the_browser_each_user_sees_only_their_own(browser, team_app: str):
    """Real Chromium: the login page states the rule on wrong passwords; Ana's conversation
    stays in her list after a reload; Ben sees it neither in his list nor by its address."""
    ana = log_in_page(browser, team_app, ANA)
    ana.fill("#message textarea", "Ana's own question")
    ana.keyboard.press("Enter")
    ana.wait_for_function("() => location.search.includes('c=')", timeout=60_000)
    ana.wait_for_selector("#message textarea:not([disabled])", timeout=60_000)
    address = ana.url
    ana.reload()
    ana.wait_for_selector("#message textarea")
    ana.get_by_text("Ana's own question").first.wait_for(timeout=30_000)
    ben = log_in_page(browser, team_app, BEN)
    ben.goto(address)
    ben.wait_for_selector("#message textarea")
    time.sleep(2)  # the list and the conversation fill in right after the page loads
    assert "Ana's own question" not in ben.inner_text("body")


def log_in_page(chromium, url: str, user: tuple[str, str]):
    """A page of its own browser context, logged in as `user` through the login form."""
    page = chromium.new_context().new_page()
    page.goto(url)
    page.wait_for_selector("input[type=password]", timeout=60_000)
    assert LOGIN_NOTE in page.inner_text("body")
    page.fill("input[type=text]", user[0])
    page.fill("input[type=password]", user[1])
    page.keyboard.press("Enter")
    page.wait_for_selector("#message textarea", timeout=60_000)
    return page


def test_a_batch_is_fetched_only_by_its_own_user(team_app: str, tmp_path: Path):
    """Ben sends Ana's page's session hash with the Batch view's download: before, he got her
    results; now the run is not his to see."""
    photo().save(tmp_path / "holiday.png")
    with logged_in(team_app, ANA) as ana, logged_in(team_app, BEN) as ben:
        events, _ = page_events(ana)
        start, download = events["batch-start", "click"]["id"], events["batch-csv", "click"]["id"]
        [uploaded] = ana.post(
            "/gradio_api/upload",
            files={"files": ("holiday.png", (tmp_path / "holiday.png").read_bytes())},
        ).json()
        file = {"path": uploaded, "orig_name": "holiday.png", "meta": {"_type": "gradio.FileData"}}
        page = uuid.uuid4().hex[:11]
        ok, outputs = call_event(ana, start, [[file], "brief", ""], page)
        assert ok and outputs[0].startswith("Done"), outputs
        table = outputs[2]["value"]  # headers and rows, as the page sends them back
        ok, theirs = call_event(ana, download, [table], page)
        assert ok and theirs[0][0]["path"].endswith("results.csv"), theirs
        ok, answer = call_event(ben, download, [table], page)
        assert not ok and "Describe some images first" in answer, answer


def page_events(session: httpx.Client) -> tuple[dict[tuple[str, str], dict], dict[int, object]]:
    """The page's events by their trigger (its component's elem_id, the event's name), and
    each component's value as the page starts, but Max new tokens set short in Settings (the
    tests check whose conversation a reply goes to, not its length)."""
    config = session.get("/config").json()
    ids = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
    values = {c["id"]: c.get("props", {}).get("value") for c in config["components"]}
    for component in config["components"]:
        if component.get("props", {}).get("label") == "Max new tokens":
            values[component["id"]] = SHORT_REPLY_TOKENS
    events = {
        (ids.get(target), name): dependency
        for dependency in config["dependencies"]
        for target, name in dependency["targets"]
    }
    return events, values


def call_event(
    session: httpx.Client, fn_index: int, data: list, session_hash: str, event_data=None
) -> tuple[bool, object]:
    """Call a page event as the page does (join the queue, read its stream): (success, the
    outputs or the error's sentence)."""
    body = {"data": data, "fn_index": fn_index, "session_hash": session_hash}
    joined = session.post("/gradio_api/queue/join", json={**body, "event_data": event_data})
    assert joined.status_code == 200, joined.text
    stream = f"/gradio_api/queue/data?session_hash={session_hash}"
    with session.stream("GET", stream, timeout=120) as events:
        for line in events.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("msg") == "process_completed":
                output = message.get("output") or {}
                if message.get("success"):
                    return True, output.get("data")
                return False, output.get("error")
    raise AssertionError("the event's stream ended without its result")


# -- the pieces ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failed_logins_wait_longer_each_time_and_a_success_forgets():
    clock = Clock()
    failures = FailedLogins(clock)
    waits = []
    for _ in range(FREE_FAILURES + 12):
        waits.append(failures.wait_s("10.0.0.1"))
        clock.now += waits[-1]  # a patient guesser: each try exactly when allowed
        failures.tried("10.0.0.1")
    expected = [FIRST_WAIT_S * 2**n for n in range(12)]
    assert waits == [0.0] * FREE_FAILURES + [min(w, MAX_WAIT_S) for w in expected]
    assert failures.wait_s("10.0.0.2") == 0  # per address
    failures.succeeded("10.0.0.1")
    assert failures.wait_s("10.0.0.1") == 0


def test_failed_logins_are_forgotten_after_an_hour_and_bounded_in_number():
    clock = Clock()
    failures = FailedLogins(clock)
    for _ in range(FREE_FAILURES + 3):
        failures.tried("10.0.0.1")
    assert failures.wait_s("10.0.0.1") > 0
    clock.now += 3601
    failures.tried("10.0.0.1")  # the first failure of a new count
    assert failures.wait_s("10.0.0.1") == 0
    for n in range(MAX_ADDRESSES + 50):
        failures.tried(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
    assert len(failures._records) == MAX_ADDRESSES


def test_ipv6_clients_are_counted_by_their_network():
    failures = FailedLogins(Clock())
    for host in range(FREE_FAILURES):
        failures.tried(f"2001:db8::{host + 1:x}")  # one machine, many addresses
    failures.tried("2001:db8::ffff")
    assert failures.wait_s("2001:db8::1234") > 0
    assert failures.wait_s("2001:db8:0:1::1") == 0  # another network
    for _ in range(FREE_FAILURES + 1):
        failures.tried("::ffff:192.0.2.7")  # IPv4, as a dual-stack server sees it
    assert failures.wait_s("192.0.2.7") > 0


def test_auth_flags_repeat_and_come_from_a_file(tmp_path: Path):
    users = tmp_path / "users.txt"
    users.write_text("# one a line\nben:battery:staple\n\n  cy:pw3  \n")
    config = build_config(parse_args(["--auth", "ana:pw1", "--auth-file", str(users)]))
    assert config.auth == (("ana", "pw1"), ("ben", "battery:staple"), ("cy", "pw3"))
    assert "pw1" not in repr(config) and "staple" not in repr(config)
    assert build_config(parse_args([])).auth == ()
    for flags, says in [
        (["--auth", "ana"], "--auth takes USER:PASS"),
        (["--auth", "ana:"], "--auth takes USER:PASS"),
        (["--auth", " ana:pw"], "--auth takes USER:PASS"),
        (["--auth", "ana:a", "--auth", "ana:b"], "'ana' is given twice"),
        (["--auth-file", str(tmp_path / "missing.txt")], "could not be read"),
    ]:
        with pytest.raises(SystemExit, match=says):
            build_config(parse_args(flags))
    users.write_text("ana:pw\nnot-a-login\n")
    with pytest.raises(SystemExit, match=f"line 2 of {users} takes USER:PASS"):
        build_config(parse_args(["--auth-file", str(users)]))


def test_conversations_kept_before_owners_stay_the_local_users(tmp_path: Path):
    """A data folder from before conversations had owners: its conversations are the local
    user's (Loupe without --auth), and no login sees them."""
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "conversations.db") as old:
        old.executescript(
            "CREATE TABLE conversations (id TEXT PRIMARY KEY, title TEXT NOT NULL,"
            " created REAL NOT NULL, updated REAL NOT NULL);"
            "INSERT INTO conversations VALUES ('old1', 'Kept long ago', 1.0, 2.0);"
        )
    old.close()
    history = History(data)
    assert history.get("old1").title == "Kept long ago"
    assert history.list() == [("old1", "Kept long ago", 2.0)]
    assert history.get("old1", "ana") is None and history.list(owner="ana") == []
    history.append("old1", StoredMessage("user", "Still mine"))
    assert History(data).get("old1").messages[0].text == "Still mine"  # reopened: migrated once


def test_the_side_list_shows_each_user_their_own(tmp_path: Path):
    history = History(tmp_path / "data")
    anas = history.create("Ana's trip", owner="ana")
    bens = history.create("Ben's taxes", owner="ben")
    side = Conversations(history)
    [today, *_] = side.groups(None, user="ana")
    assert [label for label, _ in today["choices"]] == ["Ana's trip"]
    assert side.open(bens, user="ana")[1] == ""  # opens a fresh chat instead
    assert side.open(bens, user="ben")[1] == bens
    assert [Path(path).suffix for path in side.export_files(anas, user="ana")] == [".md", ".json"]
    with pytest.raises(gr.Error, match="Open or start a conversation"):
        side.export_files(bens, user="ana")
    side.delete(bens, user="ana")
    side.rename(bens, "Mine", user="ana")
    assert history.get(bens, "ben").title == "Ben's taxes"


def test_a_request_acts_for_its_login():
    assert user_of(SimpleNamespace(username="ana")) == "ana"
    assert user_of(SimpleNamespace(username=None)) == LOCAL_USER
    assert user_of(None) == LOCAL_USER
    assert AppConfig().auth == ()
