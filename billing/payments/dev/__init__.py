"""Development only: localstripe (a Stripe-compatible test server) for `make run`
and the tests. Never imported by the product."""
