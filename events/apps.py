from django.apps import AppConfig
from django.db.models.signals import post_migrate


class EventsConfig(AppConfig):
    name = "events"
    verbose_name = "Events"

    def ready(self) -> None:
        from events.jobs import periodic_jobs_sync

        # After django_q's own migrations too: post_migrate is sent once every app's
        # migrations have run.
        post_migrate.connect(periodic_jobs_sync, sender=self, dispatch_uid="periodic_jobs_sync")
