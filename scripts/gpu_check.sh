#!/usr/bin/env bash
# The GPU check: on a CUDA machine, run the GPT template's CUDA paths and a 2-worker night,
# and print the figures the README quotes. About 8 minutes; nothing here downloads.
#
#   scripts/gpu_check.sh [PYTHON]      # PYTHON: an interpreter with torch (CUDA) and this
#                                      # package installed (default: .venv/bin/python)
#
# Needs: nvidia-smi, torch built with CUDA, and the GPT task's data prepared once
# (`python prepare.py` in a `autoresearch init --template gpt` folder, or the cache in
# ~/.cache/autoresearch). FA3 is exercised only where flash_attn_interface is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
OUT=${OUT:-$(mktemp -d)}
say() { printf '\n== %s\n' "$*"; }

say "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"{torch.cuda.device_count()} GPU(s), bf16 {torch.cuda.is_bf16_supported()}")
try:
    import flash_attn_interface  # noqa: F401
    print("FA3: installed")
except ImportError:
    print("FA3: not installed (its test skips)")
EOF

say "CUDA paths of the GPT template: bf16 autocast, torch.compile, FA3 vs SDPA"
timeout 300 "$PY" -m pytest -q -p no:cacheprovider tests/gpt/test_gpt_train.py \
    -k "cuda or fa3" -rs 2>&1 | tail -8

say "a 2-worker night on the GPT template (60 s budget, 4 experiments)"
TASK="$OUT/gpt"
"$PY" -m autoresearch init --yes --template gpt "$TASK" >/dev/null
(cd "$TASK" && timeout 120 "$PY" prepare.py >/dev/null 2>&1 || true)
(cd "$TASK" && timeout 420 "$PY" -m autoresearch run --tag gpu --workers 2 \
    --time-budget 60 --max-experiments 4 --proposer sweep 2>&1 | tail -12) || true
(cd "$TASK" && "$PY" -m autoresearch status --tag gpu --json) > "$OUT/status.json" || true
"$PY" - "$OUT/status.json" <<'EOF'
import json, sys
try:
    data = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    sys.exit("no status: the night did not run (see above)")
rows = data["experiments"]
for r in rows:
    m = r["metrics"]
    print(f"exp {r['id']:>2} {r['status']:<9} worker {r['worker'] or '-':<3} "
          f"val_bpb {r['metric'] if r['metric'] is not None else '-'} "
          f"mfu {m.get('mfu_percent', '-')} tok/s {m.get('tokens_per_second', m.get('tok_per_sec', '-'))} "
          f"vram {m.get('peak_vram_mb', '-')} MB")
w = data["workers"]
print(f"{w['experiments_per_hour']} experiments/hour; "
      + ", ".join(f"{x['worker']} {100 * x['busy']:.0f}% busy" for x in w["workers"]))
EOF
say "done; files in $OUT"
