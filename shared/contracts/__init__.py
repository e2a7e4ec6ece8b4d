"""Message contracts between the services: the envelope and each source's event schemas.

Importing this package registers every source's contracts (declarations only).
"""

from shared.contracts import identification, planning, provisioning  # noqa: F401  (registers)
from shared.contracts.envelope import Envelope, EnvelopeSchema, InvalidMessageError
from shared.contracts.registry import Contract, UnknownEventError, registry

__all__ = [
    "Contract",
    "Envelope",
    "EnvelopeSchema",
    "InvalidMessageError",
    "UnknownEventError",
    "registry",
]
