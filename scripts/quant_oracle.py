#!/usr/bin/env python3
"""Writes the quantization fixtures of tests/fixtures/quant/ from the `gguf` package.

The oracle for our CPU (de)quantization is `gguf.quants` (llama.cpp's Python port of GGML's
reference code), not our own code:

* dequant_<type>.bin: random valid blocks (random bytes, finite f16 scales) and the values
  `gguf.quants.dequantize` gives for them;
* quant_<type>.bin: random f32 rows (plus edge cases) and the blocks `gguf.quants.quantize`
  gives for them (GGML's `quantize_row_*_ref`, bit-exact).

gguf has no K-quant quantizer. With `--ggml-c SDIST` the script also writes quant_q4_k.bin
and quant_q6_k.bin from GGML's own C (`quantize_row_q4_K_ref`, `quantize_row_q6_K_ref` in
ggml-quants.c, from the `ggml-py` source distribution on PyPI, built with gcc and no fused
multiply-add); without it those two files are left as they are. Get the sdist with
`pip download --no-deps --no-binary :all: ggml-py==0.10.1` (pip may spend a while preparing
its metadata).

Deterministic: a fixed seed per file, so re-running rewrites identical files. The format is
described in tests/fixtures/quant/README.md.

Usage: .venv/bin/pip install gguf numpy
       .venv/bin/python scripts/quant_oracle.py [--ggml-c ggml_py-0.10.1.tar.gz]
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf import quants

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "quant"
MAGIC = b"PFQUANT1"
KIND_DEQUANT = 0
KIND_QUANT = 1

# Byte offsets of the f16 fields (scales, mins) inside each block, from ggml-common.h.
F16_FIELDS = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
}


def rng_for(name: str) -> np.random.Generator:
    # One stream per file: adding a fixture does not change the others.
    return np.random.default_rng(zlib.crc32(name.encode()))


def finite_f16_bits(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random f16 bit patterns, NaN and infinity excluded (zeros and subnormals included)."""
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    exp_all_ones = (bits & 0x7C00) == 0x7C00
    bits[exp_all_ones] &= 0xBBFF  # clear one exponent bit: a finite value
    return bits


def realistic_f16_bits(rng: np.random.Generator, n: int) -> np.ndarray:
    """Scales as trained models have them: magnitude 1e-4..1e-1, either sign."""
    mag = 10.0 ** rng.uniform(-4, -1, size=n)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return (mag * sign).astype(np.float16).view(np.uint16)


def write(name: str, kind: int, qtype: T, raw: np.ndarray, values: np.ndarray) -> None:
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    values = np.ascontiguousarray(values, dtype="<f4").reshape(-1)
    header = MAGIC + struct.pack("<IIII", kind, int(qtype), values.size, raw.size)
    path = OUT / f"{name}.bin"
    path.write_bytes(header + raw.tobytes() + values.tobytes())
    print(f"{path.relative_to(OUT.parent.parent.parent)}: {values.size} values, {raw.size} bytes")


def dequant_fixture(qtype: T) -> None:
    name = f"dequant_{qtype.name.lower()}"
    rng = rng_for(name)
    block_values, block_bytes = GGML_QUANT_SIZES[qtype]
    n_blocks = 6 if block_values == 256 else 16
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint32).astype(np.uint8)
    raw[0] = 0  # an all-zero block
    fields = F16_FIELDS[qtype]
    for b in range(1, n_blocks):
        # Half the blocks with realistic scales, half with any finite f16.
        gen = realistic_f16_bits if b % 2 else finite_f16_bits
        for off, bits in zip(fields, gen(rng, len(fields))):
            raw[b, off : off + 2] = np.array([bits], dtype="<u2").view(np.uint8)
    values = quants.dequantize(raw.reshape(-1), qtype)
    assert values.dtype == np.float32 and values.size == n_blocks * block_values
    assert np.all(np.isfinite(values)), name
    write(name, KIND_DEQUANT, qtype, raw, values)


