#!/usr/bin/env python3
"""A stand-in for perftest's ib_write_bw in tests (no RDMA device needed): the same command line, a TCP handshake on
-p as perftest's out-of-band exchange, perftest's "Couldn't connect" when no server listens, and a result row in
perftest's format with the figure the test gives per port (GF_IB_WRITE_BW_FIGURES: a JSON file {"<port>": gbits}, and "refuse": an address
where the client finds nobody)."""

import json
import os
import socket
import sys

WITH_VALUE = {"-d", "-x", "-s", "-n", "-p", "-D", "-i"}
RULE = "-" * 87


def report(device: str, size: int, iterations: int, gbits: float) -> str:
    mpps = gbits * 1000 / (size * 8)
    return "\n".join([
        RULE, "                    RDMA_Write BW Test",
        f" Dual-port       : OFF\t\tDevice         : {device}",
        " Number of qps   : 1\t\tTransport type : IB",
        " Connection type : RC\t\tUsing SRQ      : OFF",
        " TX depth        : 128", " CQ Moderation   : 1", " Mtu             : 1024[B]", " Link type       : Ethernet",
        RULE,
        " #bytes     #iterations    BW peak[Gb/sec]    BW average[Gb/sec]   MsgRate[Mpps]",
        f" {size:<7d}    {iterations:<10d}       {gbits * 1.1:<7.2f}            {gbits:<7.2f}\t\t   {mpps:<7.6f}",
        RULE, ""])


def main(argv: list[str]) -> int:
    options, positional, i = {}, [], 0
    while i < len(argv):
        if argv[i] in WITH_VALUE:
            options[argv[i]] = argv[i + 1]
            i += 2
        else:
            if not argv[i].startswith("-"):
                positional.append(argv[i])
            i += 1
    port = int(options.get("-p", 18515))
    figures = json.loads(open(os.environ["GF_IB_WRITE_BW_FIGURES"]).read())
    if positional:
        try:
            if positional[0] == figures.get("refuse"):      # the test's unreachable peer
                raise ConnectionRefusedError(positional[0])
            conn = socket.create_connection((positional[0], port), timeout=10)
        except OSError:
            print(f"Couldn't connect to {positional[0]}:{port}", file=sys.stderr)
            print("Unable to open file descriptor for socket connection Unable to init the socket connection", file=sys.stderr)
            return 1
    else:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("", port))
        server.listen(1)
        server.settimeout(30)
        conn, _ = server.accept()
    with conn:
        conn.sendall(b"x")
        conn.recv(1)
    print(report(options.get("-d", "rxe0"), int(options.get("-s", 65536)), int(options.get("-n", 5000)),
                 float(figures.get(str(port), 0.0))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
