"""Port helpers of musicaas.runtime.procs."""

from __future__ import annotations

import socket

import pytest

from musicaas.runtime.procs import ephemeral_port_range, free_port_range


def test_free_port_range_is_below_the_ephemeral_range_and_bindable():
    lo, hi = ephemeral_port_range()
    assert 1024 <= lo < hi <= 65535
    for _ in range(5):
        base = free_port_range(12)
        assert 10000 <= base and base + 12 <= lo
        socks = []
        try:
            for port in range(base, base + 12):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                socks.append(s)
        finally:
            for s in socks:
                s.close()


def test_a_taken_port_is_never_inside_the_returned_range():
    hog = socket.socket()
    hog.bind(("127.0.0.1", free_port_range(1)))
    taken = hog.getsockname()[1]
    try:
        # every range of 10 that fits in [taken - 9, taken + 10) holds the taken port
        with pytest.raises(RuntimeError):
            free_port_range(10, lowest=taken - 9, highest=taken + 10)
        # with room above it, the range found starts above it
        base = free_port_range(10, lowest=taken - 9, highest=taken + 40)
        assert base > taken and base + 10 <= taken + 40
    finally:
        hog.close()
