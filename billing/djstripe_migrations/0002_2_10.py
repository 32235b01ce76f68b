"""dj-stripe's own migration 0002_2_10, unchanged (imported from the installed dj-stripe).

Kept so that a database that applied only part of dj-stripe's chain can finish it;
a fresh database uses 0001_squashed_0003_2_11 instead (see __init__.py).
"""

import importlib

Migration = importlib.import_module("djstripe.migrations.0002_2_10").Migration
