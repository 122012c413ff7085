//! Shared test helpers: a seeded random generator and the GPU skip logic.
#![allow(dead_code)]

use ptxforge::runtime::{Device, RuntimeError};

/// SplitMix64: small, fast, and reproducible from the printed seed.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from the clock (fresh inputs each run); the seed is printed so a
    /// failure can be replayed with `Rng::seeded`.
    pub fn fresh(what: &str) -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed);
        println!("{what}: random seed {seed:#x}");
        Rng(seed)
    }

    pub fn seeded(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Approximately normal (sum of uniforms), mean 0, standard deviation `sd`.
    pub fn normal(&mut self, sd: f32) -> f32 {
        let s: f32 = (0..12).map(|_| self.unit()).sum::<f32>() - 6.0;
        s * sd
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Opens GPU 0, or prints why the test is skipped and returns `None` (no driver, no device).
/// Any other failure is a test failure.
pub fn gpu_or_skip(test: &str) -> Option<Device> {
    match Device::open(0) {
        Ok(d) => {
            println!("{test}: running on {} (sm_{})", d.name(), d.sm());
            Some(d)
        }
        Err(e @ (RuntimeError::NoDriver | RuntimeError::NoDevice { .. })) => {
            println!("{test}: skipped: {e}");
            None
        }
        Err(e) => panic!("{test}: could not open the GPU: {e}"),
    }
}

/// Bytes on each side of an output buffer that a kernel must leave untouched.
pub const GUARD: usize = 256;
/// The byte every output and guard region is filled with before a launch.
pub const POISON: u8 = 0xA5;

/// An output buffer of `len` bytes filled with poison, between poisoned guard regions; the
/// kernel gets `buf.ptr_at(GUARD)`.
pub fn poisoned(dev: &Device, len: usize) -> ptxforge::runtime::DeviceBuffer {
    ptxforge::runtime::DeviceBuffer::filled(dev, len + 2 * GUARD, POISON)
        .expect("allocating an output")
}

/// The output bytes, after checking that both guard regions still hold poison.
pub fn read_checked(buf: &ptxforge::runtime::DeviceBuffer, len: usize, what: &str) -> Vec<u8> {
    let all = buf.to_vec().expect("downloading an output");
    let (head, rest) = all.split_at(GUARD);
    let (body, tail) = rest.split_at(len);
    assert!(
        head.iter().all(|b| *b == POISON),
        "{what}: bytes before the output were written"
    );
    assert!(
        tail.iter().all(|b| *b == POISON),
        "{what}: bytes after the output were written"
    );
    body.to_vec()
}

/// Little-endian f32s of a byte buffer.
pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
