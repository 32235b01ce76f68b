"""Metering and rate limits: tiers, lifetime caps, per-minute limits, /v1/authorize, usage."""
