"""What is kept: keep-or-discard policies, guardrails, the simplicity rule.

Importing the package registers the built-in policies (`strict`, `noise-aware`).
"""

from autoresearch.decisions import noise_aware as _noise_aware  # noqa: F401  (registers it)
