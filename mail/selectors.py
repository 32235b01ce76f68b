from mail.models import EmailSuppression, address_digest


def is_unsubscribed(address: str) -> bool:
    """Whether ``address`` unsubscribed from owner e-mail (key.leaked still reaches it)."""
    return EmailSuppression.objects.filter(address_digest=address_digest(address)).exists()
