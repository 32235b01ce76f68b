"""A paginator for admin changelists over tables with millions of rows.

Django's changelist counts the (filtered) rows on every page view for its page
links. On PostgreSQL a full COUNT(*) reads the whole table, so:

- unfiltered: the planner's row estimate (pg_class.reltuples, kept fresh by
  autovacuum), once the table is large enough for an estimate to be the honest answer;
- filtered or searched: the count stops at ``COUNT_CAP`` + 1 rows
  (SELECT COUNT(*) FROM (... LIMIT n)), so pages past the cap are not linked.

The pagination template says "about N" / "more than N" when either applies.
Either way pages stop at ``COUNT_CAP`` rows: OFFSET 999,950 would read a million
index entries, and nobody pages that far instead of filtering or searching.
"""

from __future__ import annotations

import math

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property


class LargeTablePaginator(Paginator):
    COUNT_CAP = 10_000
    ESTIMATE_ABOVE = 100_000  # smaller tables are counted exactly

    count_is_estimate = False
    count_is_capped = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return len(queryset)
        if not queryset.query.where:
            estimate = _estimated_rows(queryset.db, queryset.model._meta.db_table)
            if estimate is not None and estimate > self.ESTIMATE_ABOVE:
                self.count_is_estimate = True
                return estimate
        # Without ORDER BY the planner may stop at the first COUNT_CAP rows of any index.
        count = queryset.order_by().values("pk")[: self.COUNT_CAP + 1].count()
        if count > self.COUNT_CAP:
            self.count_is_capped = True
            return self.COUNT_CAP
        return count

    @cached_property
    def num_pages(self) -> int:
        return min(super().num_pages, max(1, math.ceil(self.COUNT_CAP / self.per_page)))


def _estimated_rows(alias: str, table: str) -> int | None:
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
        row = cursor.fetchone()
    # -1 (PostgreSQL 14+) or 0: never analysed yet.
    return int(row[0]) if row and row[0] > 0 else None
