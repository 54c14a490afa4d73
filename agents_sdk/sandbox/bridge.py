"""Inside a sandbox with network access: a TCP listener on the sandbox's own loopback that
forwards to the egress proxy's Unix socket, so ordinary clients (``HTTPS_PROXY``) work.

It runs as the sandbox's first process, ``python3 -I -S -c <this file> PORT SOCKET -- ARGV``:
it forks the command, forwards connections until the command exits, then exits with the
command's status (128 + N for signal N). It only moves bytes; every decision is the proxy's,
outside the sandbox. It uses nothing but the standard library, because it runs with the
sandbox's system Python, not the agent's environment.
"""

import os
import selectors
import signal
import socket
import sys


def forward(port: int, socket_path: str, command: list[str]) -> int:
    listener = socket.create_server(("127.0.0.1", port))
    # SIGCHLD wakes the loop through this pipe, so the bridge exits as soon as the command does.
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    child = os.fork()
    if child == 0:
        listener.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    selector.register(wake_read, selectors.EVENT_READ, "wake")
    while True:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        for key, _ in selector.select():
            if key.data == "wake":
                os.read(wake_read, 512)
                continue
            if key.data is None:
                try:
                    client, _ = listener.accept()
                    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    upstream.connect(socket_path)
                except OSError:
                    continue
                for end, other in ((client, upstream), (upstream, client)):
                    end.setblocking(False)
                    selector.register(end, selectors.EVENT_READ, other)
                continue
            source, sink = key.fileobj, key.data
            assert isinstance(source, socket.socket) and isinstance(sink, socket.socket)
            try:
                chunk = source.recv(65536)
                if chunk:
                    sink.setblocking(True)
                    sink.sendall(chunk)
                    sink.setblocking(False)
                    continue
            except OSError:
                pass
            for end in (source, sink):
                try:
                    selector.unregister(end)
                except (KeyError, ValueError):
                    pass
                end.close()


if __name__ == "__main__":
    separator = sys.argv.index("--")
    sys.exit(forward(int(sys.argv[1]), sys.argv[2], sys.argv[separator + 1 :]))
