"""One system per test module: the security suites share running services across checks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.auth import mint_token
from shared.testing import Broker, ServiceProcess, Stores
from tests.conftest import STORE_KIND


class ModuleSystem:
    """Services on one vhost and one set of stores, shared by the tests of a module."""

    def __init__(self, broker: Broker, stores: Stores, root: Path) -> None:
        self.broker, self.stores = broker, stores
        self.keys_dir, self.log_dir = root / "keys", root
        self.services: list[ServiceProcess] = []

    def service(self, name: str, **env: str) -> ServiceProcess:
        service = ServiceProcess(
            name,
            {
                "AMQP_URI": self.broker.uri,
                "PUMPURS_KEYS_DIR": str(self.keys_dir),
                "PUMPURS_CATCH_UP_INTERVAL": "1.0",
                "PUMPURS_LOG_LEVEL": "INFO",
                **self.stores.env([name]),
                **env,
            },
            self.log_dir,
        )
        self.services.append(service)
        return service

    def token(self, role: str, sub: str | None = None, **claims: Any) -> str:
        return mint_token(
            role,
            sub=sub or f"test-{role}-{claims.get('school') or claims.get('municipality') or ''}",
            environ={"PUMPURS_KEYS_DIR": str(self.keys_dir)},
            **claims,
        )


@pytest.fixture(scope="module")
def module_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleSystem]:
    broker = Broker.from_env(os.environ)
    broker.create()
    root = tmp_path_factory.mktemp("system")
    stores = Stores(STORE_KIND, root / "data", os.environ)
    try:
        yield ModuleSystem(broker, stores, root)
    finally:
        stores.drop()
        broker.delete()
