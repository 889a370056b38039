"""Fixtures for the proposer tests; the helpers live in proposer_fixtures.py."""

from .proposer_fixtures import chat_server, workdir  # noqa: F401 - pytest fixtures
