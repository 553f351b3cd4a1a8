"""The two host-side ends of a direct copy (provision/direct_copy.py): a one-shot sender on
the host that holds the copy and a receiver on the host that wants it, both stdlib python3
(which every host has: the facts script runs on it).

Why these are programs and not `nc`: the sender must take exactly one connection, only from
the peer this machine names, only with the one-time token this machine gave both ends on
their SSH stdin (never argv, never a file), and must give up on its own within seconds when
nobody comes; no netcat on Ubuntu 22.04 does all that. Python only shakes hands: the tar
stream goes from `tar -c`'s stdout straight into the socket; the receiver copies the socket
into `tar -x` counting bytes, so it can print progress and notice a stalled stream.

Both print their protocol lines after MARK and exit with NO_PATH when the direct path cannot
be had (nobody connected, a wrong token or peer, no route, a stalled stream): this machine
then copies through its own SSH connections instead (provision/relay.py).
"""

from __future__ import annotations

from provision import shell

MARK = "provision-direct:"
NO_PATH = 75  # EX_TEMPFAIL: no direct path; the relay takes over
ACCEPT_S = 20  # the sender waits this long for its one connection, then gives up
CONNECT_S = 4  # the receiver's limit for each address it tries
STALL_S = 60  # no byte for this long: the stream is gone
PROGRESS_S = 10
OK = b"provision-direct-ok\n"

_COMMON = r'''
import hmac, os, select, socket, subprocess, sys, time
MARK = %(mark)r
def fail(why, code=%(no_path)d):
    print(MARK, "no-path", why, file=sys.stderr, flush=True)
    sys.exit(code)
def line(deadline):
    got = b""
    while not got.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([0], [], [], left)[0]:
            fail("no word from the control machine in time")
        byte = os.read(0, 1)
        if not byte:
            fail("the control machine hung up")
        got += byte
    return got.decode("ascii", "replace").split()
def plain(address):
    return address[7:] if address.startswith("::ffff:") else address
'''

# argv: ACCEPT_S then the tar command. stdin: "TOKEN TARGET-ADDRESS", later "PEER-ADDR PORT".
SENDER = (_COMMON + r'''
deadline = time.monotonic() + float(sys.argv[1])
first = line(deadline)
token, target = (first + ["-"])[:2]
try:
    server = socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True)
except (OSError, ValueError):
    server = socket.create_server(("0.0.0.0", 0))
try:
    kind = socket.getaddrinfo(target, 9, type=socket.SOCK_DGRAM)[0]
    with socket.socket(kind[0], socket.SOCK_DGRAM) as probe:
        probe.connect(kind[4])
        own = plain(probe.getsockname()[0])
except (OSError, UnicodeError):
    own = "-"
print(MARK, "listen", server.getsockname()[1], own, flush=True)
peer = line(deadline)
if len(peer) != 2:
    fail("no peer named")
left = deadline - time.monotonic()
if left <= 0:
    fail("nobody connected in time")
server.settimeout(left)
try:
    conn, came = server.accept()
except OSError:
    fail("nobody connected in time")
server.close()
came = (plain(came[0]), str(came[1]))
if came != tuple(peer):
    fail("refused a connection from %%s port %%s: not the target" %% came)
conn.settimeout(5)
got = b""
try:
    while len(got) < len(token) + 1 and not got.endswith(b"\n"):
        chunk = conn.recv(len(token) + 1 - len(got))
        if not chunk:
            break
        got += chunk
except OSError:
    pass
if not hmac.compare_digest(got, (token + "\n").encode()):
    fail("refused a connection from %%s port %%s: wrong token" %% came)
conn.settimeout(None)
conn.sendall(%(ok)r)
print(MARK, "sending to", came[0], file=sys.stderr, flush=True)
rc = subprocess.call(sys.argv[3:], stdout=conn.fileno())
conn.shutdown(socket.SHUT_WR)
conn.close()
sys.exit(rc)
''') % {"mark": MARK, "no_path": NO_PATH, "ok": OK}

# argv: CONNECT_S STALL_S PROGRESS_S then the tar command. stdin: "TOKEN PORT ADDRESS...".
RECEIVER = (_COMMON + r'''
words = line(time.monotonic() + 30)
token, port, addresses = words[0], int(words[1]), words[2:]
conn, tried = None, []
for address in addresses:
    try:
        conn = socket.create_connection((address, port), timeout=float(sys.argv[1]))
        break
    except OSError as exc:
        tried.append("%%s: %%s" %% (address, exc.strerror or exc))
if conn is None:
    fail("could not reach the source (%%s)" %% "; ".join(tried))
own = conn.getsockname()
print(MARK, "from", plain(own[0]), own[1], flush=True)
conn.sendall((token + "\n").encode())
conn.settimeout(%(accept)d + 10)
got = b""
try:
    while len(got) < len(%(ok)r):
        chunk = conn.recv(len(%(ok)r) - len(got))
        if not chunk:
            break
        got += chunk
except OSError:
    pass
if got != %(ok)r:
    fail("the source refused this connection")
conn.settimeout(float(sys.argv[2]))
tar = subprocess.Popen(sys.argv[5:], stdin=subprocess.PIPE)
buf, total, shown = bytearray(1 << 20), 0, time.monotonic()
try:
    while True:
        n = conn.recv_into(buf)
        if not n:
            break
        tar.stdin.write(memoryview(buf)[:n])
        total += n
        if time.monotonic() - shown >= float(sys.argv[3]):
            print(MARK, "got", total, flush=True)
            shown = time.monotonic()
except socket.timeout:
    tar.kill()
    fail("the stream stalled after %%d bytes" %% total)
except (OSError, BrokenPipeError) as exc:
    tar.kill()
    tar.wait()
    print(MARK, "broken after", total, "bytes:", exc, file=sys.stderr, flush=True)
    sys.exit(1)
tar.stdin.close()
print(MARK, "got", total, flush=True)
sys.exit(tar.wait())
''') % {"mark": MARK, "no_path": NO_PATH, "ok": OK, "accept": ACCEPT_S}


def send_prefix(python: str = "python3") -> str:
    """What goes before the source's `tar -c ...` so its stream leaves through the one
    connection the sender accepts instead of stdout."""
    return shell.cmd(python, "-c", SENDER, ACCEPT_S, "--") + " "


def receive_prefix(python: str = "python3") -> str:
    """What goes before the target's `tar -x ...` so it reads from the source's sender."""
    return shell.cmd(python, "-c", RECEIVER, CONNECT_S, STALL_S, PROGRESS_S, "--") + " "
