"""Fixtures for the fault-injection tests: the stack of tests/faults/stack.py, one per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.stack import FaultStack, running_fault_stack

__all__ = ["FaultStack", "fault_stack"]


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    with running_fault_stack(tmp_path_factory.mktemp("faults")) as stack:
        yield stack
