"""Settings of the generator service (``MUSICAAS_*`` environment variables)."""

from __future__ import annotations

from musicaas.runtime.settings import ServiceSettings


class GeneratorSettings(ServiceSettings):
    """Generator settings (``MUSICAAS_*``): Triton endpoint, deadlines in seconds, job retries."""

    grpc_port: int = 50054
    #: Triton gRPC endpoint, host:port.
    triton_url: str = "127.0.0.1:8001"
    #: Deadline of one Triton inference, in seconds.
    triton_timeout_s: float = 120.0
    #: Seconds to wait for Triton at start-up before serving anyway (calls then get UNAVAILABLE).
    triton_wait_s: float = 60.0
    #: Deliveries of an asynchronous job before a transient failure (Triton down) fails it.
    job_max_deliver: int = 10
    #: Redelivery delay of a job after a transient failure, in seconds (times the delivery count).
    job_retry_delay_s: float = 2.0
