#!/usr/bin/env python3
"""Opens N real, idle PostgreSQL client sessions against a proxy and reports its RSS.

Each connection completes StartupMessage and password authentication (md5 or cleartext; SCRAM
is deliberately not offered: 10,000 PBKDF2 runs would measure this script, not the proxy) and
reads up to the first ReadyForQuery, so every session is a real authenticated idle client.

  idle_clients.py --port P --user U --password W --database D --count 10000 --pid PID

Prints one JSON object: rss_before_kib, rss_after_kib, per_client_bytes, connected, failed,
seconds. Connections are held for --hold seconds after the last one is ready, then closed.
"""

import argparse
import asyncio
import hashlib
import json
import struct
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def startup(user, database):
    body = struct.pack("!i", 196608)
    for k, v in (("user", user), ("database", database), ("application_name", "idle")):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


def password_message(payload):
    return b"p" + struct.pack("!i", len(payload) + 4) + payload


async def read_msg(reader):
    hdr = await reader.readexactly(5)
    tag = hdr[:1]
    (length,) = struct.unpack("!i", hdr[1:])
    body = await reader.readexactly(length - 4)
    return tag, body


async def one(host, port, user, password, database, held, gate, timeout):
    async with gate:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.write(startup(user, database))
        await writer.drain()
        while True:
            tag, body = await asyncio.wait_for(read_msg(reader), timeout)
            if tag == b"R":
                (code,) = struct.unpack("!i", body[:4])
                if code == 0:
                    continue
                if code == 5:  # md5
                    salt = body[4:8]
                    inner = hashlib.md5(password.encode() + user.encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + salt).hexdigest()
                    writer.write(password_message(b"md5" + outer.encode() + b"\0"))
                elif code == 3:  # cleartext
                    writer.write(password_message(password.encode() + b"\0"))
                else:
                    raise RuntimeError(f"unsupported authentication request {code}")
                await writer.drain()
            elif tag == b"E":
                raise RuntimeError(body.decode(errors="replace"))
            elif tag == b"Z":
                held.append(writer)
                return reader
            # S (ParameterStatus), K (BackendKeyData), N: ignore


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--database", required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--pid", type=int, required=True, help="process whose VmRSS is reported")
    ap.add_argument("--concurrency", type=int, default=200, help="handshakes in flight")
    ap.add_argument("--hold", type=float, default=3.0)
    ap.add_argument("--timeout", type=float, default=60.0)
    a = ap.parse_args()

    before = rss_kib(a.pid)
    held, readers = [], []
    gate = asyncio.Semaphore(a.concurrency)
    start = time.monotonic()
    results = await asyncio.gather(
        *(one(a.host, a.port, a.user, a.password, a.database, held, gate, a.timeout) for _ in range(a.count)),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    readers = [r for r in results if not isinstance(r, BaseException)]
    elapsed = time.monotonic() - start
    await asyncio.sleep(a.hold)  # let the proxy settle with every session idle
    after = rss_kib(a.pid)
    out = {
        "count": a.count,
        "connected": len(held),
        "failed": len(errors),
        "first_error": repr(errors[0]) if errors else None,
        "seconds_to_connect": round(elapsed, 2),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "per_client_bytes": round((after - before) * 1024 / max(1, len(held))),
    }
    for w in held:
        w.close()
    del readers
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
