"""EMAIL_URL and the other owner e-mail settings (lithtrix/settings/mail.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from lithtrix.settings.mail import email_url_settings
from testing.servers import BASE_DIR

SMTP = "django.core.mail.backends.smtp.EmailBackend"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "smtp://127.0.0.1:2525",
            {
                "EMAIL_HOST": "127.0.0.1",
                "EMAIL_PORT": 2525,
                "EMAIL_USE_TLS": False,
                "EMAIL_USE_SSL": False,
                "EMAIL_HOST_USER": "",
                "EMAIL_HOST_PASSWORD": "",
            },
        ),
        (
            "smtp+tls://mailer:p%40ss%3Aword@smtp.example.com",
            {
                "EMAIL_HOST": "smtp.example.com",
                "EMAIL_PORT": 587,
                "EMAIL_USE_TLS": True,
                "EMAIL_USE_SSL": False,
                "EMAIL_HOST_USER": "mailer",
                "EMAIL_HOST_PASSWORD": "p@ss:word",
            },
        ),
        (
            "smtps://mailer:pw@smtp.example.com?timeout=3",
            {
                "EMAIL_HOST": "smtp.example.com",
                "EMAIL_PORT": 465,
                "EMAIL_USE_TLS": False,
                "EMAIL_USE_SSL": True,
                "EMAIL_TIMEOUT": 3.0,
            },
        ),
        ("smtp://mail.internal", {"EMAIL_PORT": 25, "EMAIL_TIMEOUT": 10.0}),
    ],
    ids=["smtp", "starttls", "implicit-tls", "defaults"],
)
def test_smtp_urls(url, expected):
    parsed = email_url_settings(url)

    assert parsed["EMAIL_BACKEND"] == SMTP
    assert {name: parsed[name] for name in expected} == expected


def test_console_url():
    assert email_url_settings("console:") == {
        "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"
    }


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("submission://smtp.example.com", "EMAIL_URL must start with smtp://"),
        ("smtp.example.com:25", "EMAIL_URL must start with smtp://"),
        ("smtp://", "EMAIL_URL names no host"),
        ("smtp://smtp.example.com:port", "malformed port or timeout"),
        ("smtp://smtp.example.com?timeout=soon", "malformed port or timeout"),
    ],
)
def test_a_url_it_cannot_read_is_refused(url, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        email_url_settings(url)


def settings_of(env: dict[str, str], *names: str) -> subprocess.CompletedProcess:
    """Import the real settings in a fresh process with ``env`` (and nothing of ours)."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "LITHTRIX_", "EMAIL_URL", "PYTEST"))
    }
    code = (
        "import json, lithtrix.settings as s; "
        f"print(json.dumps({{n: str(getattr(s, n)) for n in {list(names)!r}}}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env={**clean, "REDIS_URL": "redis://127.0.0.1:6379/9", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


PRODUCTION = {"DJANGO_SECRET_KEY": "x" * 50}


def test_production_refuses_to_start_without_email_url():
    result = settings_of(PRODUCTION)

    assert result.returncode != 0
    assert "EMAIL_URL is required unless DJANGO_DEBUG is on" in result.stderr


def test_production_smtp_needs_an_https_public_url_for_unsubscribe_links():
    refused = settings_of({**PRODUCTION, "EMAIL_URL": "smtp+tls://u:secret@smtp.example.com"})
    started = settings_of(
        {
            **PRODUCTION,
            "EMAIL_URL": "smtp+tls://u:secret@smtp.example.com",
            "LITHTRIX_PUBLIC_URL": "https://api.example.com/",
        },
        "EMAIL_HOST",
        "LITHTRIX_EMAIL_LINK_BASE",
    )

    assert refused.returncode != 0
    assert "LITHTRIX_PUBLIC_URL must be this deployment's https URL" in refused.stderr
    assert "secret" not in refused.stderr
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout) == {
        "EMAIL_HOST": "smtp.example.com",
        "LITHTRIX_EMAIL_LINK_BASE": "https://api.example.com",
    }


def test_make_run_writes_mail_to_files_in_var_mail():
    result = settings_of(
        {"DJANGO_DEBUG": "on"}, "EMAIL_BACKEND", "EMAIL_FILE_PATH", "LITHTRIX_EMAIL_LINK_BASE"
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(BASE_DIR / "var" / "mail"),
        "LITHTRIX_EMAIL_LINK_BASE": "http://127.0.0.1:8000",
    }


def test_sender_and_daily_cap_defaults():
    result = settings_of(
        {"DJANGO_DEBUG": "on"}, "LITHTRIX_EMAIL_FROM", "LITHTRIX_OWNER_EMAILS_PER_DAY"
    )

    assert json.loads(result.stdout) == {
        "LITHTRIX_EMAIL_FROM": "Lithtrix <no-reply@localhost>",
        "LITHTRIX_OWNER_EMAILS_PER_DAY": "10",
    }


def test_the_smtp_password_is_only_in_the_setting_django_hides():
    env = {
        **PRODUCTION,
        "EMAIL_URL": "smtp+tls://mailer:s3cret-pw@smtp.example.com",
        "LITHTRIX_PUBLIC_URL": "https://api.example.com",
    }
    code = (
        "import os, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'lithtrix.settings'; "
        "django.setup(); from django.conf import settings; "
        "from django.views.debug import SafeExceptionReporterFilter as F; "
        "shown = F().get_safe_settings(); "
        "print(sorted(k for k, v in shown.items() if 's3cret-pw' in str(v)))"
    )
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "LITHTRIX_", "EMAIL_URL", "PYTEST"))
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env={**clean, "REDIS_URL": "redis://127.0.0.1:6379/9", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
