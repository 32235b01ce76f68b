import pytest
from django.db import connection
from django.db.utils import OperationalError

from lithtrix.core import probes

DEAD_REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        # Port 1 on loopback: nothing listens there, the connection is refused at once.
        "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}


def test_healthz_answers_without_touching_the_database(client):
    # No django_db mark: pytest-django makes any database access raise here.
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Content-Type"] == "application/json"
    assert response["X-Request-Id"]


@pytest.mark.django_db
def test_readyz_is_200_when_database_and_cache_answer(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "cache": "ok"}}


@pytest.mark.django_db
def test_readyz_is_503_envelope_when_the_cache_is_unreachable(client, settings):
    settings.CACHES = DEAD_REDIS

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response["X-Request-Id"]
    assert response["Retry-After"] == "5"
    assert response.json() == {
        "status": "error",
        "error_code": "SERVICE_UNAVAILABLE",
        "message": "Not ready: cache unreachable.",
        "checks": {"database": "ok", "cache": "unavailable"},
    }


@pytest.mark.django_db
def test_readyz_is_503_envelope_when_the_database_is_unreachable(client, monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", refuse)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "error",
        "error_code": "SERVICE_UNAVAILABLE",
        "message": "Not ready: database unreachable.",
        "checks": {"database": "unavailable", "cache": "ok"},
    }


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_refuse_other_methods_with_the_envelope(client, path):
    response = client.post(path)

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response.json() == {
        "status": "error",
        "error_code": "METHOD_NOT_ALLOWED",
        "message": "Method POST not allowed.",
    }


def test_readiness_checks_cover_database_and_cache():
    assert set(probes.READINESS_CHECKS) == {"database", "cache"}


def test_an_exception_no_view_answered_is_logged_with_its_traceback(settings, caplog, monkeypatch):
    from django.test import Client

    from lithtrix.core import probes

    def broken(request):
        raise RuntimeError("probe broke")

    # ProbeMiddleware calls the probe itself: no view's error handling is around it.
    monkeypatch.setattr(probes, "healthz", broken)
    settings.DEBUG = False

    response = Client(raise_request_exception=False).get("/healthz")

    assert response.status_code == 500
    assert response.json()["error_code"] == "INTERNAL_ERROR"
    [record] = [r for r in caplog.records if r.name == "django.request" and r.levelname == "ERROR"]
    assert record.exc_info is not None and "probe broke" in str(record.exc_info[1])
