"""Property-based tests of the whole API against its own OpenAPI schema (schemathesis).

Every operation gets generated requests, valid and invalid; every answer must conform to the
schema (a documented status code, a body matching its model, the declared content type) and
none may be a 5xx.  schemathesis' own pytest loader does not run under pytest 9, so each
operation's strategy is driven by hypothesis directly.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from audiolsh.web.app import create_app
from audiolsh.web.settings import Settings

UPLOADS = ["POST /api/identify", "POST /api/similar", "POST /api/analyse", "POST /api/segments"]
READS = ["GET /api/tracks", "GET /api/tracks/{track_id}/audio", "GET /api/tracks/{track_id}/similar",
         "GET /api/playlist.m3u"]
POSITIVE = schemathesis.GenerationMode.POSITIVE
NEGATIVE = schemathesis.GenerationMode.NEGATIVE


@pytest.fixture(scope="module")
def api_schema(web_corpus: Any) -> Any:
    app = create_app(Settings(index_path=web_corpus.library, warm_up=False, max_upload_bytes=2 * 1024 * 1024))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def least_by_peaks(case: Any) -> bool:
    """by=peaks with worst: valid by the schema, refused with a documented 422 (Jaccard has no
    least similar)."""
    query = case.query or {}
    return query.get("by") == "peaks" and query.get("worst") in (True, "true")


def check(strategy: Any, *, n: int, excluded: list[Any] | None = None) -> None:
    @given(case=strategy)
    @settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def run(case: Any) -> None:
        refused = [positive_data_acceptance] if least_by_peaks(case) else []
        case.call_and_validate(excluded_checks=[*(excluded or []), *refused])

    run()


def test_every_operation_is_covered(api_schema: Any) -> None:
    labels = {result.ok().label for result in api_schema.get_all_operations()}
    assert labels == {*UPLOADS, *READS, "GET /health"}


@pytest.mark.parametrize("label", UPLOADS)
def test_uploads_of_a_real_clip_with_generated_parameters(api_schema: Any, web_corpus: Any,
                                                          label: str) -> None:
    """A schema-valid request carrying real audio must be answered with 200 (all checks)."""
    operation = api_schema.find_operation_by_label(label)
    body = {"file": web_corpus.clip("alpha.wav", duration_s=6.0)}
    check(operation.as_strategy(POSITIVE, body=body), n=8)


@pytest.mark.parametrize("label", UPLOADS)
def test_uploads_of_generated_bytes(api_schema: Any, label: str) -> None:
    """Arbitrary bytes are refused with a documented 4xx and a conforming error body
    (so the 'valid request accepted' check does not apply: validity is in the content)."""
    operation = api_schema.find_operation_by_label(label)
    check(operation.as_strategy(POSITIVE), n=10, excluded=[positive_data_acceptance])


@pytest.mark.parametrize("label", [*UPLOADS, *READS])
def test_invalid_requests(api_schema: Any, label: str) -> None:
    operation = api_schema.find_operation_by_label(label)
    check(operation.as_strategy(NEGATIVE), n=12)


@pytest.mark.parametrize("label", [*READS, "GET /health"])
def test_reads(api_schema: Any, label: str) -> None:
    operation = api_schema.find_operation_by_label(label)
    check(operation.as_strategy(POSITIVE), n=25)
