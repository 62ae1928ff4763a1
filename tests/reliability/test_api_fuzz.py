"""The JSON API against a schema-driven fuzzer (Schemathesis): every operation, with generated valid and invalid
requests, as a staff client (bearer token) so that uploads get past the login. Every answer must be a status code
and a body the OpenAPI schema documents (errors are ``{"error": ...}``): no 500 is documented, and a 503 only where
a model is missing (this fixture trains no text or GAN model, so words and the GAN road answer 503).

Schemathesis's pytest plugin does not run under this pytest, so the cases are drawn with Hypothesis directly from
each operation's strategy, in one test per operation."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzzing
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


def load_schema():
    from webapp.wsgi import application

    return schemathesis.openapi.from_wsgi("/api/openapi.json", application)


def operations() -> list[str]:
    return sorted(f"{op.method.upper()} {op.path}" for op in (r.ok() for r in load_schema().get_all_operations()))


@pytest.fixture
def wsgi_calls_keep_the_test_database():
    """Django closes the database connection after each request through WSGI; the test database (in memory
    under SQLite) must outlive the requests, so do as Django's test client does for the test's duration."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def staff_token(django_user_model):
    from webapp.models import ApiToken

    user = django_user_model.objects.create_user("fuzz", password="x", is_staff=True)
    return ApiToken.issue(user)[1]


@pytest.mark.parametrize("operation", operations())
def test_api_answers_every_generated_request_as_documented(operation, searchable, staff_token,
                                                           wsgi_calls_keep_the_test_database):
    method, path = operation.split(" ", 1)
    op = next(r.ok() for r in load_schema().get_all_operations()
              if r.ok().method.upper() == method and r.ok().path == path)

    @fuzzing(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=op.as_strategy())
    def fuzz(case):
        response = case.call_and_validate(headers={"Authorization": f"Bearer {staff_token}"}, checks=CHECKS)
        assert response.status_code != 500
        if response.status_code == 503:
            assert "train" in response.json()["error"]

    fuzz()
