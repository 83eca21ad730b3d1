#!/usr/bin/env python3
"""The seed's own chat clients, reduced to what they put on the wire (driven by tests/seed_clients.rs).

TCP, as the seed's client: one sock.send(data.encode()) per message with no newline, GAP seconds
apart, then "/quit" (no newline) followed at once by close() while the server's welcome is still
unread, which makes the kernel answer with a reset rather than a FIN.

UDP, as the seed's client: "#ping#" every PING seconds from a second thread, one datagram per
message with no newline, GAP seconds apart, then "/quit".

Info, as the seed's classroom client: connect to the desk's info port, one recv(), parse the JSON
description (the desk's fields at the top level), close.

Usage: seed_client.py tcp|udp HOST PORT GAP [PING] -- MESSAGE...
       seed_client.py info HOST PORT
GAP may be a comma-separated list: the pauses before the second message, the third, ... and
"/quit", the last one repeated (a user who types faster once the conversation is going).
Prints "sent N" after each message and, for TCP, "unread before close: yes|no" just before closing,
so the test can tell the reset path was taken.
"""

import json
import socket
import sys
import threading
import time


def log(text):
    print(text, flush=True)


def pause(gaps, i):
    """The pause before message i (from 1), or before "/quit" when i is the message count."""
    return gaps[min(i - 1, len(gaps) - 1)]


def tcp(host, port, gaps, messages):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.connect((host, port))
    for i, data in enumerate(messages):
        if i:
            time.sleep(pause(gaps, i))
        sock.send(data.encode())
        log(f"sent {i}")
    time.sleep(pause(gaps, max(len(messages), 1)))
    # Peek without consuming: the seed never reads, so the welcome should still be waiting.
    try:
        unread = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        unread = b""
    log("unread before close: " + ("yes" if unread else "no"))
    sock.send("/quit".encode())
    sock.close()


def udp(host, port, gap, ping, messages):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    log(f"bound {sock.getsockname()[0]}:{sock.getsockname()[1]}")
    stop = threading.Event()

    def heartbeat():
        while not stop.is_set():
            sock.sendto(b"#ping#", (host, port))
            stop.wait(ping)

    pinger = threading.Thread(target=heartbeat, daemon=True)
    pinger.start()
    # The first ping joins; give it a head start so the messages come from a member.
    time.sleep(gap)
    for i, data in enumerate(messages):
        if i:
            time.sleep(gap)
        sock.sendto(data.encode(), (host, port))
        log(f"sent {i}")
    time.sleep(gap)
    sock.sendto("/quit".encode(), (host, port))
    stop.set()
    pinger.join(timeout=5)
    sock.close()


def info(host, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect((host, port))
    data = sock.recv(65536)
    sock.close()
    desk = json.loads(data.decode())
    log("desk " + json.dumps(desk, sort_keys=True))


def main(argv):
    if len(argv) == 4 and argv[1] == "info":
        info(argv[2], int(argv[3]))
        return
    if "--" not in argv:
        sys.exit(__doc__)
    split = argv.index("--")
    head, messages = argv[1:split], argv[split + 1 :]
    mode, host, port = head[0], head[1], int(head[2])
    gaps = [float(g) for g in head[3].split(",")]
    if mode == "tcp":
        tcp(host, port, gaps, messages)
    elif mode == "udp":
        udp(host, port, gaps[0], float(head[4]), messages)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
