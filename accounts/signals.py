"""What accounts tells the apps that react to it (billing), without importing them.

- ``agent_deletion_requested(agent)``: before an agent is deleted, outside any
  transaction; a receiver raising ApiError aborts the deletion.
- ``agent_deleted(agent, stripe_customer_id)``: inside the deletion's transaction,
  with the customer link as the locked row has it then; a receiver records what
  must follow in that same transaction.
"""

import django.dispatch

agent_deletion_requested = django.dispatch.Signal()
agent_deleted = django.dispatch.Signal()