def float_dequant_fixture(qtype: T) -> None:
    name = f"dequant_{qtype.name.lower()}"
    rng = rng_for(name)
    bits = rng.integers(0, 1 << 16, size=512, dtype=np.uint32).astype(np.uint16)
    if qtype == T.F16:
        nan = ((bits & 0x7C00) == 0x7C00) & ((bits & 0x03FF) != 0)
    else:
        nan = ((bits & 0x7F80) == 0x7F80) & ((bits & 0x007F) != 0)
    bits = bits[~nan]
    # Both zeros, both infinities, the smallest subnormal, the largest finite value.
    if qtype == T.F16:
        special = [0x0000, 0x8000, 0x7C00, 0xFC00, 0x0001, 0x7BFF]
    else:
        special = [0x0000, 0x8000, 0x7F80, 0xFF80, 0x0001, 0x7F7F]
    bits = np.concatenate([np.array(special, dtype=np.uint16), bits])
    raw = bits.astype("<u2").view(np.uint8)
    values = quants.dequantize(raw, qtype)
    write(name, KIND_DEQUANT, qtype, raw, values)


def quant_inputs(rng: np.random.Generator, block: int, n_random: int) -> np.ndarray:
    """Random rows of varied magnitude, then edge-case blocks."""
    rows = []
    for _ in range(n_random):
        scale = 10.0 ** rng.uniform(-6, 3)
        offset = rng.normal() * scale if rng.random() < 0.3 else 0.0
        rows.append(rng.normal(size=block) * scale + offset)
    rows.append(np.zeros(block))  # all zero (positive zeros)
    rows.append(np.full(block, 0.375))  # constant
    # Halfway cases: amax 127 gives d = 1, so x * (1/d) lands exactly on .5 fractions.
    ties = np.resize(np.array([127.0, 63.5, -63.5, 0.5, -0.5, 1.5, -2.5, 100.25]), block)
    rows.append(ties)
    rows.append(-ties)
    return np.stack(rows).astype(np.float32)


def quant_fixture(qtype: T) -> None:
    name = f"quant_{qtype.name.lower()}"
    rng = rng_for(name)
    block = GGML_QUANT_SIZES[qtype][0]
    x = quant_inputs(rng, block, 12)
    raw = quants.quantize(x, qtype)
    write(name, KIND_QUANT, qtype, raw, x)


def q8_1_fixture() -> None:
    """Q8_1 (`quantize_row_q8_1_ref`): gguf has no Q8_1 quantizer (its size table still has
    the old 40-byte block), but Q8_1's `d` and `qs` are defined exactly as Q8_0's, so they come
    from gguf's Q8_0 quantizer; `s = f16(sum(qs) * d)` with the f32 `d = amax / 127` is
    computed here from that definition."""
    name = "quant_q8_1"
    rng = rng_for(name)
    x = quant_inputs(rng, 32, 12)
    q8_0 = quants.quantize(x, T.Q8_0)
    d16 = q8_0[:, :2]
    qs = q8_0[:, 2:].view(np.int8)
    d32 = np.abs(x).max(axis=1) / np.float32(127)
    assert d32.dtype == np.float32
    assert np.array_equal(d32.astype(np.float16).view(np.uint8).reshape(-1, 2), d16)
    s = (qs.astype(np.int32).sum(axis=1).astype(np.float32) * d32).astype(np.float16)
    raw = np.concatenate([d16, s.reshape(-1, 1).view(np.uint8), qs.view(np.uint8)], axis=1)
    write(name, KIND_QUANT, T.Q8_1, raw, x)


def float_quant_fixture(qtype: T) -> None:
    name = f"quant_{qtype.name.lower()}"
    rng = rng_for(name)
    x = quant_inputs(rng, 32, 8).reshape(-1)
    # Values straddling rounding boundaries, overflow, subnormals and a NaN (BF16 only:
    # f16 conversion keeps NaN payloads in ways this fixture does not pin down).
    extra = [65504.0, 65520.0, 1e-8, -3e-6, 1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, np.inf, -np.inf]
    if qtype == T.BF16:
        extra += [1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, 3.4e38, float.fromhex("0x1.fffffep127")]
        extra += [np.frombuffer(struct.pack("<I", 0xFF800123), dtype="<f4")[0]]
    x = np.concatenate([x, np.array(extra, dtype=np.float32)]).astype(np.float32)
    with np.errstate(over="ignore"):  # 65520 overflows to infinity in F16, as intended
        raw = quants.quantize(x, qtype).view(np.uint8)
    write(name, KIND_QUANT, qtype, raw, x)


