"""Run localstripe (a Stripe-compatible test server) on loopback with fresh state.

localstripe's own CLI binds every interface (``::``) and loads, then rewrites on
every change, a pickle shared by all its instances (/tmp/localstripe.pickle).
This runs the same aiohttp application on 127.0.0.1 only, with its state in
memory only: each start is what ``--from-scratch`` gives, and concurrent instances
(tests, several checkouts) never see each other's data.

    python -m billing.payments.dev.localstripe_server [--host 127.0.0.1] [--port 0]

Port 0 picks a free port. The first line on stdout is
``localstripe listening on http://HOST:PORT``.

It also answers a few requests the way Stripe does, where localstripe differs and
stripe-python or dj-stripe depend on it (see ``_stripe_compatibility``): a
subscription item's ``price`` (localstripe knows only Plans; Stripe accepts a
plan id wherever a price id goes), the ``subscription`` field of subscription
items, and ``expand`` paths for fields localstripe does not model (dj-stripe
asks for ``discounts``), which are left unexpanded instead of failing.
"""

from __future__ import annotations

import argparse
import logging
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    from aiohttp import web
    from localstripe import resources

    # In-memory state only (see the module docstring).
    resources.Store.dump_to_disk = lambda self: None
    resources.Store.try_load_from_disk = lambda self: None
    _stripe_compatibility(resources)

    from localstripe.server import app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    host, port = sock.getsockname()[:2]
    print(f"localstripe listening on http://{host}:{port}", flush=True)

    logging.basicConfig(level=logging.WARNING)
    web.run_app(app, sock=sock, print=None, access_log=None, handle_signals=True)


def _stripe_compatibility(resources: Any) -> None:
    """Patch localstripe's resources where its answers differ from Stripe's (docstring).

    localstripe has no type hints: its objects are Any here.
    """

    def prices_as_plans(items: Any) -> Any:
        for item in items or []:
            if isinstance(item, dict) and "price" in item and not item.get("plan"):
                item["plan"] = item.pop("price")
        return items

    subscription_init = resources.Subscription.__init__

    def subscription_init_with_prices(
        self: Any, *args: Any, items: Any = None, **kwargs: Any
    ) -> None:
        subscription_init(self, *args, items=prices_as_plans(items), **kwargs)
        if self.default_tax_rates is None:
            self.default_tax_rates = []  # Stripe's answer: a list, never null

    resources.Subscription.__init__ = subscription_init_with_prices

    subscription_update = resources.Subscription._update

    def subscription_update_with_prices(
        self: Any, *args: Any, items: Any = None, **kwargs: Any
    ) -> Any:
        return subscription_update(self, *args, items=prices_as_plans(items), **kwargs)

    resources.Subscription._update = subscription_update_with_prices

    item_init = resources.SubscriptionItem.__init__

    def item_init_with_subscription(
        self: Any, *args: Any, subscription: Any = None, **kwargs: Any
    ) -> None:
        item_init(self, *args, subscription=subscription, **kwargs)
        self.subscription = subscription  # Stripe names its subscription on every item

    resources.SubscriptionItem.__init__ = item_init_with_subscription

    from localstripe.errors import UserError

    export = resources.StripeObject._export

    def export_known_expands(self: Any, expand: Any = None) -> Any:
        if expand and isinstance(expand, list):
            known = []
            for path in expand:
                try:
                    export(self, expand=[path])
                except UserError:
                    continue  # a field localstripe does not model: left as it is
                known.append(path)
            expand = known
        return export(self, expand=expand)

    resources.StripeObject._export = export_known_expands


def start_subprocess(*, timeout: float = 15.0) -> tuple[subprocess.Popen, str]:
    """Start the server in a child process; returns it and its base URL once it answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "billing.payments.dev.localstripe_server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("localstripe listening on "):
        process.kill()
        raise RuntimeError(f"localstripe did not start: {line!r}")
    url = line.rsplit(" ", 1)[1]
    deadline = time.monotonic() + timeout
    while True:
        try:
            # Any HTTP answer (401 without a key) means it is serving.
            urllib.request.urlopen(f"{url}/v1/customers", timeout=1)  # noqa: S310 - loopback
        except urllib.error.HTTPError:
            return process, url
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("localstripe did not answer") from None
            time.sleep(0.05)
        else:
            return process, url


def stop_subprocess(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    main()
