"""Back-pressure: when every worker is busy and the queue is full, an upload is refused at once
with 503, a Retry-After header and a JSON error; the admitted ones complete; cheap requests are
never queued.  Workers are held by an event, not by timing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from audiolsh.web.admission import Admission
from audiolsh.web.errors import Busy


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    """Poll a state the test waits for; the deadline only keeps a broken run from hanging."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"never reached: {what}"
        time.sleep(0.01)


def test_admission_refuses_past_the_queue_and_frees_its_places() -> None:
    gate = Admission(workers=1, max_queue=1, timeout_s=60.0)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with gate.slot():
            held.set()
            release.wait(60)

    def wait_in_line() -> None:
        with gate.slot():
            pass

    first = threading.Thread(target=hold)
    first.start()
    assert held.wait(60)
    second = threading.Thread(target=wait_in_line)
    second.start()
    wait_until(lambda: gate.waiting == 1, "one upload waiting")
    with pytest.raises(Busy) as refused:
        with gate.slot():
            pass
    assert refused.value.status == 503 and refused.value.retry_after_s >= 1
    assert gate.refused == 1 and gate.running == 1
    release.set()
    first.join(60)
    second.join(60)
    assert (gate.running, gate.waiting) == (0, 0)
    with gate.slot():  # room again
        assert gate.running == 1


def test_a_full_queue_answers_503_with_retry_after_and_the_queued_complete(
    web_corpus: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from audiolsh.web import services
    from audiolsh.web.app import create_app
    from audiolsh.web.settings import Settings

    entered, release = threading.Event(), threading.Event()
    identify = services.identify_clip

    def held_identify(library: Any, y: Any, sr: int, **options: Any) -> Any:
        entered.set()
        assert release.wait(120), "the test never released the workers"
        return identify(library, y, sr, **options)

    monkeypatch.setattr(services, "identify_clip", held_identify)
    app = create_app(Settings(index_path=web_corpus.library, warm_up=False, workers=1, max_queue=2))
    gate = app.state.service.admission
    clip = web_corpus.clip("bravo.flac", offset_s=8.0, duration_s=6.0)

    with TestClient(app) as c, ThreadPoolExecutor(max_workers=3) as ex:
        def post() -> Any:
            return c.post("/api/identify", files={"file": ("bravo.wav", clip)})

        admitted = [ex.submit(post)]
        assert entered.wait(120)  # the only worker is held
        admitted += [ex.submit(post) for _ in range(2)]
        wait_until(lambda: gate.waiting == 2, "two uploads queued")

        for path in ("/api/identify", "/api/similar", "/api/analyse"):
            r = c.post(path, files={"file": ("bravo.wav", clip)})
            assert r.status_code == 503, (path, r.text)
            assert int(r.headers["Retry-After"]) >= 1
            body = r.json()
            assert body["error"] == "busy" and "capacity" in body["detail"]
            assert body["retry_after_s"] == int(r.headers["Retry-After"])
        # never queued: health and the catalogue answer while the queue is full
        health = c.get("/health")
        assert health.status_code == 200
        assert (health.json()["busy"], health.json()["queued"], health.json()["max_queue"]) == (1, 2, 2)
        assert c.get("/api/tracks").json()["total"] == 4

        release.set()
        answers = [f.result(timeout=120) for f in admitted]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert all(r.json()["match"]["track_id"] == web_corpus.ids["bravo.flac"] for r in answers)
    assert gate.refused == 3 and (gate.running, gate.waiting) == (0, 0)
