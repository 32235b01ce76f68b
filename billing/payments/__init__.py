"""Payments: the Stripe client, Free -> Pro setup, webhooks."""
