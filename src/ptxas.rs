//! The ptxas harness: assembles generated PTX with NVIDIA's `ptxas` for a GPU architecture
//! and returns what it reports (registers, spills, shared memory) as typed data.
//!
//! The binary is located by the caller (the `PTXAS` variable, then `PATH`; see
//! [`Ptxas::locate`]) so that library code reads no environment of its own.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A ptxas failure.
#[derive(Debug, thiserror::Error)]
pub enum PtxasError {
    #[error("ptxas not found: set PTXAS to its path or put it on PATH (it ships in the PyPI package nvidia-cuda-nvcc-cu12)")]
    NotFound,
    #[error("could not run {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ptxas rejected the module for sm_{sm} (exit {status}); reproduce with `{command}`:\n{stderr}")]
    Rejected {
        sm: u32,
        status: i32,
        stderr: String,
        command: String,
    },
    #[error("could not read ptxas -v output for sm_{sm}: {line}")]
    Unreadable { sm: u32, line: String },
}

/// Resources ptxas reports for one entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelResources {
    pub name: String,
    pub registers: u32,
    pub barriers: u32,
    pub stack_frame_bytes: u32,
    pub spill_store_bytes: u32,
    pub spill_load_bytes: u32,
    pub shared_bytes: u32,
}

/// The result of assembling one module for one architecture.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AssembleReport {
    pub sm: u32,
    pub kernels: Vec<KernelResources>,
    /// `ptxas warning` lines.
    pub warnings: Vec<String>,
}

/// A located ptxas binary.
#[derive(Debug, Clone)]
pub struct Ptxas {
    path: PathBuf,
}

impl Ptxas {
    /// Uses the binary at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Ptxas {
        Ptxas { path: path.into() }
    }

    /// Finds ptxas: `ptxas_var` (the value of `PTXAS`) when set, else the first `ptxas` in
    /// the directories of `path_var` (the value of `PATH`).
    pub fn locate(
        ptxas_var: Option<OsString>,
        path_var: Option<OsString>,
    ) -> Result<Ptxas, PtxasError> {
        if let Some(p) = ptxas_var.filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            return if p.is_file() {
                Ok(Ptxas::at(p))
            } else {
                Err(PtxasError::NotFound)
            };
        }
        let path_var = path_var.ok_or(PtxasError::NotFound)?;
        std::env::split_paths(&path_var)
            .map(|d| d.join("ptxas"))
            .find(|p| p.is_file())
            .map(Ptxas::at)
            .ok_or(PtxasError::NotFound)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `ptxas --version`, last line.
    pub fn version(&self) -> Result<String, PtxasError> {
        let out = Command::new(&self.path)
            .arg("--version")
            .output()
            .map_err(|source| PtxasError::Spawn {
                path: self.path.clone(),
                source,
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string())
    }

    /// Assembles `ptx` for `sm_XX` with `-v` (the cubin is discarded).
    pub fn assemble(&self, ptx: &str, sm: u32) -> Result<AssembleReport, PtxasError> {
        let arch = format!("-arch=sm_{sm}");
        let mut child = Command::new(&self.path)
            .args([arch.as_str(), "-v", "-o", "/dev/null", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| PtxasError::Spawn {
                path: self.path.clone(),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(ptx.as_bytes())
                .map_err(|source| PtxasError::Spawn {
                    path: self.path.clone(),
                    source,
                })?;
        }
        let out = child
            .wait_with_output()
            .map_err(|source| PtxasError::Spawn {
                path: self.path.clone(),
                source,
            })?;
        // ptxas writes -v info to stdout or stderr depending on the version; read both.
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            return Err(PtxasError::Rejected {
                sm,
                status: out.status.code().unwrap_or(-1),
                stderr: text,
                command: format!("{} {arch} -v -o /dev/null module.ptx", self.path.display()),
            });
        }
        parse_verbose(&text, sm)
    }
}

fn number_before(line: &str, unit: &str) -> Option<u32> {
    let idx = line.find(unit)?;
    line[..idx].split_whitespace().last()?.parse().ok()
}

/// Reads the `-v` report: one `Compiling entry function 'NAME'` section per entry.
pub fn parse_verbose(text: &str, sm: u32) -> Result<AssembleReport, PtxasError> {
    let mut kernels: Vec<KernelResources> = Vec::new();
    let mut warnings = Vec::new();
    for line in text.lines() {
        let unreadable = || PtxasError::Unreadable {
            sm,
            line: line.to_string(),
        };
        if line.contains("ptxas warning") {
            warnings.push(line.trim().to_string());
        } else if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().ok_or_else(unreadable)?;
            kernels.push(KernelResources {
                name: name.to_string(),
                ..Default::default()
            });
        } else if line.contains("bytes stack frame") {
            let k = kernels.last_mut().ok_or_else(unreadable)?;
            k.stack_frame_bytes =
                number_before(line, "bytes stack frame").ok_or_else(unreadable)?;
            k.spill_store_bytes =
                number_before(line, "bytes spill stores").ok_or_else(unreadable)?;
            k.spill_load_bytes = number_before(line, "bytes spill loads").ok_or_else(unreadable)?;
        } else if line.contains("Used ") && line.contains("registers") {
            let k = kernels.last_mut().ok_or_else(unreadable)?;
            k.registers = number_before(line, "registers").ok_or_else(unreadable)?;
            k.barriers = number_before(line, "barriers").unwrap_or(0);
            k.shared_bytes = number_before(line, "bytes smem").unwrap_or(0);
        }
    }
    Ok(AssembleReport {
        sm,
        kernels,
        warnings,
    })
}
