"""Settings for creating the drills' throwaway database only (never for serving).

dj-stripe's 60-odd migrations spend ~95 s of CPU rendering model states; the drills'
database is created from the models instead (``migrate --run-syncdb``), in seconds.
The project's own apps still run their migrations. The servers under drill run
with lithtrix.settings, as in production.
"""

from lithtrix.settings import *  # noqa: F403

# None: the app has no migrations (documented); django-stubs types the values as str.
MIGRATION_MODULES = {"djstripe": None}  # type: ignore[dict-item]
