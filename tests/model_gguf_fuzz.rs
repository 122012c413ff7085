//! Property tests of the GGUF parser against hostile input: every prefix of a valid file,
//! random byte flips, lying counts and lengths, random garbage behind a valid magic. The
//! parser must return `Ok` or a typed error, never panic, and never allocate more than a small
//! multiple of the input's size (a header that claims 2^60 tensors must not reserve memory for
//! them). Bounded: a few thousand cases, a couple of seconds.

#[path = "fixtures/gguf_writer.rs"]
mod gguf_writer;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use gguf_writer::{ggml, tiny_llama, Builder, Tiny, Value};
use proptest::prelude::*;
use ptxforge::model::gguf::{parse, GgufError, GgufHeader};

/// Counts bytes allocated on the current thread while `measure` runs.
struct Counting;

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn record(size: usize) {
    // `try_with`: the allocator can be called while thread-locals are being torn down.
    let _ = ACTIVE.try_with(|a| {
        if a.get() {
            LARGEST.with(|l| l.set(l.get().max(size)));
            TOTAL.with(|t| t.set(t.get() + size));
        }
    });
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Parses `bytes`, returning the result with the largest single and the total allocation.
fn measured_parse(bytes: &[u8]) -> (Result<GgufHeader, GgufError>, usize, usize) {
    LARGEST.with(|l| l.set(0));
    TOTAL.with(|t| t.set(0));
    ACTIVE.with(|a| a.set(true));
    let r = parse(bytes);
    ACTIVE.with(|a| a.set(false));
    (r, LARGEST.with(Cell::get), TOTAL.with(Cell::get))
}

/// The invariants of any header the parser accepts, and the allocation bound.
fn check(bytes: &[u8]) {
    let (r, largest, total) = measured_parse(bytes);
    let n = bytes.len();
    // Typed arrays and tables cost at most ~5 bytes of memory per byte of input (a 64-byte
    // metadata entry per 13 input bytes); allow 8x plus slack for small fixed tables.
    assert!(
        largest <= 8 * n + 4096,
        "largest allocation {largest} for {n} input bytes"
    );
    assert!(
        total <= 64 * n + 65536,
        "total allocation {total} for {n} input bytes"
    );
    if let Ok(h) = r {
        assert!(h.data_offset % h.alignment == 0);
        let mut ranges: Vec<_> = (0..h.tensors.len())
            .map(|i| h.tensor_range(i).expect("range"))
            .collect();
        for range in &ranges {
            assert!(range.end <= n, "tensor data past the input");
        }
        ranges.sort_by_key(|r| r.start);
        for w in ranges.windows(2) {
            assert!(w[0].end <= w[1].start, "accepted overlapping tensors");
        }
    }
}

fn seeds() -> Vec<Vec<u8>> {
    vec![
        tiny_llama(
            Tiny {
                hidden: 32,
                layers: 1,
                heads: 2,
                kv_heads: 1,
                head_dim: 16,
                ffn: 64,
                vocab: 8,
            },
            ggml::Q8_0,
        )
        .build(),
        Builder::new()
            .kv("general.architecture", Value::Str("llama".into()))
            .kv(
                "nested",
                Value::Array(
                    gguf_writer::ty::ARRAY,
                    vec![Value::Array(gguf_writer::ty::U8, vec![Value::U8(1)])],
                ),
            )
            .kv("general.alignment", Value::U32(64))
            .tensor("a", ggml::F32, &[4, 2])
            .tensor("b", ggml::Q4_K, &[256])
            .build(),
        Builder {
            version: 2,
            ..Builder::new()
        }
        .kv("k", Value::F64(1.5))
        .tensor("x", ggml::F16, &[8])
        .build(),
    ]
}

#[test]
fn seeds_parse() {
    for s in seeds() {
        let (r, _, _) = measured_parse(&s);
        r.expect("seed parses");
        check(&s);
    }
}

#[test]
fn every_prefix_of_a_valid_file_is_an_error() {
    for s in seeds() {
        for cut in 0..s.len() {
            let (r, _, _) = measured_parse(&s[..cut]);
            assert!(r.is_err(), "prefix of {cut} bytes accepted");
            check(&s[..cut]);
        }
    }
}

/// Positions of the 8-byte little-endian counts and lengths in a seed: overwriting these with
/// huge values is how a header lies.
fn u64_field_offsets(bytes: &[u8]) -> Vec<usize> {
    (0..bytes.len().saturating_sub(8))
        .filter(|&i| i == 8 || i == 16 || (bytes[i + 1..i + 8] == [0; 7] && bytes[i] > 0))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn byte_flips_never_panic(seed in 0usize..3, flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = seeds()[seed].clone();
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        check(&bytes);
    }

    #[test]
    fn lying_counts_and_lengths_never_panic(seed in 0usize..3, field in any::<prop::sample::Index>(), value in prop_oneof![
        Just(u64::MAX), Just(1u64 << 63), Just(1u64 << 40), Just(u64::MAX - 7), any::<u64>(), 0u64..1024
    ]) {
        let mut bytes = seeds()[seed].clone();
        let fields = u64_field_offsets(&bytes);
        let at = fields[field.index(fields.len())];
        bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        check(&bytes);
    }

    #[test]
    fn garbage_after_a_valid_magic_never_panics(version in prop_oneof![Just(2u32), Just(3u32)], rest in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&rest);
        check(&bytes);
    }

    #[test]
    fn splices_never_panic(seed in 0usize..3, at in any::<prop::sample::Index>(), cut in 0usize..64, insert in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = seeds()[seed].clone();
        let i = at.index(bytes.len());
        let end = (i + cut).min(bytes.len());
        bytes.splice(i..end, insert);
        check(&bytes);
    }
}
