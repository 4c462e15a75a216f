"""The alert-history application's command profile, replayed with password-only AUTH (as go-redis v9 sends
it with REDIS_ADDR + REDIS_PASSWORD) against the local stack's pod on Valkey 8.1, Valkey 9.1 and Redis 7.0.

Every command the application uses must succeed, including a WATCH/MULTI/EXEC conflict and both Lua lock
scripts; the dangerous commands are refused; afterwards the server's ACL LOG holds no other refusal.
"""

from __future__ import annotations

import socket

import pytest

from helpers.app_profile import replay_application_profile

pytestmark = pytest.mark.integration

def resp(*parts: str) -> bytes:
    out = f"*{len(parts)}\r\n".encode()
    for p in parts:
        out += f"${len(p.encode())}\r\n{p}\r\n".encode()
    return out


def go_redis_handshake(sock: socket.socket, password: str) -> bytes:
    """The first bytes go-redis v9 sends: HELLO 3 AUTH default <password> SETNAME <name>, then CLIENT SETINFO
    twice (pipelined; go-redis ignores their errors), then the application's first PING."""
    sock.sendall(resp("HELLO", "3", "AUTH", "default", password, "SETNAME", "alert-history")
                 + resp("CLIENT", "SETINFO", "LIB-NAME", "go-redis(,go1.22)")
                 + resp("CLIENT", "SETINFO", "LIB-VER", "9.5.1")
                 + resp("PING"))
    data = b""
    while not data.endswith(b"+PONG\r\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture(scope="module")
def server(stack_per_engine):
    return stack_per_engine


def test_go_redis_connection_handshake(server):
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        reply = go_redis_handshake(sock, server.app_password)
        assert reply.startswith(b"%"), reply[:200]  # HELLO 3 answered with a RESP3 map: authenticated
        assert reply.endswith(b"+PONG\r\n"), reply[-200:]
        # SETINFO: refused (NOPERM on Valkey, unknown on Redis 7.0); go-redis ignores both.
        assert reply.count(b"\r\n-") == 2, reply
        clients = [c for c in server.admin().client_list() if c["name"] == "alert-history"]
        assert [c["user"] for c in clients] == ["default"]


@pytest.mark.parametrize("protocol", [2, 3])
def test_application_profile_replay(server, protocol):
    replay_application_profile(server, protocol)
