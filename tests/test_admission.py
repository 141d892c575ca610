"""Admission (app/admission.py): at most WEB_ACTIVE_REQUESTS requests of a process run at once,
first come first served; bodies, streams and waits on WeChat never hold a turn."""

from __future__ import annotations

import io
import threading
import time

import pytest

from app import admission
from app.admission import QUEUED_KEY, ActiveRequestLimit, QueuedSignal, Turns
from app.extensions import redis_store
from miniprogram_mock.wechat_server import Fault, shared_mock_app


def _wait_for(predicate, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _environ(body: bytes = b"", stream=None) -> dict:
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": stream or io.BytesIO(body)}


def _call(wsgi, environ: dict) -> bytes:
    return b"".join(wsgi(environ, lambda status, headers: None))


def test_waiting_requests_get_their_turn_in_arrival_order():
    turns = Turns(1)
    turns.acquire()  # taken: everyone below waits
    order: list[int] = []

    def request(n: int) -> None:
        turns.acquire()
        order.append(n)
        turns.release()

    threads = []
    for n in range(8):  # each one queued before the next arrives
        threads.append(threading.Thread(target=request, args=(n,)))
        threads[-1].start()
        _wait_for(lambda n=n: turns.waiting == n + 1)
    turns.release()
    for thread in threads:
        thread.join(5)
    assert order == list(range(8))
    assert turns.waiting == 0


def test_a_request_arriving_as_a_turn_frees_does_not_jump_the_queue():
    turns = Turns(1)
    turns.acquire()
    served: list[str] = []

    def waiter() -> None:
        turns.acquire()
        served.append("waited")
        turns.release()

    thread = threading.Thread(target=waiter)
    thread.start()
    _wait_for(lambda: turns.waiting == 1)
    turns.release()
    turns.acquire()  # a newcomer, right as the turn frees: behind the one who waited
    served.append("newcomer")
    turns.release()
    thread.join(5)
    assert served == ["waited", "newcomer"]


def test_no_more_requests_run_at_once_than_there_are_turns_and_all_are_served():
    running, most, lock = [0], [0], threading.Lock()

    def app(environ, start_response):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        start_response("200 OK", [])
        return [b"ok"]

    wsgi = ActiveRequestLimit(app, Turns(2), max_body=None)
    answers: list[bytes] = []
    threads = [threading.Thread(target=lambda: answers.append(_call(wsgi, _environ())))
               for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert answers == [b"ok"] * 12
    assert most[0] == 2


def test_a_slow_upload_is_read_before_the_request_queues_for_a_turn():
    turns = Turns(1)
    body_read = threading.Event()

    class SlowPhone(io.BytesIO):
        def read(self, *args):
            data = super().read(*args)
            body_read.set()
            return data

    def app(environ, start_response):
        start_response("200 OK", [])
        return [environ["wsgi.input"].read()]

    wsgi = ActiveRequestLimit(app, turns, max_body=1024)
    turns.acquire()  # another request runs
    answer: list[bytes] = []
    thread = threading.Thread(target=lambda: answer.append(
        _call(wsgi, _environ(b"photo", SlowPhone(b"photo")))))
    thread.start()
    _wait_for(lambda: turns.waiting == 1)
    assert body_read.is_set()  # read while it waited, not while it held the turn
    turns.release()
    thread.join(5)
    assert answer == [b"photo"]


def test_a_body_larger_than_the_app_accepts_is_left_unread_for_its_413():
    reads = []

    class Upload(io.BytesIO):
        def read(self, *args):
            reads.append(args)
            return super().read(*args)

    def app(environ, start_response):
        start_response("413 Request Entity Too Large", [])
        return [b""]

    wsgi = ActiveRequestLimit(app, Turns(1), max_body=4)
    _call(wsgi, _environ(b"too big", Upload(b"too big")))
    assert reads == []


def test_a_request_that_fails_gives_its_turn_back():
    turns = Turns(1)

    def failing(environ, start_response):
        raise RuntimeError("boom")

    wsgi = ActiveRequestLimit(failing, turns, max_body=None)
    with pytest.raises(RuntimeError):
        _call(wsgi, _environ())
    assert turns.free == 1 and turns.waiting == 0


def test_a_client_that_goes_away_mid_upload_gets_its_short_body_not_a_crash():
    class Dropped(io.BytesIO):
        def read(self, *args):
            raise OSError("connection reset")

    def app(environ, start_response):
        start_response("200 OK", [])
        return [environ["wsgi.input"].read()]

    wsgi = ActiveRequestLimit(app, Turns(1), max_body=1024)
    assert _call(wsgi, {**_environ(b"photo"), "wsgi.input": Dropped()}) == b""


def test_the_liveness_probe_answers_while_every_turn_is_taken():
    turns = Turns(1)

    def app(environ, start_response):
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode()]

    wsgi = ActiveRequestLimit(app, turns, max_body=None)
    turns.acquire()  # e.g. a request waiting on a slow database
    answers: list[bytes] = []
    probe = threading.Thread(target=lambda: answers.append(
        _call(wsgi, {**_environ(), "PATH_INFO": "/healthz"})), daemon=True)
    probe.start()
    probe.join(2)
    turns.release()
    assert answers == [b"/healthz"]
    probe.join(5)


def test_a_streamed_response_gives_its_turn_back_when_the_view_returns():
    turns = Turns(1)

    def stream(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return (f"data: {n}\n\n".encode() for n in range(3))

    wsgi = ActiveRequestLimit(stream, turns, max_body=None)
    body = wsgi(_environ(), lambda status, headers: None)  # the stream is open, not drained
    assert turns.free == 1
    assert b"".join(body) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"


def test_a_request_that_leaves_its_turn_lets_the_next_one_run_and_goes_on_without_one():
    turns = Turns(1)
    waiting_on_wechat, wechat_answers = threading.Event(), threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/wx-login":
            admission.leave()
            waiting_on_wechat.set()
            assert wechat_answers.wait(5)
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode()]

    wsgi = ActiveRequestLimit(app, turns, max_body=None)
    login: list[bytes] = []
    slow = threading.Thread(target=lambda: login.append(
        _call(wsgi, {**_environ(), "PATH_INFO": "/wx-login"})))
    slow.start()
    assert waiting_on_wechat.wait(5)
    assert _call(wsgi, {**_environ(), "PATH_INFO": "/home"}) == b"/home"  # not held up
    wechat_answers.set()
    slow.join(5)
    assert login == [b"/wx-login"]
    assert turns.free == 1 and turns.waiting == 0  # given back once, not twice


def test_a_login_waiting_on_a_slow_wechat_does_not_hold_up_other_requests(app_of_its_own):
    one_at_a_time = app_of_its_own(WEB_ACTIVE_REQUESTS=1, WX_TIMEOUT_SECONDS=3.0)
    mock = shared_mock_app().extensions["mock_wechat"]
    mock.set_fault(Fault(delay=1.5, paths=("/sns/jscode2session",), times=1))
    client = one_at_a_time.test_client()
    login: list[int] = []
    slow = threading.Thread(target=lambda: login.append(
        client.post("/api/v1/auth/wx-login", json={"code": "slow-day"}).status_code))
    slow.start()
    _wait_for(lambda: mock.call_count("/sns/jscode2session") >= 1)
    started = time.monotonic()
    assert client.get("/healthz").status_code == 200
    assert time.monotonic() - started < 1.0  # not after the login's 1.5 s
    slow.join(10)
    assert login == [200]


@pytest.mark.parametrize("size, wrapped", [(0, False), (2, True)])
def test_the_limit_is_set_by_web_active_requests(app_of_its_own, size, wrapped):
    configured = app_of_its_own(WEB_ACTIVE_REQUESTS=size)
    assert isinstance(configured.wsgi_app, ActiveRequestLimit) is wrapped
    assert configured.test_client().get("/healthz").status_code == 200


# The web's signal to the workers that requests queue (QueuedSignal; workers/yielding.py waits
# on it).


@pytest.fixture
def no_signal(app):
    """The app's Redis without the signal, before and after."""
    redis_store.client.delete(QUEUED_KEY)
    yield redis_store.client
    redis_store.client.delete(QUEUED_KEY)


def _hold_a_turn_then_queue(wsgi, held_for: float) -> None:
    """One request holds the only turn for `held_for` seconds while a second waits for it."""
    release = threading.Event()

    def view(environ, start_response):
        release.wait(5)
        start_response("200 OK", [])
        return [b"ok"]

    wsgi.app = view
    requests = [threading.Thread(target=_call, args=(wsgi, _environ())) for _ in range(2)]
    requests[0].start()
    _wait_for(lambda: wsgi.turns.free == 0)
    requests[1].start()
    _wait_for(lambda: wsgi.turns.waiting == 1)
    time.sleep(held_for)
    release.set()
    for request in requests:
        request.join(5)


def test_a_request_that_waited_for_its_turn_tells_the_workers_in_redis(no_signal):
    wsgi = ActiveRequestLimit(None, Turns(1, on_queue=QueuedSignal(no_signal)), None)
    _hold_a_turn_then_queue(wsgi, held_for=0.05)
    _wait_for(lambda: no_signal.exists(QUEUED_KEY))
    assert 0 < no_signal.pttl(QUEUED_KEY) <= 500  # it lapses soon after the queue empties


def test_a_moments_wait_for_a_turn_does_not_count():
    waits = []
    wsgi = ActiveRequestLimit(None, Turns(1, on_queue=lambda: waits.append(1),
                                          queued_after=5.0), None)
    _hold_a_turn_then_queue(wsgi, held_for=0.05)  # a modest load's blip
    assert waits == []
    wsgi.turns.queued_after = 0.02
    _hold_a_turn_then_queue(wsgi, held_for=0.05)
    assert waits == [1]


def test_the_apps_request_queue_signals_into_its_redis(app_of_its_own):
    other = app_of_its_own(WEB_ACTIVE_REQUESTS=1)
    with other.app_context():
        redis_store.client.delete(QUEUED_KEY)
        other.wsgi_app.turns.on_queue()  # what a request does after waiting its 20 ms
        _wait_for(lambda: redis_store.client.exists(QUEUED_KEY))
        redis_store.client.delete(QUEUED_KEY)
    assert other.wsgi_app.turns.queued_after == 0.02


def test_the_signal_is_written_at_most_every_tenth_of_a_second():
    writes = []

    class Counting:
        def set(self, *args, **kwargs):
            writes.append(time.monotonic())

    signal = QueuedSignal(Counting())
    started = time.monotonic()
    while time.monotonic() - started < 0.5:
        signal()
        time.sleep(0.001)
    time.sleep(0.15)
    assert 3 <= len(writes) <= 7
    assert all(b - a >= 0.09 for a, b in zip(writes, writes[1:], strict=False))


def test_a_redis_that_does_not_answer_never_holds_up_a_waiting_request():
    class Hung:
        def set(self, *args, **kwargs):
            time.sleep(2)  # until the socket times out

    signal = QueuedSignal(Hung())
    started = time.monotonic()
    signal()
    signal()
    assert time.monotonic() - started < 1.0


def test_an_unexpected_error_does_not_end_the_signalling(caplog):
    calls = []

    class Broken:
        def set(self, *args, **kwargs):
            calls.append(1)
            raise TypeError("a client that changed under us")

    signal = QueuedSignal(Broken())
    signal()
    _wait_for(lambda: len(calls) == 1)
    time.sleep(0.15)
    signal()
    _wait_for(lambda: len(calls) == 2)  # the writer thread lived on
    assert "could not tell the workers" in caplog.text
