import os
import subprocess
import sys

import pytest

from testing.servers import BASE_DIR, serve_check

# Servers or Python in subprocesses, or a browser: seconds each, not milliseconds.
pytestmark = pytest.mark.slow

PRODUCTION = {
    "DJANGO_DEBUG": "off",
    "DJANGO_SECRET_KEY": "k3y-" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789" * 2,
    "DJANGO_ALLOWED_HOSTS": "api.example.com",
    "DJANGO_HTTPS": "on",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO",
    # Production shares rate-limit counters in Redis (nothing connects to it here).
    "REDIS_URL": "redis://127.0.0.1:6379/15",
    # Owner e-mail by SMTP over STARTTLS (nothing connects to it here).
    "EMAIL_URL": "smtp+tls://mailer:s3cret@smtp.example.com:587",
    "LITHTRIX_PUBLIC_URL": "https://api.example.com",
}


def run_python(*args, env):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LITHTRIX_"))}
    return subprocess.run(
        [sys.executable, *args],
        cwd=BASE_DIR,
        env={**base, "DATABASE_URL": "sqlite:///:memory:", **env},
        capture_output=True,
        text=True,
        check=False,
    )


def run_manage(*args, env):
    return run_python("manage.py", *args, env=env)


def settings_value(name, env):
    """repr() of a setting as a process started with ``env`` sees it."""
    code = (
        "import os, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'lithtrix.settings'; "
        f"django.setup(); from django.conf import settings; "
        f"print(repr(getattr(settings, {name!r}, None)))"
    )
    result = run_python("-c", code, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_check_deploy_is_clean_with_production_variables():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_variables_turn_on_https_protections():
    assert settings_value("SECURE_HSTS_SECONDS", PRODUCTION) == "31536000"
    assert settings_value("SESSION_COOKIE_SECURE", PRODUCTION) == "True"
    assert settings_value("CSRF_COOKIE_SECURE", PRODUCTION) == "True"
    assert settings_value("SECURE_SSL_REDIRECT", PRODUCTION) == "True"
    assert (
        settings_value("SECURE_PROXY_SSL_HEADER", PRODUCTION)
        == "('HTTP_X_FORWARDED_PROTO', 'https')"
    )


@pytest.mark.parametrize("debug", ["on", "off"])
def test_plain_http_defaults_keep_local_serving_working(debug):
    env = {
        "DJANGO_DEBUG": debug,
        "DJANGO_SECRET_KEY": PRODUCTION["DJANGO_SECRET_KEY"],
        "REDIS_URL": PRODUCTION["REDIS_URL"],
        "EMAIL_URL": "console:",
    }
    assert settings_value("SECURE_SSL_REDIRECT", env) == "False"
    assert settings_value("SESSION_COOKIE_SECURE", env) == "False"
    assert settings_value("SECURE_HSTS_SECONDS", env) == "0"
    # Never trusted unless configured: a client could otherwise claim https.
    assert settings_value("SECURE_PROXY_SSL_HEADER", env) == "None"


def test_check_deploy_flags_a_deployment_without_https():
    env = {k: v for k, v in PRODUCTION.items() if k != "DJANGO_HTTPS"}
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert result.returncode != 0
    assert "security.W004" in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LITHTRIX_TRUSTED_PROXY_COUNT", "1", "LITHTRIX_TRUSTED_PROXY_COUNT is gone"),
        ("LITHTRIX_TRUSTED_PROXIES", "127.0.0.1,nginx.internal", "LITHTRIX_TRUSTED_PROXIES"),
    ],
    ids=["retired-count", "bad-network"],
)
def test_proxy_settings_that_cannot_be_honoured_stop_the_start(variable, value, message):
    result = run_manage("check", env={**PRODUCTION, variable: value})

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_trusted_proxies_are_a_network_list():
    env = {**PRODUCTION, "LITHTRIX_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8,::1"}
    assert settings_value("LITHTRIX_TRUSTED_PROXIES", env) == "['127.0.0.1', '10.0.0.0/8', '::1']"
    assert settings_value("LITHTRIX_TRUSTED_PROXIES", PRODUCTION) == "[]"
    # The count's old "none" stays harmless.
    env = {**PRODUCTION, "LITHTRIX_TRUSTED_PROXY_COUNT": "0"}
    assert settings_value("LITHTRIX_TRUSTED_PROXIES", env) == "[]"


def test_make_serve_names_each_rate_variable_whose_value_is_not_a_rate():
    checked = serve_check({"LITHTRIX_FREE_RATE": "abc", "LITHTRIX_REGISTER_RATE": "10/x"})

    assert checked.returncode == 2, checked.stderr
    assert "LITHTRIX_FREE_RATE: not a rate: 'abc'" in checked.stderr
    assert "LITHTRIX_REGISTER_RATE: not a rate: '10/x'" in checked.stderr
    assert "Traceback" not in checked.stderr


NOT_A_NUMBER = [
    ({"LITHTRIX_FREE_CALL_LIMIT": "3OO"}, "LITHTRIX_FREE_CALL_LIMIT must be a whole number"),
    ({"LITHTRIX_FREE_CALL_LIMIT": "1000"}, None),
    ({"LITHTRIX_JOB_TRIES": "-1"}, "LITHTRIX_JOB_TRIES must be at least 0, not '-1'"),
    ({"STRIPE_TIMEOUT_SECONDS": "20s"}, "STRIPE_TIMEOUT_SECONDS must be a number, not '20s'"),
    ({"LITHTRIX_CACHE_TIMEOUT_SECONDS": "nan"}, "LITHTRIX_CACHE_TIMEOUT_SECONDS must be"),
    ({"LITHTRIX_RATE_LIMIT_BREAKER_SECONDS": "inf"}, "LITHTRIX_RATE_LIMIT_BREAKER_SECONDS must"),
    ({"LITHTRIX_REPLICA_RETRY_SECONDS": "10s"}, "LITHTRIX_REPLICA_RETRY_SECONDS must be a"),
    ({"DJANGO_CONN_MAX_AGE": " 30 "}, None),
    # deploy/gunicorn.conf.py's own, which gunicorn would refuse with a traceback.
    ({"GUNICORN_WORKERS": "four"}, "GUNICORN_WORKERS must be a whole number, not 'four'"),
    ({"WORKERS": "2", "GUNICORN_WORKERS": "four"}, None),  # WORKERS is the one read
    ({"WORKERS": "", "GUNICORN_WORKERS": "0"}, "GUNICORN_WORKERS must be at least 1"),
    ({"GUNICORN_THREADS": "0", "GUNICORN_WORKER_CLASS": "gthread"}, "GUNICORN_THREADS must"),
    ({"GUNICORN_THREADS": "0"}, None),  # sync: no threads read
    ({"GUNICORN_TIMEOUT": " "}, None),
]


@pytest.mark.parametrize(
    ("env", "message"),
    NOT_A_NUMBER,
    ids=[
        "not-a-number", "fine", "negative", "unit-suffix", "nan", "infinite", "replica-retry",
        "spaces", "gunicorn-word", "workers-wins", "no-workers", "gthread-zero-threads",
        "sync-ignores-threads", "gunicorn-empty",
    ],
)  # fmt: skip
def test_make_serve_names_a_numeric_variable_whose_value_is_not_a_number(env, message):
    checked = serve_check(env)

    assert "Traceback" not in checked.stderr, checked.stderr
    if message is None:
        assert checked.returncode == 0, checked.stderr
    else:
        assert checked.returncode == 2, checked.stderr
        assert message in checked.stderr
