#!/usr/bin/env bash
# Runs on the device machine, from the repository root, over what scripts/gpu-pack.sh
# packed into DIR: the GPU tests, the GEMV and decode benches (beside `ptxforge-old` when
# packed) and compute-sanitizer's memcheck of the mirror tests, in that order, stopping
# before DEADLINE seconds (default 460) so that the call returns its logs. Logs go to $OUT
# (tests.log, gemv-*.txt, decode-*.txt, memcheck.log); a summary goes to stdout.
#
#   DEADLINE=460 bash scripts/gpu-check.sh DIR
set -u
dir=${1:?usage: scripts/gpu-check.sh DIR}
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
# The test binaries read fixtures at the path they were built in.
mkdir -p /work && [ -e /work/main ] || ln -s "$PWD" /work/main
B=/tmp/gpu-bins
mkdir -p "$B" && tar xJf "$dir/bins.tar.xz" -C "$B"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
T0=$(date +%s)
DEADLINE=${DEADLINE:-460}
el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
left() { echo $(( DEADLINE - ($(date +%s) - T0) )); }
lim() { local l; l=$(left); if [ "$l" -lt "$1" ]; then echo "$l"; else echo "$1"; fi; }
el tests
for t in gpu_gemv gpu_mirror gpu_proof_kernels gpu_rope_norms gpu_numeric_parity gpu_decode \
    gpu_manifest_step gpu_grid_batched gpu_grid_batched_more gpu_launch_prefix gpu_attention \
    gpu_embed_argmax gpu_real_models; do
    [ "$(left)" -lt "${KEEP:-20}" ] && { el "skipped $t: deadline"; continue; }
    echo "=== $t" >> "$out/tests.log"
    timeout "$(lim 100)" "$B/$t" >> "$out/tests.log" 2>&1
    el "$t rc $?: $(grep -E '^test result' "$out/tests.log" | tail -1)"
done
grep -E "FAILED|panicked" "$out/tests.log" | head -20
bench() { # NAME BINARY ARGS...
    local name=$1 bin=$2; shift 2
    [ -x "$B/$bin" ] && [ "$(left)" -gt 30 ] || return 0
    el "$name"
    timeout "$(lim 80)" "$B/$bin" bench "$@" > "$out/$name.txt" 2>&1
    grep -E "gemv|copy|decode|tokens" "$out/$name.txt" | head -40
}
gemv=(--shapes 14336x4096,4096x14336 --batches 1,8)
decode=(--skip-gemv --decode llama3-8b,qwen2.5-0.5b,gemma3-270m,smollm2-135m,qwen3-0.6b
    --decode-batches 1,8 --context 512)
bench gemv-new ptxforge "${gemv[@]}"
bench gemv-old ptxforge-old "${gemv[@]}"
bench decode-new ptxforge "${decode[@]}"
bench decode-old ptxforge-old "${decode[@]}"
if [ "$(left)" -gt 30 ]; then
    el memcheck
    timeout "$(lim 200)" compute-sanitizer --tool memcheck --print-limit 5 "$B/gpu_mirror" \
        > "$out/memcheck.log" 2>&1
    el "memcheck rc $?"
    tail -3 "$out/memcheck.log"
fi
el done
