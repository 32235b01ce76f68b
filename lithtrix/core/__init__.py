"""The base every app builds on: errors, responses, request ids, probes, outages,
HTTP and database helpers, rate limits. It imports no app (make check holds it to
that)."""
