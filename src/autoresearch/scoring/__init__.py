"""Evaluation that never runs the candidate's code in the process that holds the data.

Two kinds of process, wired by the harness with pipes:

- a **model server** (untrusted, no evaluation data) imports the candidate's code and
  answers token rows with logits: `server.serve(model_fn, fd_in, fd_out)`;
- the **scorer** (trusted, no candidate code) holds the data, the metric and the result,
  talks to two fresh model servers through `client.ModelClient`, and checks with
  `probes.CheckedScoring` that the model is causal and keeps no state between requests.

`protocol` is the wire format. The package needs numpy, not torch.
"""

from __future__ import annotations

from autoresearch.scoring.client import ModelClient, ModelServerError, connect_models
from autoresearch.scoring.probes import (
    ACCELERATOR_TOL,
    CPU_FP32_TOL,
    CheckedScoring,
    IntegrityError,
    Plan,
    cross_entropy,
)
from autoresearch.scoring.protocol import ProtocolError
from autoresearch.scoring.server import model_fds, serve

__all__ = ["ACCELERATOR_TOL", "CPU_FP32_TOL", "CheckedScoring", "IntegrityError",
           "ModelClient", "ModelServerError", "Plan", "ProtocolError", "connect_models",
           "cross_entropy", "model_fds", "serve"]
