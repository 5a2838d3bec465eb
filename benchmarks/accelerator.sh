#!/usr/bin/env bash
# Everything t5tune measures on an accelerator, in one call, on a host that has one:
# the train-step MFU (t5_1_1_base, t5_1_1_large; bf16) and decoding against transformers
# on the same device (benchmarks/accelerator.py prints the table and the raw times).
#
#   bash benchmarks/accelerator.sh --prepare   # here, with the package index: wheels into .whl/
#   bash benchmarks/accelerator.sh             # there: installs .whl/ beside the host's own
#                                              # jax/flax/torch, then measures
#
# The lent GPU hosts run Python 3.12 with jax, flax, optax, orbax, torch and transformers
# already installed and no network, so --prepare downloads only what t5tune imports that
# such an image lacks (the list below), for that Python; .whl/ stays out of git
# (.git/info/exclude) and travels with the run (the device tool's `carry`).
set -euo pipefail
cd "$(dirname "$0")/.."
MISSING=(ml-collections==1.1.0)
if [[ "${1:-}" == "--prepare" ]]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "${MISSING[@]}"
  ls .whl
  exit 0
fi
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/t5tune_site .whl/*.whl
  export PYTHONPATH="/tmp/t5tune_site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 T5TUNE_ALLOCATOR=system
"$PY" -c "import jax; print('devices:', jax.devices())"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" benchmarks/accelerator.py "$@"
