//! The parity report: per pair of kernels, every check with its result and findings.
//! Serialisable (JSON in `parity.json`), and printable for people.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::decl::VectorIndex;

/// Which rule a finding breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// Both kernels parse, the entries exist, and their control flow can be analysed.
    Analysis,
    /// Rule 1: the parameter lists (and `.maxntid`/`.reqntid`) agree, up to the declared
    /// batching parameters; declared strides fit the buffers.
    Params,
    /// The launch shapes agree (the batched grid has M blocks along the batching axis).
    Launch,
    /// Rule 4b: for every vector, the batched kernel writes exactly the outputs the single
    /// kernel writes, at the declared per-vector offsets; nothing missing, nothing extra.
    Outputs,
    /// Rule 2: the per-vector dataflow into every output is the single kernel's.
    Dataflow,
    /// Rule 3: the reductions (shuffles, shared-memory trees, barriers) have the same shape.
    Reduction,
    /// Rule 4a: bounds checks, guards, branches and loops decide the same things.
    Control,
}

impl CheckKind {
    pub const ALL: [CheckKind; 7] = [
        CheckKind::Analysis,
        CheckKind::Params,
        CheckKind::Launch,
        CheckKind::Outputs,
        CheckKind::Dataflow,
        CheckKind::Reduction,
        CheckKind::Control,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CheckKind::Analysis => "analysis",
            CheckKind::Params => "params",
            CheckKind::Launch => "launch",
            CheckKind::Outputs => "outputs",
            CheckKind::Dataflow => "dataflow",
            CheckKind::Reduction => "reduction",
            CheckKind::Control => "control",
        }
    }
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    Fail,
    /// Not run: an earlier check failed, or the input lacks what it needs (a launch spec).
    Skipped,
}

/// One violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub check: CheckKind,
    /// The vectors it concerns; empty when it concerns the kernels as a whole.
    pub vectors: Vec<u32>,
    pub message: String,
    /// The instruction (or immediate, parameter) of the single kernel involved.
    pub single: Option<String>,
    /// The instruction of the batched kernel involved.
    pub batched: Option<String>,
    /// The output instruction whose backward slice the difference is in.
    pub output: Option<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.check)?;
        if !self.vectors.is_empty() {
            write!(
                f,
                " vector{} {}",
                if self.vectors.len() > 1 { "s" } else { "" },
                vector_list(&self.vectors)
            )?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(s) = &self.single {
            write!(f, "\n    single:  {s}")?;
        }
        if let Some(b) = &self.batched {
            write!(f, "\n    batched: {b}")?;
        }
        if let Some(o) = &self.output {
            write!(f, "\n    in the slice of output {o}")?;
        }
        Ok(())
    }
}

/// `0..=3, 7`.
fn vector_list(v: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut k = 0;
    while k < v.len() {
        let mut e = k;
        while e + 1 < v.len() && v[e + 1] == v[e] + 1 {
            e += 1;
        }
        parts.push(if e > k {
            format!("{}..={}", v[k], v[e])
        } else {
            v[k].to_string()
        });
        k = e + 1;
    }
    parts.join(", ")
}

/// One check of one pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub check: CheckKind,
    pub status: CheckStatus,
    /// Why a check was skipped, or what it covered.
    pub note: Option<String>,
    pub findings: Vec<Finding>,
}

/// The result for one batched kernel and its single-vector twin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairReport {
    pub single: String,
    pub batched: String,
    pub m: u32,
    pub index: VectorIndex,
    pub checks: Vec<CheckResult>,
    /// Outputs of the single kernel, and output slices compared (outputs × vectors).
    pub outputs: usize,
    pub slices_compared: usize,
}

impl PairReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.status != CheckStatus::Fail)
    }

    pub fn check(&self, kind: CheckKind) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.check == kind)
    }

    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.checks.iter().flat_map(|c| c.findings.iter())
    }
}

impl fmt::Display for PairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        writeln!(
            f,
            "{verdict} {} (M = {}) vs {}",
            self.batched, self.m, self.single
        )?;
        for c in &self.checks {
            let s = match c.status {
                CheckStatus::Pass => "pass",
                CheckStatus::Fail => "FAIL",
                CheckStatus::Skipped => "skipped",
            };
            write!(f, "  {:<10} {s}", c.check.name())?;
            if let Some(n) = &c.note {
                write!(f, " ({n})")?;
            }
            writeln!(f)?;
            for x in &c.findings {
                for line in x.to_string().lines() {
                    writeln!(f, "    {line}")?;
                }
            }
        }
        Ok(())
    }
}

/// Parity of a whole kernel set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParityReport {
    pub pairs: Vec<PairReport>,
}

impl ParityReport {
    pub fn passed(&self) -> bool {
        self.pairs.iter().all(PairReport::passed)
    }

    /// The pairs that failed.
    pub fn failures(&self) -> impl Iterator<Item = &PairReport> {
        self.pairs.iter().filter(|p| !p.passed())
    }
}

impl fmt::Display for ParityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failed = self.failures().count();
        writeln!(f, "parity: {} pair(s), {} failed", self.pairs.len(), failed)?;
        for p in &self.pairs {
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::vector_list;

    #[test]
    fn vector_lists_compress_runs() {
        assert_eq!(vector_list(&[0, 1, 2, 3, 7]), "0..=3, 7");
        assert_eq!(vector_list(&[5]), "5");
    }
}
