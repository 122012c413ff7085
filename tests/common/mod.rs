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