# Reads f32 values on stdin, writes GGML's reference quantization of them on stdout.
HARNESS_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ggml-common.h"
#include "ggml-quants.h"
static float x[1 << 20];
static unsigned char y[1 << 20];
int main(int argc, char ** argv) {
    size_t n = fread(x, sizeof(float), 1 << 20, stdin), bytes;
    if (argc != 2 || n % 256 != 0) return 2;
    if (!strcmp(argv[1], "Q4_K")) {
        quantize_row_q4_K_ref(x, (block_q4_K *) y, n); bytes = n / 256 * sizeof(block_q4_K);
    } else if (!strcmp(argv[1], "Q6_K")) {
        quantize_row_q6_K_ref(x, (block_q6_K *) y, n); bytes = n / 256 * sizeof(block_q6_K);
    } else {
        return 2;
    }
    fwrite(y, 1, bytes, stdout);
    return 0;
}
/* ggml-quants.c refers to these; the reference quantizers never call them. */
void ggml_abort(const char * file, int line, const char * fmt, ...) { (void) fmt; fprintf(stderr, "%s:%d\n", file, line); abort(); }
size_t ggml_row_size(enum ggml_type type, int64_t ne) { (void) type; (void) ne; abort(); }
const char * ggml_type_name(enum ggml_type type) { (void) type; abort(); }
size_t ggml_type_size(enum ggml_type type) { (void) type; abort(); }
"""


def build_ggml_quantizer(sdist: Path, work: Path) -> Path:
    """Builds GGML's reference quantizers from the ggml-py source distribution."""
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/vendor/ggml/" in m.name and m.isfile()]
        tar.extractall(work, members=members, filter="data")
    ggml = next(work.glob("ggml_py-*/vendor/ggml"))
    (work / "harness.c").write_text(HARNESS_C)
    exe = work / "harness"
    subprocess.run(
        ["gcc", "-O2", "-ffp-contract=off", "-std=gnu11", f"-I{ggml}/include", f"-I{ggml}/src",
         str(work / "harness.c"), str(ggml / "src" / "ggml-quants.c"), "-lm", "-o", str(exe)],
        check=True,
    )
    return exe


def ggml_c_quant_fixture(exe: Path, qtype: T) -> None:
    name = f"quant_{qtype.name.lower()}"
    rng = rng_for(name)
    x = quant_inputs(rng, 256, 8)
    run = subprocess.run([str(exe), qtype.name], input=x.astype("<f4").tobytes(),
                         capture_output=True, check=True)
    raw = np.frombuffer(run.stdout, dtype=np.uint8)
    assert raw.size == x.shape[0] * GGML_QUANT_SIZES[qtype][1], name
    write(name, KIND_QUANT, qtype, raw, x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ggml-c", metavar="SDIST", type=Path,
                        help="ggml-py source distribution (ggml_py-0.10.1.tar.gz) to build "
                        "GGML's C quantizers from; also writes the Q4_K/Q6_K quantization "
                        "fixtures")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for qtype in F16_FIELDS:
        dequant_fixture(qtype)
    for qtype in (T.F16, T.BF16):
        float_dequant_fixture(qtype)
    for qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        quant_fixture(qtype)
    q8_1_fixture()
    for qtype in (T.F16, T.BF16):
        float_quant_fixture(qtype)
    if args.ggml_c:
        with tempfile.TemporaryDirectory() as work:
            exe = build_ggml_quantizer(args.ggml_c, Path(work))
            for qtype in (T.Q4_K, T.Q6_K):
                ggml_c_quant_fixture(exe, qtype)


if __name__ == "__main__":
    main()
