//! Validation of a generated kernel directory: every module re-parsed and statically checked,
//! its sha256 compared with the manifest, batched kernels proven equal to their single twins,
//! and (when a ptxas is given) every module assembled for the supported targets.

use std::path::{Path, PathBuf};

use serde::Serialize;

use ptx_gen::check::check_module;
use ptx_gen::parity::{validate_pairs, KernelSource, PairInput};
use ptx_gen::parse::parse_module;
use ptx_gen::target::ASSEMBLY_TARGETS;

use crate::kernel_set::sha256_hex;
use crate::manifest::Manifest;
use crate::ptxas::Ptxas;

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kernel: String,
    pub check: String,
    pub message: String,
}

/// The result of validating a directory.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ValidationReport {
    pub kernels: usize,
    pub parity_pairs: usize,
    pub assembled: usize,
    pub findings: Vec<Finding>,
}

impl ValidationReport {
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Why a directory could not be validated at all.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("{path}: {message}")]
    Manifest { path: PathBuf, message: String },
}

/// Reads `dir/manifest.json`.
pub fn read_manifest(dir: &Path) -> Result<Manifest, ValidateError> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|e| ValidateError::Manifest {
        path: path.clone(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| ValidateError::Manifest {
        path,
        message: format!("not a ptxforge manifest: {e}"),
    })
}

/// Validates every kernel of `dir`; `ptxas` also assembles each for sm_75..sm_90.
pub fn validate_dir(dir: &Path, ptxas: Option<&Ptxas>) -> Result<ValidationReport, ValidateError> {
    let manifest = read_manifest(dir)?;
    let mut report = ValidationReport {
        kernels: manifest.kernels.len(),
        ..Default::default()
    };
    let mut find = |kernel: &str, check: &str, message: String| {
        report.findings.push(Finding {
            kernel: kernel.to_string(),
            check: check.to_string(),
            message,
        })
    };
    let mut texts = Vec::new();
    for k in &manifest.kernels {
        let path = dir.join(&k.file);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                find(&k.name, "file", format!("{}: {e}", path.display()));
                continue;
            }
        };
        let sha = sha256_hex(text.as_bytes());
        if sha != k.sha256 {
            find(
                &k.name,
                "sha256",
                format!(
                    "{} has sha256 {sha}, the manifest says {}",
                    k.file, k.sha256
                ),
            );
        }
        match parse_module(&text) {
            Err(e) => find(&k.name, "parse", e.to_string()),
            Ok(m) => {
                if !m.entries().any(|f| f.name == k.name) {
                    find(
                        &k.name,
                        "entry",
                        format!("{} has no entry named {}", k.file, k.name),
                    );
                }
                for f in check_module(&m) {
                    find(&k.name, "static", f.to_string());
                }
            }
        }
        texts.push((k, text));
    }
    // Structural parity of every batched kernel with its single twin.
    let mut pairs = Vec::new();
    for (k, text) in &texts {
        let Some(single) = &k.single else { continue };
        let Some(decl) = k.spec.batch_decl() else {
            find(
                &k.name,
                "parity",
                "a batched kernel whose spec makes no batching claim".into(),
            );
            continue;
        };
        match texts.iter().find(|(s, _)| &s.name == single) {
            Some((s, stext)) => pairs.push((*s, stext.as_str(), *k, text.as_str(), decl)),
            None => find(
                &k.name,
                "parity",
                format!("its single twin {single} is not in the manifest"),
            ),
        }
    }
    let inputs: Vec<PairInput> = pairs
        .iter()
        .map(|(s, st, b, bt, d)| PairInput {
            single: KernelSource::text(&s.name, st)
                .with_launch(&s.launch)
                .with_params(&s.params),
            batched: KernelSource::text(&b.name, bt)
                .with_launch(&b.launch)
                .with_params(&b.params),
            decl: d,
        })
        .collect();
    let parity = validate_pairs(&inputs);
    report.parity_pairs = parity.pairs.len();
    for p in parity.failures() {
        find(&p.batched, "parity", p.to_string());
    }
    if let Some(ptxas) = ptxas {
        for (k, text) in &texts {
            for sm in ASSEMBLY_TARGETS {
                match ptxas.assemble(text, sm) {
                    Ok(r) => {
                        report.assembled += 1;
                        for res in r
                            .kernels
                            .iter()
                            .filter(|r| r.spill_store_bytes + r.spill_load_bytes > 0)
                        {
                            find(
                                &k.name,
                                "ptxas",
                                format!(
                                    "sm_{sm}: {} spill bytes",
                                    res.spill_store_bytes + res.spill_load_bytes
                                ),
                            );
                        }
                    }
                    Err(e) => find(&k.name, "ptxas", e.to_string()),
                }
            }
        }
    }
    Ok(report)
}
