"""Fixtures of the fingerprint tests."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

StoredConfig = Callable[[Path], AbstractContextManager[dict[str, Any]]]
"""The ``stored_config`` fixture's type, for the tests' signatures."""


@contextmanager
def _stored_config(where: Path) -> Iterator[dict[str, Any]]:
    """An embedded fingerprint index's stored config, written back as edited (an index made by
    an older audiolsh)."""
    db = sqlite3.connect(where / "catalogue.sqlite")
    try:
        config = json.loads(db.execute("SELECT value FROM config WHERE name = 'index'").fetchone()[0])
        yield config
        db.execute("UPDATE config SET value = ? WHERE name = 'index'", (json.dumps(config),))
        db.commit()
    finally:
        db.close()


@pytest.fixture
def stored_config() -> StoredConfig:
    return _stored_config
