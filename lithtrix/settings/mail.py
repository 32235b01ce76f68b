"""Owner e-mail (mail/): Django's e-mail backend from one URL, the sender, the daily cap."""

import os
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from lithtrix.settings.api import LITHTRIX_PUBLIC_URL
from lithtrix.settings.django import DEBUG
from lithtrix.settings.env import BASE_DIR, env_int

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
# scheme -> (TLS mode, default port). smtps is TLS from the first byte (RFC 8314);
# smtp+tls upgrades a plain connection with STARTTLS.
SMTP_SCHEMES = {"smtp": ("", 25), "smtp+tls": ("starttls", 587), "smtps": ("tls", 465)}


def email_url_settings(url: str) -> dict[str, Any]:
    """Django's EMAIL_* settings for ``url``: smtp://user:pass@host:port, smtp+tls://...,
    smtps://..., console:. An unknown scheme is refused rather than read as something else.

    Written here rather than taken from dj-email-url (last release 2022): it reads
    `smtps` as STARTTLS, knows no `smtp+tls`, and silently ignores a scheme it does not know.
    """
    parts = urlsplit(url)
    if parts.scheme == "console":
        return {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}
    if parts.scheme not in SMTP_SCHEMES:
        raise ImproperlyConfigured(
            "EMAIL_URL must start with smtp://, smtp+tls://, smtps:// or console: "
            f"(got a URL starting with {parts.scheme or 'nothing'}:)."
        )
    tls, default_port = SMTP_SCHEMES[parts.scheme]
    try:
        port = parts.port or default_port
        timeout = float(parse_qs(parts.query).get("timeout", ["10"])[0])
    except ValueError:
        raise ImproperlyConfigured("EMAIL_URL has a malformed port or timeout.") from None
    if not parts.hostname:
        raise ImproperlyConfigured("EMAIL_URL names no host.")
    return {
        "EMAIL_BACKEND": SMTP_BACKEND,
        "EMAIL_HOST": parts.hostname,
        "EMAIL_PORT": port,
        "EMAIL_HOST_USER": unquote(parts.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(parts.password or ""),
        "EMAIL_USE_TLS": tls == "starttls",
        "EMAIL_USE_SSL": tls == "tls",
        # A stalled mail server must not hold a job worker (Django's default: forever).
        "EMAIL_TIMEOUT": timeout,
    }


# Not kept as a setting: it may carry the SMTP password, and Django's debug pages show
# every setting whose name does not look secret (EMAIL_HOST_PASSWORD does).
_email_url = os.environ.get("EMAIL_URL", "")
_email: dict[str, Any]
if _email_url:
    _email = email_url_settings(_email_url)
elif DEBUG:
    # make run: each message is a file in var/mail/ (git-ignored), nothing leaves the machine.
    _email = {
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(BASE_DIR / "var" / "mail"),
    }
else:
    raise ImproperlyConfigured(
        "EMAIL_URL is required unless DJANGO_DEBUG is on: owner e-mail is sent through it "
        "(smtp://user:pass@host:port, smtp+tls://..., smtps://... or console:)."
    )

EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email.get("EMAIL_HOST", "localhost")
EMAIL_PORT = _email.get("EMAIL_PORT", 25)
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = _email.get("EMAIL_TIMEOUT", 10.0)
EMAIL_FILE_PATH = _email.get("EMAIL_FILE_PATH", "")

LITHTRIX_EMAIL_FROM = os.environ.get("LITHTRIX_EMAIL_FROM", "Lithtrix <no-reply@localhost>")
# Owner e-mails per address per UTC day; key.leaked is never held back by it.
LITHTRIX_OWNER_EMAILS_PER_DAY = env_int("LITHTRIX_OWNER_EMAILS_PER_DAY", 10)

# Where unsubscribe links point (RFC 8058 asks for https): LITHTRIX_PUBLIC_URL when it is
# absolute. Mail that leaves the machine must carry a link that works, so an SMTP
# deployment without an https public URL fails at start; make run links to its own server.
if urlsplit(LITHTRIX_PUBLIC_URL).scheme in ("http", "https"):
    LITHTRIX_EMAIL_LINK_BASE = LITHTRIX_PUBLIC_URL.rstrip("/")
else:
    LITHTRIX_EMAIL_LINK_BASE = "http://127.0.0.1:8000"
if (
    EMAIL_BACKEND == SMTP_BACKEND
    and not DEBUG
    and not LITHTRIX_EMAIL_LINK_BASE.startswith("https:")
):
    raise ImproperlyConfigured(
        "LITHTRIX_PUBLIC_URL must be this deployment's https URL when EMAIL_URL sends by SMTP: "
        "every owner e-mail carries an unsubscribe link to it."
    )
