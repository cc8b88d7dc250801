"""Session fixtures: a real nats-server with JetStream on a free port and a temporary store."""

from __future__ import annotations

import pytest

from musicaas.runtime.procs import free_port, start_nats_server, stop_process


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory):
    store = tmp_path_factory.mktemp("nats")
    port = free_port()
    proc = start_nats_server(store_dir=store, port=port, log_file=store / "nats.log")
    yield f"nats://127.0.0.1:{port}"
    stop_process(proc)
