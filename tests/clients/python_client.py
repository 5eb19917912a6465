"""python3-redis (Debian's) against the Redis server on the Unix socket given
as the first argument: its default connection (RESP2) and one with
client_name=, plain commands, a pipeline without a transaction, then close.
Exits 0 when every step gave what Redis gives, else prints one line per
difference and exits 1. Run it with Debian's /usr/bin/python3, which sees
Debian's python3-redis."""
import sys

import redis

failures = []


def expect(what, got, want):
    if got != want:
        failures.append(f"{what}: got {got!r}, want {want!r}")


def run(socket):
    client = redis.Redis(unix_socket_path=socket)
    expect("SET", client.set("py:k", b"v\x00\r\n1"), True)
    expect("GET", client.get("py:k"), b"v\x00\r\n1")
    expect("GET of a missing key", client.get("py:missing"), None)
    expect("PING", client.ping(), True)
    expect("INCR", client.incr("py:counter"), 1)
    expect("INCRBY", client.incrby("py:counter", 41), 42)
    expect("MSET", client.mset({"py:a": "1", "py:b": "2"}), True)
    expect("MGET", client.mget("py:a", "py:b", "py:missing"), [b"1", b"2", None])
    expect("EXISTS", client.exists("py:a", "py:missing"), 1)
    expect("DELETE", client.delete("py:a", "py:missing"), 1)
    info = client.info()
    expect("INFO's loading", info.get("loading"), 0)
    expect("INFO's redis_version", info.get("redis_version"), "7.0.15")

    pipe = client.pipeline(transaction=False)
    pipe.set("py:p", "1").incr("py:p").get("py:p")
    expect("pipeline", pipe.execute(), [True, 2, b"2"])
    client.close()

    named = redis.Redis(unix_socket_path=socket, client_name="kv-test")
    expect("CLIENT GETNAME", named.client_getname(), "kv-test")
    expect("CLIENT ID is a number", isinstance(named.client_id(), int), True)
    # The first client's connection may not be closed on the server's side yet: look for ours only.
    expect("CLIENT LIST names this client", "kv-test" in [c["name"] for c in named.client_list()], True)
    named.close()


try:
    run(sys.argv[1])
except Exception as error:  # the client's own error: the server answered something it could not take
    failures.append(f"python3-redis: {type(error).__name__}: {error}")
for failure in failures:
    print(failure, file=sys.stderr)
sys.exit(1 if failures else 0)
