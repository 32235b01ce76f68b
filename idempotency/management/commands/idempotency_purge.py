from django.core.management.base import BaseCommand

from idempotency.services import idempotency_purge


class Command(BaseCommand):
    help = "Delete Idempotency-Key records past their expiry now (a periodic job does it hourly)."

    def handle(self, *args, **options) -> None:
        deleted = idempotency_purge()
        self.stdout.write(f"Deleted {deleted} expired idempotency record(s).")
