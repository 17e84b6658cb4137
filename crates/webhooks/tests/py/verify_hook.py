# A receiver built on the Standard Webhooks specification's own Python
# library (pip install standardwebhooks), not on this lesson's code. It
# answers one delivery: 204 if the library verifies it, 401 if not.
# Usage: python3 verify_hook.py PORT whsec_...
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks.webhooks import Webhook

port, secret = int(sys.argv[1]), sys.argv[2]


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            event = Webhook(secret).verify(body, dict(self.headers))
            print("verified by standardwebhooks:", self.headers["webhook-id"], event, flush=True)
            self.send_response(204)
        except Exception as e:
            print("REFUSED:", e, flush=True)
            self.send_response(401)
        self.end_headers()


HTTPServer(("127.0.0.1", port), Hook).handle_request()
