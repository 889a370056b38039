"""The `[tracking]` table of autoresearch.toml, validated on load (no tracker imported).

```toml
[tracking]
wandb = { project = "nanogpt", mode = "offline" }          # entity, dir optional
mlflow = { tracking_uri = "sqlite:///mlruns.db" }          # experiment, artifact_location
```
"""

from __future__ import annotations

from typing import Any

# tracker -> key -> (types, required)
SCHEMAS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "wandb": {"project": ((str,), True), "mode": ((str,), False), "entity": ((str,), False),
              "dir": ((str,), False)},
    "mlflow": {"tracking_uri": ((str,), True), "experiment": ((str,), False),
               "artifact_location": ((str,), False)},
}
WANDB_MODES = ("offline", "online", "disabled")


def validate_tracking(table: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The table as given, or ConfigError naming the key's path (`tracking.wandb.mode`)."""
    from autoresearch.task import ConfigError  # task.py imports this module lazily

    for name, spec in table.items():
        if name not in SCHEMAS:
            raise ConfigError(f"tracking.{name}: unknown tracker. Known: "
                              f"{', '.join(sorted(SCHEMAS))}.")
        if not isinstance(spec, dict):
            raise ConfigError(f"tracking.{name}: expected a table, e.g. {name} = "
                              "{ ... }.")
        schema = SCHEMAS[name]
        for key, value in spec.items():
            if key not in schema:
                raise ConfigError(f"tracking.{name}.{key}: unknown key. Known keys: "
                                  f"{', '.join(sorted(schema))}.")
            if not isinstance(value, schema[key][0]):
                raise ConfigError(f"tracking.{name}.{key}: expected a string, got {value!r}")
        for key, (_types, required) in schema.items():
            if required and key not in spec:
                raise ConfigError(f"tracking.{name}.{key}: required.")
        if name == "wandb" and spec.get("mode", "offline") not in WANDB_MODES:
            raise ConfigError(f"tracking.wandb.mode: expected one of {', '.join(WANDB_MODES)}, "
                              f"got {spec['mode']!r}")
    return {k: dict(v) for k, v in table.items()}
