"""Fixtures for every suite: a private broker vhost, the store under test, service processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.auth import mint_token
from shared.testing import Broker, ServiceProcess, Stores, token_for

STORE_KIND = os.environ.get("PUMPURS_TEST_STORE", "sqlite")


def pytest_report_header(config: pytest.Config) -> str:
    return f"pumpurs store under test: {STORE_KIND}"


def _store_free(item: pytest.Item) -> bool:
    """Marked ``store_free``, or a unit test that does not ask for ``stores``."""
    if item.get_closest_marker("store_free"):
        return True
    in_unit = Path(str(item.path)).parent == Path(__file__).parent / "unit"
    return in_unit and "stores" not in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the tests that never open a store once per `make test`, not once per store.

    scripts/test.sh sets PUMPURS_TEST_STORE_FREE=0 on every run after the first.
    """
    if os.environ.get("PUMPURS_TEST_STORE_FREE", "1") != "0":
        return
    dropped = [item for item in items if _store_free(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not _store_free(item)]


@pytest.fixture
def broker() -> Iterator[Broker]:
    broker = Broker.from_env(os.environ)
    broker.create()
    yield broker
    broker.delete()


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    stores = Stores(STORE_KIND, tmp_path / "data", os.environ)
    yield stores
    stores.drop()


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


class System:
    """The services of one test, on one vhost and one set of stores."""

    def __init__(self, broker: Broker, stores: Stores, keys_dir: Path, log_dir: Path) -> None:
        self.broker, self.stores, self.keys_dir, self.log_dir = broker, stores, keys_dir, log_dir

    def service(self, name: str, **env: str) -> ServiceProcess:
        return ServiceProcess(
            name,
            {
                "AMQP_URI": self.broker.uri_for(name),
                "PUMPURS_KEYS_DIR": str(self.keys_dir),
                "PUMPURS_CATCH_UP_INTERVAL": "1.0",
                "PUMPURS_LOG_LEVEL": "INFO",
                **self.stores.env([name]),
                **env,
            },
            self.log_dir,
            operator_amqp_uri=self.broker.uri,
        )

    def token(self, role: str, sub: str | None = None, **claims: Any) -> str:
        if sub is None:
            return token_for(role, self.keys_dir, **claims)
        return mint_token(role, sub=sub, environ={"PUMPURS_KEYS_DIR": str(self.keys_dir)}, **claims)


@pytest.fixture
def system(broker: Broker, stores: Stores, keys_dir: Path, tmp_path: Path) -> System:
    return System(broker, stores, keys_dir, tmp_path)


class ModuleSystem(System):
    """Services on one vhost and one set of stores, shared by the tests of a module.

    Its tokens name the tenant in their subject unless given one (``sub``).
    """

    def __init__(self, broker: Broker, stores: Stores, root: Path) -> None:
        super().__init__(broker, stores, root / "keys", root)

    def token(self, role: str, sub: str | None = None, **claims: Any) -> str:
        return mint_token(
            role,
            sub=sub or f"test-{role}-{claims.get('school') or claims.get('municipality') or ''}",
            environ={"PUMPURS_KEYS_DIR": str(self.keys_dir)},
            **claims,
        )


@pytest.fixture(scope="module")
def module_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleSystem]:
    """One system for the tests of a module that do not need a store of their own: each
    test makes its own pupils, plans or budgets and asserts on those."""
    broker = Broker.from_env(os.environ)
    broker.create()
    root = tmp_path_factory.mktemp("system")
    stores = Stores(STORE_KIND, root / "data", os.environ)
    try:
        yield ModuleSystem(broker, stores, root)
    finally:
        stores.drop()
        broker.delete()
