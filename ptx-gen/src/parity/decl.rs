//! What a generator claims about its batched kernel: M, how a thread finds vector v, and
//! how each parameter is addressed per vector. The checker verifies the claim from the
//! parsed PTX; it never trusts it.

use serde::{Deserialize, Serialize};

/// How the batched kernel reaches vector v.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "style")]
pub enum VectorIndex {
    /// Every thread handles all M vectors: the single kernel's per-vector work repeated M
    /// times (unrolled, or in a loop with a constant trip count), vector v's per-vector
    /// buffers at constant offsets `v * stride`.
    Unrolled,
    /// One vector per block along a grid axis: v = `%ctaid.<axis>`, the grid has M blocks
    /// on that axis (the single kernel's grid has 1), and the per-vector offsets are
    /// `%ctaid.<axis> * stride`.
    Grid { axis: GridAxis },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GridAxis {
    Y,
    Z,
}

impl GridAxis {
    pub fn index(self) -> usize {
        match self {
            GridAxis::Y => 1,
            GridAxis::Z => 2,
        }
    }

    pub fn suffix(self) -> &'static str {
        match self {
            GridAxis::Y => "y",
            GridAxis::Z => "z",
        }
    }
}

/// How the batched kernel addresses one parameter for vector v.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "role")]
pub enum ParamRole {
    /// The same value or buffer for every vector (weights, bias, norm weights, a KV cache
    /// shared by all): read exactly as the single kernel reads it.
    Shared,
    /// One region per vector (x, y, residual, per-sequence KV caches): vector v's region
    /// starts `v * stride_bytes` after the pointer, and is read and written exactly as the
    /// single kernel reads and writes its buffer.
    PerVector { stride_bytes: u64 },
    /// Batched only: a table of one scalar per vector (positions, sequence lengths) that
    /// replaces the single kernel's by-value parameter `replaces`: vector v's value is
    /// loaded from global memory at `table + v * stride_bytes`.
    ScalarTable { replaces: String, stride_bytes: u64 },
}

/// One parameter of the batched kernel and its role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamBatching {
    pub name: String,
    #[serde(flatten)]
    pub role: ParamRole,
}

/// The batching claim for one batched kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchDecl {
    /// Vectors per launch (2 ..= 16 for the generators; any M ≥ 1 is checked).
    pub m: u32,
    pub index: VectorIndex,
    /// Every parameter of the batched kernel, in any order.
    pub params: Vec<ParamBatching>,
    /// Shared-memory variables with one copy per vector: the single kernel declares `base`,
    /// the batched kernel `base` for vector 0 and [`per_vector_shared_name`]`(base, v)` for
    /// each later vector, every copy declared as the single kernel's. Vector v's computation
    /// must use its own copy exactly as the single kernel uses `base`, so the M copies can
    /// all be live at once (a staged input) where one variable reused vector after vector
    /// would need a barrier between uses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_vector_shared: Vec<String>,
}

/// The name of vector `v`'s copy of the per-vector shared variable `base`: `base` itself
/// for vector 0, `base_v<v>` after.
pub fn per_vector_shared_name(base: &str, v: u32) -> String {
    if v == 0 {
        base.to_string()
    } else {
        format!("{base}_v{v}")
    }
}

impl BatchDecl {
    /// M vectors handled by every thread.
    pub fn unrolled(m: u32) -> BatchDecl {
        BatchDecl {
            m,
            index: VectorIndex::Unrolled,
            params: Vec::new(),
            per_vector_shared: Vec::new(),
        }
    }

    /// M vectors over the grid axis `axis`.
    pub fn grid(m: u32, axis: GridAxis) -> BatchDecl {
        BatchDecl {
            m,
            index: VectorIndex::Grid { axis },
            params: Vec::new(),
            per_vector_shared: Vec::new(),
        }
    }

    pub fn shared(self, name: &str) -> BatchDecl {
        self.with(name, ParamRole::Shared)
    }

    pub fn per_vector(self, name: &str, stride_bytes: u64) -> BatchDecl {
        self.with(name, ParamRole::PerVector { stride_bytes })
    }

    pub fn scalar_table(self, name: &str, replaces: &str, stride_bytes: u64) -> BatchDecl {
        self.with(
            name,
            ParamRole::ScalarTable {
                replaces: replaces.to_string(),
                stride_bytes,
            },
        )
    }

    pub fn with(mut self, name: &str, role: ParamRole) -> BatchDecl {
        self.params.push(ParamBatching {
            name: name.to_string(),
            role,
        });
        self
    }

    /// Declares the shared-memory variable `base` per-vector (see
    /// [`BatchDecl::per_vector_shared`]).
    pub fn shared_per_vector(mut self, base: &str) -> BatchDecl {
        self.per_vector_shared.push(base.to_string());
        self
    }

    pub fn role(&self, name: &str) -> Option<&ParamRole> {
        self.params.iter().find(|p| p.name == name).map(|p| &p.role)
    }
}
