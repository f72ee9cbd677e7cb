"""Concurrent requests share the read-only library safely: no handle is used by two threads."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from audiolsh.web.errors import Busy
from audiolsh.web.pool import LibraryPool


def test_pool_never_lends_one_handle_to_two_threads(web_corpus: Any) -> None:
    pool = LibraryPool(web_corpus.library, size=2, timeout_s=10.0)
    holders: Counter[int] = Counter()
    seen: set[int] = set()
    clashes = []
    lock = threading.Lock()
    both = threading.Barrier(2, timeout=60)  # the first two hold their handles at once

    def work(i: int) -> int:
        with pool.borrow() as library:
            with lock:
                holders[id(library)] += 1
                seen.add(id(library))
                if holders[id(library)] > 1 or sum(holders.values()) > 2:
                    clashes.append(i)
            if i < 2:
                both.wait()
            time.sleep(0.002)
            n = len(library.tracks())
            with lock:
                holders[id(library)] -= 1
        return n

    with ThreadPoolExecutor(max_workers=8) as ex:
        counts = list(ex.map(work, range(64)))
    pool.close()
    assert clashes == []
    assert counts == [4] * 64
    assert len(seen) == 2


def test_pool_says_busy_after_its_timeout(web_corpus: Any) -> None:
    pool = LibraryPool(web_corpus.library, size=1, timeout_s=0.05)
    errors = []
    with pool.borrow():
        def other() -> None:
            try:
                with pool.borrow():
                    pass
            except Busy as exc:
                errors.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert len(errors) == 1 and errors[0].status == 503
    with pool.borrow() as library:  # free again
        assert len(library) == 4
    pool.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_concurrent_requests_all_answered_correctly(web_corpus: Any, workers: int) -> None:
    from fastapi.testclient import TestClient

    from audiolsh.web.app import create_app
    from audiolsh.web.settings import Settings

    names = sorted(web_corpus.ids)
    clips = {name: web_corpus.clip(name, offset_s=8.0, duration_s=6.0) for name in names}
    # Room in the queue for every request at once: this test is about correctness, not refusal.
    app = create_app(Settings(index_path=web_corpus.library, warm_up=False, workers=workers, max_queue=8))

    def request(i: int) -> tuple[str, int, Any]:
        name = names[i % len(names)]
        kind = ("identify", "similar", "tracks")[i % 3]
        if kind == "tracks":
            r = c.get("/api/tracks", params={"q": name[:3]})
            return name, r.status_code, r.json()["items"][0]["track_id"] if r.status_code == 200 else None
        similar = {"by": "combined", "k": 1, "include_self": True}
        r = c.post(f"/api/{kind}", params=similar if kind == "similar" else None,
                   files={"file": (name, clips[name])})
        body = r.json()
        # similar names the clip's own track as its match, and lists it with include_self
        found = body["match"]["track_id"] if kind == "identify" else body["results"][0]["track_id"]
        return name, r.status_code, found

    with TestClient(app) as c, ThreadPoolExecutor(max_workers=8) as ex:
        answers = list(ex.map(request, range(24)))
        assert c.get("/health").json()["busy"] == 0
    assert [status for _, status, _ in answers] == [200] * 24
    assert all(found == web_corpus.ids[name] for name, _, found in answers)
