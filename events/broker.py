"""django-q2's ORM broker, riding out a database outage.

django-q2's pusher takes any exception from a poll as the broker's death: it logs
the traceback, sleeps 10 s and exits, for the cluster to start another, which does
the same while the database is down. Here a poll that cannot reach the database
(lithtrix.core.outages.is_connection_failure) is an empty queue: the outage is
logged once per LITHTRIX_OUTAGE_LOG_INTERVAL_SECONDS (lithtrix.core.outages,
"available again" when a connection opens), and the same pusher polls again after
OUTAGE_POLL_SECONDS. Any other error is django-q2's to log, in full. Q_CLUSTER's
"broker_class" names this class.
"""

from __future__ import annotations

import time

from django.db import InterfaceError, OperationalError
from django_q.brokers.orm import ORM

from lithtrix.core import outages

# Between polls while the database does not answer: each poll is a connection attempt.
OUTAGE_POLL_SECONDS = 2.0


class OutageTolerantORM(ORM):
    def dequeue(self):
        try:
            return super().dequeue()
        except (OperationalError, InterfaceError) as exc:
            if not outages.is_connection_failure(exc):
                raise  # a missing table, a refused password: django-q2 logs it in full
            # The broken connection is closed by the next poll's close_old_connections.
            outages.report_failure(
                "database", exc, action=f"jobs wait; polled again every {OUTAGE_POLL_SECONDS:g} s"
            )
            time.sleep(OUTAGE_POLL_SECONDS)
            return None
