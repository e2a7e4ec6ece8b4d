"""Reporting's audit routes: every service's chain verified, a plan's history and past state.

No service reads another's database, so reporting asks: each service verifies its own chain
(``audit_verify`` over RPC, with what reporting knows of that chain as anchors: the latest
checkpoint it signed and the last position its inbox applied), and planning answers a plan's
history and past state from its own stored events. After a service's chain verifies,
reporting signs its head and keeps the checkpoint, on every verification and on a timer.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from marshmallow import Schema, fields, validates_schema
from nameko.exceptions import RemoteError, RpcTimeout, UnknownService
from nameko.extensions import DependencyProvider
from nameko.standalone.rpc import ClusterRpcProxy
from nameko.timer import Timer
from werkzeug.wrappers import Response

from services.reporting.schemas import check_as_of
from shared.audit import verify_store, witness_anchors
from shared.auth import (
    AUDITOR,
    DIRECTOR,
    MUNICIPAL_COORDINATOR,
    NATIONAL_COORDINATOR,
    OPERATOR,
    TEACHER,
)
from shared.checkpoint import CheckpointLog, sign, signing_key, with_retired
from shared.errors import UnavailableError
from shared.eventstore import store_of
from shared.rpc import BROKER_ERRORS, caller_proxy
from shared.store import ServiceApplication
from shared.web import Call, relay, route

log = logging.getLogger(__name__)

AUDITED = ("identification", "planning", "provisioning", "reporting")
# Verification shows positions and hashes only, no personal data: operators may run it too.
VERIFIERS = (AUDITOR, NATIONAL_COORDINATOR, OPERATOR)
# A plan's history and past state: whoever may read the plan (planning applies the tenancy).
PLAN_READERS = (TEACHER, DIRECTOR, MUNICIPAL_COORDINATOR, NATIONAL_COORDINATOR, AUDITOR)
AUDIT_PLAN = "/audit/plans/<uuid:plan_id>"
RPC_ERRORS = (RpcTimeout, RemoteError, UnknownService, *BROKER_ERRORS)


# -- schemas ----------------------------------------------------------------------------------


class BrokenSchema(Schema):
    position = fields.Integer()
    reason = fields.String()
    message = fields.String()


class AnchorSchema(Schema):
    position = fields.Integer()
    source = fields.String()
    hash = fields.String(allow_none=True)
    valid = fields.Boolean()


class ChainSchema(Schema):
    ok = fields.Boolean(allow_none=True)
    head_position = fields.Integer()
    head_hash = fields.String()
    records = fields.Integer()
    first_broken = fields.Nested(BrokenSchema, allow_none=True)
    anchors = fields.List(fields.Nested(AnchorSchema))
    error = fields.String()


class VerificationSchema(Schema):
    ok = fields.Boolean()
    verified_at = fields.String()
    services = fields.Dict(keys=fields.String(), values=fields.Nested(ChainSchema))


class AsOfQuerySchema(Schema):
    as_of = fields.AwareDateTime(default_timezone=UTC)

    @validates_schema
    def check(self, data: dict[str, Any], **kwargs: Any) -> None:
        check_as_of(data)  # as the ESF report: a future as_of is 400


# -- asking the services --------------------------------------------------------------------


class AuditDesk:
    """What one request (or timer tick) of reporting's audit needs: RPC, store, key."""

    def __init__(
        self, witness: Witness, app: ServiceApplication, checkpoints: CheckpointLog
    ) -> None:
        self.witness, self.app, self.checkpoints = witness, app, checkpoints

    def _rpc(self) -> ClusterRpcProxy:
        container = self.witness.container
        return caller_proxy(dict(container.config), container.service_name, self.witness.timeout)

    def verify_all(self) -> dict[str, Any]:
        key = self.witness.key
        public = with_retired(key.public_key()) if key else None
        services = {}
        with self._rpc() as rpc:
            for service in AUDITED:
                anchors = witness_anchors(service, [self.app], public) if public else []
                services[service] = self._verify(rpc, service, anchors)
                if key is not None and service != "reporting":
                    self._keep_checkpoint(service, services[service], key)
        return {
            "ok": all(result["ok"] for result in services.values()),
            "verified_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "services": services,
        }

    def _verify(self, rpc: Any, service: str, anchors: list[Any]) -> dict[str, Any]:
        if service == self.app.name:
            return verify_store(self.app, anchors).to_dict()
        try:
            return dict(rpc[service].audit_verify(anchors=[a.to_dict() for a in anchors]))
        except RPC_ERRORS as exc:
            log.warning(
                "%s did not answer the audit verification (%s)", service, type(exc).__name__
            )
            return {"ok": None, "error": f"{service} did not answer"}

    def _keep_checkpoint(
        self, service: str, result: dict[str, Any], key: Ed25519PrivateKey
    ) -> None:
        if not result["ok"] or not result["head_position"]:
            return
        latest = self.checkpoints.latest(service)
        if latest is not None and latest.checkpoint.position >= result["head_position"]:
            return
        head_hash = bytes.fromhex(result["head_hash"])
        self.checkpoints.append(sign(service, result["head_position"], head_hash, key))

    def plan(self, method: str, plan_id: UUID, call: Call, **kwargs: Any) -> Response:
        principal = {
            "sub": call.user.sub,
            "role": call.user.role,
            "school": call.user.school,
            "municipality": call.user.municipality,
        }
        try:
            with self._rpc() as rpc:
                answer = getattr(rpc.planning, method)(
                    plan_id=str(plan_id), principal=principal, **kwargs
                )
        except RPC_ERRORS:
            raise UnavailableError("planning did not answer; try again shortly") from None
        return relay(answer)


