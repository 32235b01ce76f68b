"""Settings for the test suite: the real settings plus a test-only secret key."""

import os

os.environ.setdefault(
    "DJANGO_SECRET_KEY", "test-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
)

# pytest is one process (live_server threads included): the local cache is fine
# when REDIS_URL is not set.
os.environ.setdefault("LITHTRIX_SINGLE_PROCESS", "on")
# Required outside debug; pytest-django swaps in its in-memory outbox, and tests of
# real delivery point Django at their own SMTP server.
os.environ.setdefault("EMAIL_URL", "console:")

from lithtrix.settings import *  # noqa: F403

# Staff users are created in tests; a fast hasher keeps that cheap.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# SQLite: a test database in a file rather than in memory, so live_server threads
# (and server subprocesses) use their own connections to it, as the dev server does.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    import hashlib
    import tempfile

    _worktree = hashlib.sha256(str(BASE_DIR).encode()).hexdigest()[:12]  # noqa: F405
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(tempfile.gettempdir(), f"lithtrix-test-{_worktree}.sqlite3")
    }
