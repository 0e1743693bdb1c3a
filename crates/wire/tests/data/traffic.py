# Loopback traffic for test captures: a few short TCP conversations, deterministic payloads.
import socket, struct, sys, time

def pair(family, host):
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, 0))
    srv.listen(8)
    return srv

def conversation(family, host):
    srv = pair(family, host)
    cli = socket.create_connection(srv.getsockname()[:2])
    cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for part in [b"GET ", b"/index.html ", b"HTTP/1.0\r\n", b"\r\n"]:
        cli.send(part)
        time.sleep(0.01)
    got = b""
    while len(got) < 28:
        got += conn.recv(100)
    conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + bytes(range(256)) * 4)
    time.sleep(0.01)
    n = 0
    while n < 19 + 1024:
        n += len(cli.recv(4096))
    cli.shutdown(socket.SHUT_WR)
    assert conn.recv(10) == b""
    conn.close()
    cli.recv(10)
    cli.close()
    srv.close()

def refused(host):
    srv = pair(socket.AF_INET, host)
    port = srv.getsockname()[1]
    srv.close()
    try:
        socket.create_connection((host, port))
    except ConnectionRefusedError:
        pass

def reset_and_reuse(host):
    srv = pair(socket.AF_INET, host)
    cport = None
    for i in range(2):
        cli = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        cli.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        cli.bind((host, cport or 0))
        cport = cli.getsockname()[1]
        cli.connect(srv.getsockname())
        conn, _ = srv.accept()
        cli.send(b"ping %d" % i)
        time.sleep(0.01)
        conn.recv(10)
        # SO_LINGER 0: close sends RST, no TIME_WAIT, so the 4-tuple is free again.
        cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        cli.close()
        time.sleep(0.01)
        conn.close()
    srv.close()

what = sys.argv[1]
if what == "v4":
    conversation(socket.AF_INET, "127.0.0.1")
elif what == "v6":
    conversation(socket.AF_INET6, "::1")
elif what == "refused":
    refused("127.0.0.1")
elif what == "reset":
    reset_and_reuse("127.0.0.1")
elif what == "all":
    conversation(socket.AF_INET, "127.0.0.1")
    refused("127.0.0.1")
    reset_and_reuse("127.0.0.1")
    conversation(socket.AF_INET6, "::1")
