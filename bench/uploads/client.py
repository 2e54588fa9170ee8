#!/usr/bin/env python3
"""Upload load for bench/uploads/run.sh: CLIENTS threads, each sending UPLOADS multipart bodies
of SIZE bytes (with Content-Length) one after another, all threads at once.

    python3 client.py --port P --clients 8 --uploads 4 --size 67108864 [--watch PID ...]

Each upload is `POST /v1/files` on a fresh connection, the way an SDK uploads a file: a
multipart/form-data body with a `purpose` field and a `file` part, an Authorization header.
The whole body is built once, before the clock starts, and every thread sends that same buffer
with sendall (no copy in Python). The answer is read in full and its status recorded.

--watch PIDs: sampled every 0.1 s during the load (VmRSS from /proc/PID/status, summed), so
the report can show RSS over time as well as the kernel's peak (VmHWM).

Prints one JSON object on stdout: bytes sent, wall seconds, statuses, per-upload seconds,
the client's own CPU seconds, and the RSS samples.
"""

import argparse
import json
import os
import resource
import socket
import threading
import time

BOUNDARY = "x"
AUTH = "Bearer sk_test_bench_not_a_real_key"


def build_body(size):
    """A multipart body of exactly `size` bytes: a purpose field, then one file part."""
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="purpose"\r\n\r\n'
        "dispute_evidence\r\n"
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="bench.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    payload = size - len(head) - len(tail)
    if payload < 0:
        raise SystemExit(f"--size {size} is smaller than the multipart framing")
    # Random-looking content (1 MiB of urandom repeated): nothing on the path compresses, but
    # the bytes are not all zero either.
    block = os.urandom(1 << 20)
    data = (block * (payload // len(block) + 1))[:payload]
    body = head + data + tail
    assert len(body) == size
    return body


def read_response(sock):
    """Reads one HTTP/1.1 response; returns its status code."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before the response head ({len(buf)} bytes)")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length is None:
        # Neither proxy nor the upstream answers chunked here; read to the close.
        while sock.recv(65536):
            pass
        return status
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status


def upload(port, path, body):
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Authorization: {AUTH}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(head)
        sock.sendall(memoryview(body))
        return read_response(sock)


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/v1/files")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--uploads", type=int, default=4, help="uploads per client, back to back")
    p.add_argument("--size", type=int, default=64 << 20)
    p.add_argument("--watch", type=int, nargs="*", default=[])
    args = p.parse_args()

    body = build_body(args.size)
    results = []  # (client, seconds, status or error)
    lock = threading.Lock()
    start = threading.Barrier(args.clients + 1)

    def client(i):
        start.wait()
        for _ in range(args.uploads):
            t0 = time.monotonic()
            try:
                outcome = upload(args.port, args.path, body)
            except OSError as e:
                outcome = f"error: {e}"
            with lock:
                results.append((i, time.monotonic() - t0, outcome))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    samples = []
    done = threading.Event()

    def sampler():
        while not done.is_set():
            samples.append(rss_kib(args.watch))
            done.wait(0.1)

    watcher = threading.Thread(target=sampler)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    if args.watch:
        watcher.start()
    start.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    done.set()
    if args.watch:
        watcher.join()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)

    statuses = {}
    for _, _, outcome in results:
        statuses[str(outcome)] = statuses.get(str(outcome), 0) + 1
    seconds = sorted(s for _, s, _ in results)
    ok = sum(1 for _, _, o in results if o == 200)
    print(
        json.dumps(
            {
                "clients": args.clients,
                "uploads_per_client": args.uploads,
                "upload_bytes": args.size,
                "uploads": len(results),
                "uploads_ok": ok,
                "bytes": ok * args.size,
                "wall_s": round(wall, 4),
                "statuses": statuses,
                "upload_s_min": round(seconds[0], 4) if seconds else None,
                "upload_s_p50": round(seconds[len(seconds) // 2], 4) if seconds else None,
                "upload_s_max": round(seconds[-1], 4) if seconds else None,
                "client_cpu_s": round(
                    cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime, 3
                ),
                "rss_samples_kib": samples,
            }
        )
    )


if __name__ == "__main__":
    main()
