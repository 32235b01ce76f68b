"""A receiver for Lithtrix's agent webhooks, verified with the `standardwebhooks` library.

    pip install standardwebhooks==1.1.0
    WEBHOOK_SECRET=whsec_... python webhook_receiver.py 8765 [fail-first-N]

Prints one JSON line per verified delivery; answers 500 to the first N deliveries
(to watch the retries), 400 to a delivery whose signature does not verify. It
deduplicates by webhook-id, as every receiver should: delivery is at least once.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

webhook = Webhook(os.environ["WEBHOOK_SECRET"])
fail_first = int(sys.argv[2]) if len(sys.argv) > 2 else 0
seen: set[str] = set()
attempts = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        global attempts
        attempts += 1
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            payload = webhook.verify(body, dict(self.headers))
        except WebhookVerificationError as error:
            print(json.dumps({"rejected": str(error)}), flush=True)
            self.send_response(400)
            self.end_headers()
            return
        event_id = self.headers["webhook-id"]
        status = 500 if attempts <= fail_first else 200
        print(
            json.dumps(
                {
                    "attempt": attempts,
                    "answer": status,
                    "webhook-id": event_id,
                    "duplicate": event_id in seen,
                    "type": payload["type"],
                    "data": payload["data"],
                }
            ),
            flush=True,
        )
        if status == 200:
            seen.add(event_id)
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
