"""dj-stripe's migrations, owned by the project (settings: MIGRATION_MODULES).

dj-stripe 2.11 ships three migrations whose replay is slow: 0002_2_10 and
0003_2_11 remove 519 fields, and Django re-renders the migration state for each,
about 95 s of CPU on a fresh database. `0001_squashed_0003_2_11` creates the same
final schema directly (about 2 s, its operations applied at once: _operations.py) and
`replaces` dj-stripe's three, so:

- a fresh database applies only the squashed migration;
- a database that applied dj-stripe's 0001-0003 is treated as up to date
  (Django records the squashed migration as applied on the next migrate);
- a database part-way through dj-stripe's chain finishes it with 0001_initial,
  0002_2_10 and 0003_2_11 here, which are dj-stripe's own modules imported as is.

Upgrading dj-stripe means regenerating the squashed migration for its new final
schema (`make check`'s `makemigrations --check` fails until then); see README.
"""
