"""Asynchronous generation jobs: the consumer of ``music.generations.requested`` (torch-free).

The gateway's ``SubmitGeneration`` records the job (state QUEUED, :meth:`Bus.create_job`) and
publishes the request. :class:`JobRunner` skips jobs that already completed or failed
(idempotent by generation id), marks the job RUNNING and generates; the job ends COMPLETED,
or FAILED (with ``music.generations.failed``) for controls that can never succeed or after the
last retry of a transient error (e.g. Triton down).
"""

from __future__ import annotations

import structlog

from musicaas.events.v1 import events_pb2
from musicaas.generator.v1 import generator_pb2
from musicaas.runtime import bus as busmod
from musicaas.runtime.errors import InvalidArgument, MusicaasError
from musicaas.tenancy import TENANT_RE
from musicaas_generator.pipeline import Generator

log = structlog.get_logger()

#: Durable consumer of ``music.generations.requested``.
REQUESTED_DURABLE = "generator-generations-requested"
DONE_STATES = (generator_pb2.GENERATION_STATE_COMPLETED, generator_pb2.GENERATION_STATE_FAILED)


class JobRunner:
    """Runs the asynchronous jobs of ``music.generations.requested`` on a :class:`Generator`."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.bus = generator.bus
        self.settings = generator.settings

    async def handle_requested(self, event: events_pb2.GenerationRequested, headers: dict[str, str]) -> None:
        """Run the job unless it already finished.

        Bad controls end the job FAILED (and the message is acked); transient errors are
        raised so that the bus redelivers the job later.
        """
        generation_id = event.generation_id
        if not generation_id:
            raise InvalidArgument("GenerationRequested without a generation_id")
        tenant = event.tenant
        job = await self.bus.get_job(tenant, generation_id)
        if job is not None and job.state in DONE_STATES:
            log.info("generation_job_skipped", generation_id=generation_id,
                     state=generator_pb2.GenerationState.Name(job.state))
            return

        def running(j: generator_pb2.GenerationJob) -> None:
            j.state = generator_pb2.GENERATION_STATE_RUNNING
            if not j.HasField("params"):
                j.params.CopyFrom(event.params)

        await self.bus.update_job(tenant, generation_id, running)
        try:
            await self.generator.generate(
                generator_pb2.GenerateTrackRequest(params=event.params, generation_id=generation_id), tenant=tenant,
            )
        except MusicaasError as exc:
            if not exc.permanent:
                raise
            await self.fail_job(event, exc, headers)

    async def fail_job(self, event: events_pb2.GenerationRequested | None, error: MusicaasError, headers) -> None:
        """Mark the job FAILED with the reason and publish ``music.generations.failed``."""
        if event is None or not event.generation_id or not TENANT_RE.fullmatch(event.tenant):
            return
        generation_id = event.generation_id
        reason = f"{error.code.name}: {error.message}"

        def failed(j: generator_pb2.GenerationJob) -> None:
            j.state = generator_pb2.GENERATION_STATE_FAILED
            j.error = reason
            if not j.HasField("params"):
                j.params.CopyFrom(event.params)

        await self.bus.update_job(event.tenant, generation_id, failed)
        await self.bus.publish(
            busmod.GENERATIONS_FAILED,
            events_pb2.GenerationFailed(generation_id=generation_id, tenant=event.tenant, code=error.code.name,
                                        reason=error.message),
            event_id=f"failed:{event.tenant}:{generation_id}",
        )
        log.warning("generation_failed", generation_id=generation_id, error=reason)

    async def consume(self) -> None:
        """Run the durable consumer of asynchronous jobs until cancelled."""
        await self.bus.consume(
            durable=REQUESTED_DURABLE,
            subject=busmod.GENERATIONS_REQUESTED,
            message_type=events_pb2.GenerationRequested,
            handler=self.handle_requested,
            on_permanent_failure=self.fail_job,
            max_deliver=self.settings.job_max_deliver,
            nak_delay_s=self.settings.job_retry_delay_s,
            # in-progress heartbeats keep a running job from redelivery; a dead generator's job
            # is picked up again within the ack wait
            ack_wait_s=15.0,
            ack_sync=True,  # a lost ack would regenerate every piece
        )
