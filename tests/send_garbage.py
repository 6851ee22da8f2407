#!/usr/bin/env python3
"""Writes bytes that are not ZeroMQ at all (an HTTP request, random bytes, a
broken ZMTP greeting) to 127.0.0.1:PORT, one TCP connection each: the e2e
tests' check that a socket survives garbage."""
import os, socket, sys

for payload in (b"GET / HTTP/1.0\r\n\r\n", os.urandom(4096), b"\xff" + b"\x00" * 8 + b"\x7f" + os.urandom(64)):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
    try:
        s.sendall(payload)
    except OSError:
        pass
    s.close()
