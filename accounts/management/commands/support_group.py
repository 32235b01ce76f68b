"""Create or refresh the "support" group: view everything in the admin, run no action.

Idempotent; re-run it after installing an app (dj-stripe) to extend the view rights.
``--add USERNAME`` also puts a user in the group and marks them staff.
"""

from __future__ import annotations

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

SUPPORT_GROUP = "support"
# Apps whose every model support staff may view. dj-stripe is added when installed.
VIEWABLE_APPS = ("accounts", "keys", "billing", "events", "mail", "djstripe")


def support_group() -> Group:
    """The support group with exactly the view permissions of VIEWABLE_APPS."""
    app_labels = [label for label in VIEWABLE_APPS if apps.is_installed(label)]
    for label in app_labels:
        # Permissions are made after migrate; make sure they exist when run earlier.
        create_permissions(apps.get_app_config(label), verbosity=0)
    group, _ = Group.objects.get_or_create(name=SUPPORT_GROUP)
    group.permissions.set(
        Permission.objects.filter(
            content_type__app_label__in=app_labels, codename__startswith="view_"
        )
    )
    return group


class Command(BaseCommand):
    help = 'Create or refresh the "support" group (view-only admin access).'

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--add",
            metavar="USERNAME",
            action="append",
            default=[],
            help="put this user in the group and make them staff (repeatable)",
        )

    @transaction.atomic
    def handle(self, *args, add: list[str], **options) -> None:
        group = support_group()
        self.stdout.write(f'Group "{group.name}": {group.permissions.count()} view permissions.')
        User = get_user_model()
        for username in add:
            try:
                user = User.objects.get(**{User.USERNAME_FIELD: username})
            except User.DoesNotExist:
                raise CommandError(f"No user {username!r}; create it first.") from None
            user.is_staff = True
            user.save(update_fields=["is_staff"])
            user.groups.add(group)
            self.stdout.write(f"{username} is staff and in the support group.")
