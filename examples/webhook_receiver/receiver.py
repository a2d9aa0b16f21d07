"""A webhook receiver: checks each delivery's Standard Webhooks signature with the `standardwebhooks` library, then
prints the event. Answers 204 when the signature holds (Conveyor marks the delivery delivered), 401 when it does not
(Conveyor retries, with backoff, for a day).

    WEBHOOK_SECRET=whsec_... python receiver.py --port 8002

The secret is the one `POST /api/v1/webhooks` (or `conveyor webhooks add`) showed once, at creation. A receiver on
this machine is a loopback address: Conveyor refuses it unless CONVEYOR_WEBHOOK_ALLOW_PRIVATE=true.
"""

from __future__ import annotations

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

verifier = Webhook(os.environ["WEBHOOK_SECRET"])
seen: set[str] = set()  # deliveries are at least once: the same webhook-id may come again after a lost answer


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            event = verifier.verify(body, headers)  # the signature, and a timestamp within five minutes
        except WebhookVerificationError as exc:
            self._answer(401)
            print(f"refused: {exc}", flush=True)
            return
        self._answer(204)
        if headers["webhook-id"] in seen:
            return
        seen.add(headers["webhook-id"])
        data = event["data"]
        print(f"{event['type']} {data.get('id')} {data.get('status')} {json.dumps(data.get('result'))}", flush=True)

    def do_GET(self) -> None:
        self._answer(200 if self.path == "/healthz" else 404)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8002)
    port = parser.parse_args().port
    print(f"listening on http://127.0.0.1:{port}/", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Receiver).serve_forever()
