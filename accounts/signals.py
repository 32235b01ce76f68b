"""Sent before an agent is deleted, outside any transaction; a receiver raising
ApiError aborts the deletion."""

import django.dispatch

agent_deletion_requested = django.dispatch.Signal()
