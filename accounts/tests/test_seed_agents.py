"""manage.py seed_agents: fake agents for measuring the admin at scale."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db.models import Count

from accounts.models import Agent
from billing.models import DailyUsage
from keys.models import ApiKey


@pytest.mark.django_db
def test_seed_agents_inserts_agents_with_one_key_each_in_batches(settings):
    out = io.StringIO()
    call_command("seed_agents", 45, batch_size=20, stdout=out)

    assert "Inserted 45 agents" in out.getvalue()

    agents = Agent.objects.all()
    assert agents.count() == 45
    assert all(a.agent_name.startswith("seed-") for a in agents)
    assert agents.filter(tier="pro").count() == 2  # every 20th
    assert len({a.created_at for a in agents}) > 1  # spread over time, not all "now"
    per_agent = ApiKey.objects.values("agent").annotate(n=Count("id"))
    assert sorted(row["n"] for row in per_agent) == [1] * 45
    assert all(len(k.prefix) == 12 and k.prefix.startswith("ltx_") for k in ApiKey.objects.all())
    assert not DailyUsage.objects.filter(agent__calls_total=0).exists()
    # Usage stays within the 3x-the-limit shape the admin benchmark expects.
    assert max(a.calls_total for a in agents) < 3 * settings.LITHTRIX_FREE_CALL_LIMIT


@pytest.mark.django_db
def test_seed_agents_twice_does_not_collide():
    call_command("seed_agents", 5, stdout=io.StringIO())
    call_command("seed_agents", 5, stdout=io.StringIO())

    assert Agent.objects.count() == 10
