#!/usr/bin/env python3
"""Makes each common signing mistake against a running rampnow-sandbox, from Python, and checks
that the refusal names it.

Usage: python3 diagnose.py URL CA_FILE API_KEY API_SECRET [OTHER_KEY OTHER_SECRET]

URL is the sandbox's base URL (https://127.0.0.1:PORT), CA_FILE its CA certificate (PEM,
`rampnow-sandbox --cert-out`), API_KEY and API_SECRET the credentials it accepts, and
OTHER_KEY/OTHER_SECRET another key it accepts (for the "another key's secret" mistake).
Standard library only. Exits 0 when every refusal names its mistake, 1 otherwise.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import ssl
import sys
import time
import urllib.parse

QUOTE_PATH = "/api/partner/v1/ext/ramp_order/quote"
PLAIN_MISMATCH = (
    "the signature does not match the request; sign timestamp + METHOD + path and query "
    "exactly as sent + the body bytes exactly as sent, with the API secret"
)


def main(argv):
    if len(argv) not in (5, 7):
        print(__doc__, file=sys.stderr)
        return 2
    url, ca_file, key, secret = argv[1:5]
    other = tuple(argv[5:7]) if len(argv) == 7 else None
    parsed = urllib.parse.urlsplit(url)
    context = ssl.create_default_context(cafile=ca_file)
    host = parsed.netloc

    def sign(message, with_secret=secret):
        if isinstance(message, str):
            message = message.encode()
        return hmac.new(with_secret.encode(), message, hashlib.sha256)

    def send(method, target, body, timestamp, signature, api_key=key):
        connection = http.client.HTTPSConnection(
            parsed.hostname, parsed.port, context=context, timeout=10
        )
        try:
            headers = {
                "RN-API-KEY": api_key,
                "RN-ACCESS-TIMESTAMP": timestamp,
                "RN-ACCESS-SIGN": signature,
                "Content-Type": "application/json",
            }
            connection.request(method, target, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    failures = []
    counter = [0]

    def check(name, status, answer, error, phrase):
        reason = answer.get("reason", "")
        if status == 401 and answer.get("error") == error and phrase in reason:
            print(f"ok   {name}: {reason}")
        else:
            print(f"FAIL {name}: {status} {answer}; expected {error} with {phrase!r}")
            failures.append(name)

    def fresh_target(extra=""):
        # A parameter that changes every request, so no two requests share a signature
        # (the sandbox refuses replays).
        counter[0] += 1
        return (
            f"{QUOTE_PATH}?srcCurrency=USD&dstCurrency=BTC&srcAmount=100"
            f"&n={counter[0]}{extra}"
        )

    def mistake(name, phrase, method="POST", target=None, body=b"", signed=None,
                signature=None, timestamp=None, error="signature_mismatch"):
        """Sends method/target/body; `signed(ts, method, target, body)` is what the client
        signed (a message), or `signature(ts, method, target, body)` the header it sent."""
        target = target or fresh_target()
        ts = timestamp or str(int(time.time()))
        if signature is None:
            message = signed(ts, method, target, body)
            signature_value = sign(message).hexdigest()
        else:
            signature_value = signature(ts, method, target, body)
        status, answer = send(method, target, body, ts, signature_value)
        check(name, status, answer, error, phrase)

    def right(ts, method, target, body):
        return ts.encode() + method.encode() + target.encode() + body

    payload = {"srcCurrency": "EUR", "dstCurrency": "ETH", "srcAmount": "100.0",
               "note": "caf\u00e9 \U0001F600", "n": 0}

    def body():
        counter[0] += 1
        payload["n"] = counter[0]
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()

    # The Rampnow docs' recipe: json.dumps on a string that is already JSON.
    b = body()
    mistake("body_double_encoded", "it matches the body JSON-encoded a second time (json.dumps "
            "on a string that is already JSON); sign the bytes you send", target=QUOTE_PATH,
            body=b, signed=lambda ts, m, t, _: (ts + m + t + json.dumps(b.decode())).encode())
    b = body()
    mistake("body_double_encoded_unicode", "ensure_ascii=False", target=QUOTE_PATH, body=b,
            signed=lambda ts, m, t, _: (ts + m + t + json.dumps(b.decode(), ensure_ascii=False)).encode())
    b = body()
    mistake("body_sent_double_encoded", "requests.post(url, json=text)", target=QUOTE_PATH,
            body=json.dumps(b.decode()).encode(),
            signed=lambda ts, m, t, _: ts.encode() + m.encode() + t.encode() + b)
    mistake("body_left_out", "with the body left out", target=QUOTE_PATH, body=body(),
            signed=lambda ts, m, t, _: ts + m + t)
    mistake("empty_body_signed_as_json", "{}, null or \"\" in place of the empty body",
            method="GET", signed=lambda ts, m, t, _: ts + m + t + "{}")
    mistake("body_trailing_newline", "trailing newline that was not sent", target=QUOTE_PATH,
            body=body(), signed=lambda ts, m, t, bd: right(ts, m, t, bd) + b"\n")
    b = body()
    mistake("body_newline_not_signed", "without the trailing newline it was sent with",
            target=QUOTE_PATH, body=b + b"\r\n",
            signed=lambda ts, m, t, _: right(ts, m, t, b))
    b = body()
    mistake("body_whitespace", "other JSON white space", target=QUOTE_PATH, body=b,
            signed=lambda ts, m, t, _: right(ts, m, t, json.dumps(json.loads(b), ensure_ascii=False).encode()))

    # The target.
    mistake("query_left_out", "the path without its query string", method="GET",
            signed=lambda ts, m, t, bd: right(ts, m, t.split("?")[0], bd))
    mistake("query_signed_decoded", "percent-decoded while it was sent encoded", method="GET",
            target=fresh_target("&email=" + urllib.parse.quote("a@b.com", safe="")),
            signed=lambda ts, m, t, bd: right(ts, m, urllib.parse.unquote(t), bd))
    raw = fresh_target("&email=a@b.com&at=12:30")
    mistake("query_signed_encoded", "percent-encoded while it was sent with those characters raw",
            method="GET", target=raw,
            signed=lambda ts, m, t, bd: right(ts, m, t.split("?")[0] + "?" + urllib.parse.urlencode(
                urllib.parse.parse_qsl(t.split("?")[1])), bd))
    mistake("query_space_encoding", "(+ vs %20)", method="GET",
            target=fresh_target("&note=" + urllib.parse.quote_plus("a b")),
            signed=lambda ts, m, t, bd: right(ts, m, t.replace("+", "%20"), bd))
    mistake("target_with_origin", "the URL with the scheme and host in front of the path",
            method="GET", signed=lambda ts, m, t, bd: right(ts, m, f"https://{host}{t}", bd))
    mistake("target_with_host", "the host in front of the path", method="GET",
            signed=lambda ts, m, t, bd: right(ts, m, f"{host}{t}", bd))
    mistake("method_lowercase", "the method in lower case", target=QUOTE_PATH, body=body(),
            signed=lambda ts, m, t, bd: right(ts, m.lower(), t, bd))
    mistake("method_lowercase+query_left_out",
            "it matches the method in lower case and the path without its query string",
            method="GET", signed=lambda ts, m, t, bd: right(ts, m.lower(), t.split("?")[0], bd))

    # The timestamp.
    ms = str(int(time.time() * 1000))
    mistake("timestamp_milliseconds", "the timestamp looks like milliseconds", method="GET",
            timestamp=ms, signed=right, error="stale_timestamp")
    mistake("signed_milliseconds", "the timestamp in milliseconds while the header holds seconds",
            method="GET", signed=lambda ts, m, t, bd: right(ts + "417", m, t, bd))

    # The secret.
    if other:
        mistake("other_key_secret", f"the secret of another API key ({other[0]})", method="GET",
                signature=lambda ts, m, t, bd: sign(right(ts, m, t, bd), other[1]).hexdigest())
    mistake("key_and_secret_swapped", "key and secret swapped", method="GET",
            signature=lambda ts, m, t, bd: sign(right(ts, m, t, bd), key).hexdigest())

    # The signature's encoding: refused before the body is read, as invalid_signature.
    mistake("signature_base64", "it is base64, not hex; send the 32 bytes as 64 hex digits; "
            "decoded, it matches the request", target=QUOTE_PATH, body=body(),
            error="invalid_signature",
            signature=lambda ts, m, t, bd: base64.b64encode(sign(right(ts, m, t, bd)).digest()).decode())
    mistake("signature_hex_prefix", "it has 0x in front of its hex digits", method="GET",
            error="invalid_signature",
            signature=lambda ts, m, t, bd: "0X" + base64.b16encode(sign(right(ts, m, t, bd)).digest()).decode())

    # Upper-case hex (the docs' base64.b16encode) is valid.
    target = fresh_target()
    ts = str(int(time.time()))
    status, answer = send("GET", target, b"", ts,
                          base64.b16encode(sign(right(ts, "GET", target, b"")).digest()).decode())
    if status == 200 and "quoteId" in answer:
        print("ok   upper-case hex verifies")
    else:
        print(f"FAIL upper-case hex: {status} {answer}")
        failures.append("upper_case_hex")

    # A random wrong signature: the plain reason, no diagnosis.
    status, answer = send("GET", fresh_target(), b"", str(int(time.time())), os.urandom(32).hex())
    if status == 401 and answer.get("reason") == PLAIN_MISMATCH:
        print("ok   a random signature gets the plain reason")
    else:
        print(f"FAIL random signature: {status} {answer}")
        failures.append("random_signature")

    if failures:
        print(f"{len(failures)} mistake(s) not named: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