class Witness(DependencyProvider):
    """Gives each worker an AuditDesk; holds the key reporting signs checkpoints with."""

    def setup(self) -> None:
        config = {k: str(v) for k, v in self.container.config.items() if isinstance(v, str)}
        environ = {**os.environ, **config}
        self.timeout = float(environ.get("PUMPURS_AUDIT_RPC_TIMEOUT", "300"))
        self.key: Ed25519PrivateKey | None
        try:
            self.key = signing_key(environ)
        except RuntimeError as exc:
            # Verification still runs; without the key no checkpoint is signed or checked.
            log.warning("audit checkpoints are off: %s", exc)
            self.key = None

    def start(self) -> None:
        self.app = store_of(self.container).app
        self.checkpoints = CheckpointLog(self.app)
        self.checkpoints.create_table()

    def get_dependency(self, worker_ctx: Any) -> AuditDesk:
        return AuditDesk(self, self.app, self.checkpoints)


class CheckpointTimer(Timer):
    """nameko's timer, its interval from PUMPURS_AUDIT_CHECKPOINT_INTERVAL (seconds)."""

    def setup(self) -> None:
        self.interval = float(os.environ.get("PUMPURS_AUDIT_CHECKPOINT_INTERVAL", "3600"))


class AuditRoutes:
    """Mixin for ReportingService."""

    audit_desk: AuditDesk = Witness()

    @route(
        "GET",
        "/audit/verify",
        answer=VerificationSchema,
        roles=VERIFIERS,
        summary="every service's hash chain recomputed; the first broken position of each",
    )
    def verify_chains(self, call: Call) -> Any:
        return self.audit_desk.verify_all()

    @CheckpointTimer.decorator(interval=3600)
    def keep_checkpoints(self) -> None:
        """Periodically: verify every chain and sign each head that moved."""
        self.audit_desk.verify_all()

    @route(
        "GET",
        f"{AUDIT_PLAN}/history",
        roles=PLAN_READERS,
        summary="every event of the plan in order: who, when, what changed (from planning)",
    )
    def audit_plan_history(self, call: Call, plan_id: UUID) -> Response:
        return self.audit_desk.plan("audit_plan_history", plan_id, call)

    @route(
        "GET",
        AUDIT_PLAN,
        query=AsOfQuerySchema,
        roles=PLAN_READERS,
        summary="the plan as its stored events had made it at as_of (default: now)",
    )
    def audit_plan_as_of(self, call: Call, plan_id: UUID) -> Response:
        as_of = call.query.get("as_of")
        return self.audit_desk.plan(
            "audit_plan_as_of", plan_id, call, as_of=as_of.isoformat() if as_of else None
        )
