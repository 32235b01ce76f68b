"""The admin helpers every app's pages share: generic, no app imported."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest

from lithtrix.core.paginators import LargeTablePaginator
from lithtrix.core.replica import replica_alias

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# Most rows one bulk action may change: each is one service call and one audit row.
BULK_LIMIT = 100


def staff_user(request: HttpRequest) -> User:
    """The signed-in staff user of an admin page (admin_view already sent anyone else
    to the login page): the actor the services record on their audit rows."""
    # Imported here: INSTALLED_APPS loads this module before the models are ready.
    from django.contrib.auth.models import User

    user = request.user
    if not isinstance(user, User):
        raise PermissionDenied
    return user


def parse_uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except ValueError:
        return None


def search_by_agent_id(queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
    """Audit and usage tables are searched by exact agent id: an indexed equality."""
    if not search_term.strip():
        return queryset, False
    agent_id = parse_uuid(search_term)
    return (queryset.filter(agent_id=agent_id) if agent_id else queryset.none()), False


class PlainTitlesAdmin(admin.ModelAdmin):
    """Page titles that name the thing: "Agents", "Agent my-agent".

    Django's say "Select agent to view" and "View agent"; support reads the
    former as an instruction and the latter tells nothing.
    """

    def changelist_view(self, request, extra_context=None):
        title = {"title": str(self.opts.verbose_name_plural).capitalize()}
        return super().changelist_view(request, {**title, **(extra_context or {})})

    def change_view(self, request, object_id, form_url="", extra_context=None):
        context = dict(extra_context or {})
        if "title" not in context:
            obj = self.get_object(request, unquote(object_id))
            if obj is not None:
                context.update(self.object_titles(obj))
        return super().change_view(request, object_id, form_url, extra_context=context)

    def object_titles(self, obj: Any) -> dict[str, str | None]:
        """The change page's title, and its subtitle (None: no subtitle)."""
        return {"title": f"{str(self.opts.verbose_name).capitalize()} {obj}", "subtitle": None}


class ReadOnlyAdminMixin:
    """Pages to look at, never to edit: no add, change or delete, for anyone."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class LargeTableChangeList(ChangeList):
    def get_queryset(self, request, exclude_parameters=None):
        queryset = super().get_queryset(request, exclude_parameters)
        # A page of a list may lag the primary by the replica's lag; an action (POST)
        # reads the rows it changes from the primary.
        if request.method in ("GET", "HEAD"):
            queryset = queryset.using(replica_alias())
        return queryset

    def get_ordering_field(self, field_name):
        # Headers outside sortable_by have no link, but ?o= could still name them;
        # an ordering no index serves would sort the whole table.
        if field_name not in (self.sortable_by or ()):
            return None
        return super().get_ordering_field(field_name)

    def get_ordering(self, request, queryset):
        ordering = super().get_ordering(request, queryset)
        if ordering in (["-pk"], ["pk"]) and self.model_admin.get_ordering(request):
            # ?o= named nothing sortable: the default ordering, not the primary key's.
            ordering = [*self.model_admin.get_ordering(request), "-pk"]
        # Django breaks ties with "-pk" whatever the direction; going the first
        # column's way instead lets one (column, id) index serve both directions,
        # where "calls_total ASC, id DESC" would sort every agent with 0 calls.
        if (
            len(ordering) > 1
            and ordering[-1] == "-pk"
            and isinstance(ordering[0], str)
            and not ordering[0].startswith("-")
        ):
            ordering[-1] = "pk"
        return ordering


class LargeTableAdmin(ReadOnlyAdminMixin, PlainTitlesAdmin):
    """Read-only by default; no full-table count or sort on any page view."""

    paginator = LargeTablePaginator
    show_full_result_count = False
    # Facet counts would COUNT(*) every filter choice over the whole table.
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50

    def get_changelist(self, request, **kwargs):
        return LargeTableChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The changelist adds get_ordering() itself, unless a column was clicked; left
        # on the queryset it would trail the clicked column and defeat its index.
        return super().get_queryset(request).order_by()
