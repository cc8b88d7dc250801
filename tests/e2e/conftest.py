"""Fixtures of the end-to-end tests: the whole stack (real nats-server, real Triton through
PyTriton with the tiny model, Qdrant Edge in a temporary folder, the four services as
processes on loopback) and a gateway client. One stack per test module."""

from __future__ import annotations

import pytest

from musicaas.client import GatewayClient
from musicaas_cli.stack import LocalStack, StackPorts


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = LocalStack(tmp_path_factory.mktemp("stack"), ports=StackPorts.free(), tiny_model=True)
    s.start()
    yield s
    codes = s.stop()
    # every service exits cleanly on SIGTERM (graceful shutdown path)
    assert all(code == 0 for name, code in codes.items() if name != "triton"), codes


@pytest.fixture(scope="module")
def client(stack):
    with GatewayClient(stack.gateway_addr, stack.api_key) as c:
        yield c

