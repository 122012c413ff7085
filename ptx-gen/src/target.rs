//! The PTX target: which `.target sm_XX` and `.version` a module is written for, and the
//! instruction features that allows.

use std::fmt;

/// PTX ISA version written in `.version`: 7.8 (CUDA 11.8) for every target. It is the
/// lowest version that has every feature the IR uses, and every driver able to run an
/// sm_90 GPU accepts it; `ptxas` from CUDA 12.x assembles it for sm_50..sm_90.
pub const PTX_VERSION: (u32, u32) = (7, 8);

/// A PTX target.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Target {
    /// Compute capability times ten plus minor: 61, 75, 80, 86, 89, 90.
    pub sm: u32,
    pub ptx_version: (u32, u32),
}

/// The targets that generated kernels are assembled for in CI.
pub const ASSEMBLY_TARGETS: [u32; 5] = [75, 80, 86, 89, 90];

/// Instruction features that depend on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// `dp4a`: sm_61.
    Dp4a,
    /// `shfl.sync`: sm_30, PTX 6.0.
    ShflSync,
    /// `.L1::no_allocate`, `.L1::evict_*` on loads and stores: sm_70, PTX 7.4.
    L1EvictionPriority,
    /// `createpolicy` and `.L2::cache_hint`: sm_80, PTX 7.4.
    CachePolicy,
    /// `cvt.rn.f16x2.f32`: sm_80.
    CvtPackF16x2,
    /// bf16 conversions: sm_80.
    Bf16,
    /// `tanh.approx.f32`: sm_75, PTX 7.0.
    TanhApprox,
    /// `griddepcontrol` (programmatic dependent launch): sm_90, PTX 7.8.
    GridDependency,
}

impl Feature {
    pub fn describe(self) -> &'static str {
        match self {
            Feature::Dp4a => "dp4a (sm_61+)",
            Feature::ShflSync => "shfl.sync (sm_30+, PTX 6.0)",
            Feature::L1EvictionPriority => "L1 eviction priority hints (sm_70+, PTX 7.4)",
            Feature::CachePolicy => "createpolicy / .L2::cache_hint (sm_80+, PTX 7.4)",
            Feature::CvtPackF16x2 => "cvt.rn.f16x2.f32 (sm_80+)",
            Feature::Bf16 => "bf16 conversions (sm_80+)",
            Feature::TanhApprox => "tanh.approx.f32 (sm_75+, PTX 7.0)",
            Feature::GridDependency => "griddepcontrol (sm_90+, PTX 7.8)",
        }
    }

    fn needs(self) -> (u32, (u32, u32)) {
        match self {
            Feature::Dp4a => (61, (5, 0)),
            Feature::ShflSync => (30, (6, 0)),
            Feature::L1EvictionPriority => (70, (7, 4)),
            Feature::CachePolicy => (80, (7, 4)),
            Feature::CvtPackF16x2 => (80, (7, 0)),
            Feature::Bf16 => (80, (7, 0)),
            Feature::TanhApprox => (75, (7, 0)),
            Feature::GridDependency => (90, (7, 8)),
        }
    }
}

impl Target {
    /// `sm_XX` with the project's PTX version.
    pub const fn sm(sm: u32) -> Target {
        Target {
            sm,
            ptx_version: PTX_VERSION,
        }
    }

    /// The default for DP4A kernels: sm_61 PTX, which every GPU with dp4a runs.
    pub const fn dp4a_default() -> Target {
        Target::sm(61)
    }

    pub fn allows(self, f: Feature) -> bool {
        let (sm, v) = f.needs();
        self.sm >= sm && self.ptx_version >= v
    }

    /// The target to generate for a device of compute capability `sm` (major * 10 + minor):
    /// its own, up to the newest target the kernels are assembled for in CI.
    pub fn for_device(sm: u32) -> Target {
        let newest = ASSEMBLY_TARGETS[ASSEMBLY_TARGETS.len() - 1];
        Target::sm(sm.min(newest))
    }

    /// Parses `sm_XX` (or `XX`).
    pub fn parse(s: &str) -> Option<Target> {
        let digits = s.strip_prefix("sm_").unwrap_or(s);
        let sm: u32 = digits.parse().ok()?;
        (50..=120).contains(&sm).then_some(Target::sm(sm))
    }
}

impl Default for Target {
    fn default() -> Target {
        Target::dp4a_default()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sm_{} (PTX {}.{})",
            self.sm, self.ptx_version.0, self.ptx_version.1
        )
    }
}
