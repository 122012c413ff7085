//! `ptxforge bench`: GPU kernel timings (needs a CUDA GPU).

use std::path::PathBuf;

use clap::Args;
use ptx_gen::Target;

use crate::bench;
use crate::runtime::{Device, RuntimeError};

use super::CliError;

/// Time the GEMV kernels on GPU 0 at DRAM bandwidth (weights rotated over > 2x L2), next to a
/// device-to-device copy measured in the same run.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Shapes `NxK` (rows x columns of W).
    #[arg(long, value_delimiter = ',', default_value = "14336x4096,4096x14336")]
    pub shapes: Vec<String>,
    /// Batch sizes (vectors per launch).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub batches: Vec<u32>,
    /// GEMV tiles to measure each kernel with (`r<rows per warp>w<warps>l<lookahead>`,
    /// e.g. r2w4l0); by default each kernel's own tile.
    #[arg(long, value_delimiter = ',')]
    pub tiles: Vec<String>,
    /// Attention split-kernel tunes to measure (`t<max tile>k<K-copy passes>v<V rows>[p]`,
    /// `p` = V prefetched before the K copy; e.g. t64k16v32p); by default the kernel's own.
    #[arg(long, value_delimiter = ',')]
    pub attention_tunes: Vec<String>,
    /// PTX target of the generated kernels: `sm_XX`, or `native` for the GPU's own
    /// (capped at sm_90).
    #[arg(long, default_value = "native")]
    pub target: String,
    /// Launch every kernel fully serialized, without programmatic dependent launch (which
    /// sm_90+ targets otherwise use to overlap a kernel with its predecessor's tail).
    #[arg(long)]
    pub serialized: bool,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Skip the GEMV kernels (only the decode steps).
    #[arg(long)]
    pub skip_gemv: bool,
    /// Decode-step bench of presets with random weights of their real dims and types.
    #[arg(long, value_delimiter = ',')]
    pub decode: Vec<String>,
    /// Decode-step bench of model files (GGUF or safetensors).
    #[arg(long)]
    pub model: Vec<PathBuf>,
    /// Batch sizes of the decode-step bench.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub decode_batches: Vec<u32>,
    /// Position every sequence decodes at in the decode-step bench.
    #[arg(long, default_value_t = 512)]
    pub context: u32,
    /// Launch kernels one by one instead of replaying CUDA graphs (decode bench).
    #[arg(long)]
    pub no_graphs: bool,
}

/// GEMV rows and decode rows of one run.
#[derive(Debug, serde::Serialize)]
struct FullReport {
    gemv: Option<bench::BenchReport>,
    copy_gb_per_s: f64,
    decode: Vec<bench::decode::DecodeRow>,
}

fn shape(s: &str) -> Result<(u32, u32), CliError> {
    let bad = || {
        CliError::usage(format!(
            "--shapes: expected NxK (e.g. 4096x14336), got `{s}`"
        ))
    };
    let (n, k) = s.split_once('x').ok_or_else(bad)?;
    Ok((n.parse().map_err(|_| bad())?, k.parse().map_err(|_| bad())?))
}

pub fn run(args: &BenchArgs) -> Result<(), CliError> {
    let parsed = match args.target.as_str() {
        "native" => None,
        t => Some(Target::parse(t).ok_or_else(|| {
            CliError::usage(format!("--target: expected sm_XX or native, got `{t}`"))
        })?),
    };
    let shapes = args
        .shapes
        .iter()
        .map(|s| shape(s))
        .collect::<Result<Vec<_>, _>>()?;
    let device = Device::open(0).map_err(|e| match e {
        RuntimeError::NoDriver | RuntimeError::NoDevice { .. } => {
            CliError::usage(format!("bench needs a CUDA GPU: {e}"))
        }
        other => CliError::internal(other.to_string()),
    })?;
    let internal = |e: RuntimeError| CliError::internal(e.to_string());
    let target = parsed.unwrap_or_else(|| Target::for_device(device.sm()));
    let dependent = !args.serialized;
    tracing::info!(%target, dependent_launch = dependent, "bench target");
    let gemv = if args.skip_gemv {
        None
    } else {
        let tiles = args
            .tiles
            .iter()
            .map(|t| t.parse::<ptx_gen::kernels::GemvTile>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CliError::usage(format!("--tiles: {e}")))?;
        let tunes = args
            .attention_tunes
            .iter()
            .map(|t| t.parse::<ptx_gen::kernels::AttentionTune>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CliError::usage(format!("--attention-tunes: {e}")))?;
        let mut report = bench::gemv(&device, &shapes, &args.batches, &tiles, target, dependent)
            .map_err(internal)?;
        // Attention, RMSNorm + quantize and RoPE + KV write at llama3-8b's dims.
        report.rows.extend(
            bench::kernels::kernels(&device, target, dependent, &tunes, report.copy_gb_per_s)
                .map_err(internal)?,
        );
        print!("{}", report.table());
        Some(report)
    };
    let copy = match &gemv {
        Some(g) => g.copy_gb_per_s,
        None => bench::copy_bandwidth(&device).map_err(internal)?,
    };
    let mut decode = Vec::new();
    let max_context = args.context + 1;
    let registry = crate::Registry::builtin().map_err(|e| CliError::internal(e.to_string()))?;
    let rows_of = |weights: &crate::model::ModelWeights<'_>| -> Result<Vec<_>, CliError> {
        let engine = bench::decode::bench_engine(
            &device,
            weights,
            &args.decode_batches,
            max_context,
            !args.no_graphs,
            target,
            dependent,
        )
        .map_err(internal)?;
        bench::decode::decode_rows(&engine, weights, &args.decode_batches, args.context, copy)
            .map_err(internal)
    };
    for preset in &args.decode {
        let spec = registry
            .preset_spec(preset)
            .map_err(|e| CliError::usage(e.to_string()))?;
        let weights = crate::model::ModelWeights::random(spec, 0x5eed)
            .map_err(|e| CliError::internal(e.to_string()))?;
        for mut r in rows_of(&weights)? {
            r.model = format!("{preset} (random)");
            decode.push(r);
        }
    }
    for path in &args.model {
        let bound =
            crate::model::open_checked(path, &registry, &crate::model::SupportedTypes::all())
                .map_err(|e| CliError::usage(e.to_string()))?;
        let weights =
            crate::model::ModelWeights::from_bound(&bound, crate::model::WeightQuant::Q8_0)
                .map_err(|e| CliError::usage(e.to_string()))?;
        decode.extend(rows_of(&weights)?);
    }
    if !decode.is_empty() {
        println!(
            "decode steps (copy {copy:.0} GB/s; graphs {}):",
            if args.no_graphs { "off" } else { "on" }
        );
        print!("{}", bench::decode::decode_table(&decode));
    }
    if let Some(path) = &args.json {
        let report = FullReport {
            gemv,
            copy_gb_per_s: copy,
            decode,
        };
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| CliError::internal(e.to_string()))?;
        std::fs::write(path, text)
            .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}
