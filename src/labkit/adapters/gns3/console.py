"""A GNS3 node's telnet console on stdin/stdout: what ``labkit console`` (and the bastion,
the portal's terminal) runs for a GNS3 node, as on netns and Proxmox.

``python -m labkit.adapters.gns3.console HOST PORT``: a plain TCP connection to the console;
the server's telnet commands (option offers, sub-negotiations) are dropped from what is shown
and not answered (GNS3's console server goes on in its default mode: it offers ECHO and SGA
and waits for nothing), 0xFF data bytes are sent doubled. When
stdin ends, the bridge waits for the console to be quiet (0.5 s, at most 5 s) so a piped
command's answer is not lost.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import time

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240


class TelnetFilter:
    """Strips telnet commands from the bytes received."""

    def __init__(self) -> None:
        self.state = 0  # 0 data, 1 after IAC, 2 after IAC+verb, 3 in SB, 4 in SB after IAC

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        for b in data:
            if self.state == 0:
                if b == IAC:
                    self.state = 1
                else:
                    out.append(b)
            elif self.state == 1:
                if b == IAC:
                    out.append(IAC)
                    self.state = 0
                elif b in (DO, DONT, WILL, WONT):
                    self.state = 2
                elif b == SB:
                    self.state = 3
                else:
                    self.state = 0
            elif self.state == 2:  # the option of DO/DONT/WILL/WONT
                self.state = 0
            elif self.state == 3:
                self.state = 4 if b == IAC else 3
            else:
                self.state = 0 if b == SE else 3
        return bytes(out)


def bridge(host: str, port: int, stdin_fd: int = 0, stdout_fd: int = 1, timeout: float = 10.0) -> int:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        sys.stderr.write(f"cannot open the console at {host}:{port} ({exc.strerror or exc}); check that the node "
                         "runs and that this host reaches the GNS3 server's console ports.\n")
        return 1
    sock.setblocking(True)
    filt = TelnetFilter()
    stdin_open = True
    quiet_since: float | None = None
    eof_at: float | None = None
    while True:
        fds = [sock] + ([stdin_fd] if stdin_open else [])
        ready, _, _ = select.select(fds, [], [], 0.1)
        now = time.monotonic()
        if sock in ready:
            data = sock.recv(65536)
            if not data:
                break
            text = filt.feed(data)
            if text:
                os.write(stdout_fd, text)
            quiet_since = now
        if stdin_open and stdin_fd in ready:
            data = os.read(stdin_fd, 65536)
            if not data:
                stdin_open = False
                eof_at = quiet_since = now
            else:
                sock.sendall(data.replace(b"\xff", b"\xff\xff"))
        if not stdin_open and eof_at is not None and quiet_since is not None:
            if now - quiet_since > 0.5 or now - eof_at > 5.0:
                break
    sock.close()
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        sys.stderr.write("usage: python -m labkit.adapters.gns3.console HOST PORT\n")
        return 2
    return bridge(argv[0], int(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
