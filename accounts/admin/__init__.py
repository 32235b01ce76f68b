"""The staff console's pages about agents, one module per page:

- agents.py   the agent list (usage, cap badges, refused calls) and the agent page
- actions.py  support actions on one agent (reissue key, revoke, set tier, reset usage)
- bulk.py     the same actions on agents ticked in the list
- events.py   the agent audit trail, and who acted on each row

Every support action calls the service the API uses (keys.services,
accounts.services), with the staff user as the audit row's actor. Viewing needs
only the view permission; each action needs its own permission (see Agent.Meta).
Pages stay fast on millions of agents: indexed filters and searches, no query per
row, and no full COUNT(*) (lithtrix.core.admin.LargeTableAdmin). The console may read
billing and keys; accounts' own models, services and selectors never read billing.
"""

from accounts.admin.agents import AgentAdmin
from accounts.admin.events import AgentEventAdmin

__all__ = ["AgentAdmin", "AgentEventAdmin"]
