"""Test, fuzz and benchmark infrastructure: loopback servers (gunicorn, nginx)
and shared assertions. Never imported by the product."""
