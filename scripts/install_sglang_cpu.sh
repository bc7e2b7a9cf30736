#!/usr/bin/env bash
# SGLang for a CPU-only machine, with this project and its PIPO plugin, in its own virtual environment:
#   scripts/install_sglang_cpu.sh [VENV]        (default: .venv-sglang)
# then: VENV/bin/pipo-agent serve --engine sglang
# SGLang pins transformers==5.19.0, so it gets a venv of its own beside the project's. About 2.5 minutes and
# 2.5 GB. The stand-ins for the CUDA-only sgl_kernel and torchvision come with the project (pipo-agent serve puts
# them on PYTHONPATH); nothing else is patched.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$root/.venv-sglang}"
start=$(date +%s)
python3 -m venv "$venv"
pip="$venv/bin/pip"
"$pip" install -q torch==2.13.0               # the CPU wheel
"$pip" install -q --no-deps sglang==0.5.23
"$pip" install -q -r "$root/scripts/sglang-cpu-requirements.txt"
"$pip" install -q -e "$root"                   # the project (its entry point registers the plugin)
"$venv/bin/python" -c "from pipo_agent.backends.sglang.plugin import check_sglang_version as c; print('sglang', c())"
echo "install_sglang_cpu: $venv ready in $(( $(date +%s) - start )) s"
