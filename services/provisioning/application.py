"""Provisioning's use cases (the service itself comes with its own issue)."""

from shared.store import ServiceApplication


class ProvisioningApplication(ServiceApplication):
    name = "provisioning"
