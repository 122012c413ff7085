#!/usr/bin/env bash
# Packs what a GPU check needs into OUT_DIR/bins.tar.xz (run here, where Rust is): every
# gpu_* test binary and `ptxforge`, stripped; with OLD_PTXFORGE (a ptxforge built from an
# earlier commit) also that one, as `ptxforge-old`, for benches side by side. The device
# machine has no Rust; carry OUT_DIR there (it must be a git-ignored path, e.g. .gpu/run)
# and run scripts/gpu-check.sh.
#
#   scripts/gpu-pack.sh OUT_DIR [OLD_PTXFORGE]
set -euo pipefail
out=${1:?usage: scripts/gpu-pack.sh OUT_DIR [OLD_PTXFORGE]}
old=${2:-}
cd "$(dirname "$0")/.."
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cargo build --release --bin ptxforge
cargo test --release --no-run --message-format=json 2>/dev/null | python3 -c '
import json, shutil, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["name"].startswith("gpu_"):
        shutil.copy(m["executable"], sys.argv[1] + "/" + m["target"]["name"])
' "$stage"
cp target/release/ptxforge "$stage/ptxforge"
[ -n "$old" ] && cp "$old" "$stage/ptxforge-old"
strip "$stage"/*
mkdir -p "$out"
(cd "$stage" && tar cf - . | xz -T0 -3) > "$out/bins.tar.xz"
ls -l "$out/bins.tar.xz"
