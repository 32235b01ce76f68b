"""Jobs run by the django-q2 workers."""

from webhooks import services


def delivery_attempt(delivery_id: str) -> None:
    services.delivery_attempt(delivery_id=delivery_id)


def deliveries_resume() -> None:
    services.deliveries_resume()
