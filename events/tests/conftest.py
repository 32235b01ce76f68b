import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.management.commands.support_group import support_group


@pytest.fixture
def support_client(db) -> Client:
    """A staff user of the support group (view rights only)."""
    user = get_user_model().objects.create_user(
        username="support-sam", password="support-pass", is_staff=True
    )
    user.groups.add(support_group())
    client = Client()
    client.force_login(user)
    return client
