"""Settings for the test suite: the real settings plus a test-only secret key."""

import os

os.environ.setdefault(
    "DJANGO_SECRET_KEY", "test-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
)

from lithtrix.settings import *  # noqa: F403

# Staff users are created in tests; a fast hasher keeps that cheap.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
