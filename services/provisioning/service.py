"""Provisioning's entrypoints: so far only the chassis routes (health, metrics, OpenAPI)."""

from __future__ import annotations

from collections.abc import Mapping

from services.provisioning.application import ProvisioningApplication
from shared.eventstore import EventStore
from shared.service import ServiceBase


def make_application(env: Mapping[str, str]) -> ProvisioningApplication:
    return ProvisioningApplication(env)


class ProvisioningService(ServiceBase):
    name = "provisioning"
    app: ProvisioningApplication = EventStore(make_application)
