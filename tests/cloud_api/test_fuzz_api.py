"""A bounded schemathesis run over every operation: no 5xx, nothing off the documented schema.

Property-based requests (generated from ``/openapi.json``) go to the app served on a
real uvicorn (the conftest's), with the admin token. Each operation gets a few
derandomized examples so the run stays well under a minute and is the same every time.
Every failure is collected (operation, check, request) before asserting, so one run
lists them all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cloud_api.runtime import Cloud
from tests.cloud_api.conftest import admin_token

MAX_EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture
def store_url(tmp_path: Path) -> Iterator[str]:
    """SQLite only: the run is about the API's contract, not the database."""
    yield f"sqlite:///{tmp_path / 'db' / 'tether.db'}"


def fuzz(cloud: Cloud, api_url: str) -> list[str]:
    schema = schemathesis.openapi.from_dict(cloud.app.openapi())
    headers = {"Authorization": f"Bearer {admin_token(cloud)}"}
    failures: list[str] = []
    for result in schema.get_all_operations():
        failures += fuzz_operation(result.ok(), api_url, headers)
    return failures


def fuzz_operation(operation: Any, api_url: str, headers: dict[str, str]) -> list[str]:
    failures: list[str] = []

    @given(case=operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        response = case.call(base_url=api_url, headers=headers, timeout=30)
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, BaseExceptionGroup) as exc:  # collected, reported below
            found = [str(e).strip().splitlines()[0] for e in getattr(exc, "exceptions", [exc])]
            failures.append(f"{operation.label}: {response.status_code} {'; '.join(found)}\n    "
                            f"request: {case.method} {case.formatted_path} "
                            f"query={case.query} body={str(case.body)[:200]}\n    "
                            f"response: {response.text[:200]}")

    run()
    return failures


def test_no_operation_fails_the_documented_contract(cloud: Cloud, api_url: str) -> None:
    failures = fuzz(cloud, api_url)
    assert not failures, "\n".join(failures)
