from django.dispatch import Signal

agent_deletion_requested = Signal()
"""Sent before an agent is deleted, outside any transaction; a receiver raising ApiError aborts the deletion."""  # noqa: E501
