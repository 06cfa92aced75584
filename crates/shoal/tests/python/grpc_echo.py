"""A real gRPC server and client (grpcio, unchanged) for the proxy's gRPC
test (tests/proxy_grpc.rs). No generated code: the methods take and give
raw bytes.

  grpc_echo.py serve ID              serve on 127.0.0.1:0, print "PORT n",
                                     run until stdin closes
  grpc_echo.py call ADDR AUTH N [CA] N unary calls and one bidirectional
                                     stream through ADDR with :authority
                                     AUTH (over TLS trusting CA if given);
                                     prints a JSON summary
  grpc_echo.py unavailable ADDR AUTH one call that must fail; prints its
                                     status code and details as JSON

Every call has a deadline, so nothing here waits for ever.
"""
import json
import sys
from concurrent import futures

import grpc

SAY = "/shoal.test.Echo/Say"
CHAT = "/shoal.test.Echo/Chat"
DEADLINE = 10.0


def serve(instance):
    ident = instance.encode()

    def say(request, context):
        context.set_trailing_metadata((("x-instance", instance),))
        return ident + b":" + request

    def chat(requests, context):
        for message in requests:
            yield ident + b":" + message

    handler = grpc.method_handlers_generic_handler(
        "shoal.test.Echo",
        {
            "Say": grpc.unary_unary_rpc_method_handler(say),
            "Chat": grpc.stream_stream_rpc_method_handler(chat),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    sys.stdin.read()
    server.stop(0)


def channel(addr, authority, ca=None):
    options = [("grpc.default_authority", authority)]
    if ca is None:
        return grpc.insecure_channel(addr, options=options)
    with open(ca, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    options.append(("grpc.ssl_target_name_override", authority))
    return grpc.secure_channel(addr, creds, options=options)


def call(addr, authority, n, ca=None):
    ch = channel(addr, authority, ca)
    say = ch.unary_unary(SAY)
    chat = ch.stream_stream(CHAT)
    counts = {}
    trailers_ok = True
    for i in range(n):
        reply, c = say.with_call(b"hi %d" % i, timeout=DEADLINE)
        instance, _, echoed = reply.partition(b":")
        assert echoed == b"hi %d" % i, reply
        instance = instance.decode()
        counts[instance] = counts.get(instance, 0) + 1
        trailers = dict(c.trailing_metadata() or ())
        trailers_ok &= trailers.get("x-instance") == instance
    sent = [b"one", b"two", b"three", b"four", b"five"]
    replies = list(chat(iter(sent), timeout=DEADLINE))
    chat_instances = sorted({r.partition(b":")[0].decode() for r in replies})
    echoed = [r.partition(b":")[2] for r in replies]
    print(json.dumps({
        "counts": counts,
        "trailers_ok": trailers_ok,
        "chat_echoed": echoed == sent,
        "chat_instances": chat_instances,
    }))
    ch.close()


def unavailable(addr, authority):
    ch = channel(addr, authority)
    try:
        ch.unary_unary(SAY)(b"anyone?", timeout=DEADLINE)
        print(json.dumps({"code": "OK"}))
    except grpc.RpcError as e:
        print(json.dumps({"code": e.code().name, "details": e.details()}))
    ch.close()


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "serve":
        serve(sys.argv[2])
    elif what == "call":
        call(sys.argv[2], sys.argv[3], int(sys.argv[4]), *sys.argv[5:6])
    elif what == "unavailable":
        unavailable(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {what}")
