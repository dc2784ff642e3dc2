//! `llmrt quantize IN.gguf OUT.gguf TYPE`: requantize a model with the reference quantizers.
//!
//! Every tensor is dequantized to f32; every 2-D tensor whose rows are whole 32-element blocks
//! is quantized to TYPE with ggml's reference algorithm, every other tensor (norms, biases) is
//! stored as F32. Metadata is copied with `general.file_type` set to match. This is how the
//! Q4_0 and Q8_0 SmolLM2 test models are made from the Q4_1 file.

use std::borrow::Cow;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use llmrt::gguf::{GgufFile, GgufWriter, TensorInfo, Value};
use llmrt::quant::{dequantize_row, quantize::quantize_row, GgmlType, Simd};
use llmrt::{Error, Result};
use rayon::prelude::*;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF file to read.
    pub input: PathBuf,
    /// The GGUF file to write (replaced if it exists).
    pub output: PathBuf,
    /// The block type for 2-D tensors.
    #[arg(value_enum, value_name = "TYPE")]
    pub ty: TargetType,
}

/// The types the reference quantizers produce.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum TargetType {
    #[value(name = "q4_0")]
    Q4_0,
    #[value(name = "q4_1")]
    Q4_1,
    #[value(name = "q5_0")]
    Q5_0,
    #[value(name = "q5_1")]
    Q5_1,
    #[value(name = "q8_0")]
    Q8_0,
}

impl TargetType {
    fn ggml_type(self) -> GgmlType {
        match self {
            TargetType::Q4_0 => GgmlType::Q4_0,
            TargetType::Q4_1 => GgmlType::Q4_1,
            TargetType::Q5_0 => GgmlType::Q5_0,
            TargetType::Q5_1 => GgmlType::Q5_1,
            TargetType::Q8_0 => GgmlType::Q8_0,
        }
    }

    /// The `general.file_type` (llama.cpp's `llama_ftype`) of a model mostly of this type.
    fn file_type(self) -> u32 {
        match self {
            TargetType::Q4_0 => 2,
            TargetType::Q4_1 => 3,
            TargetType::Q5_0 => 8,
            TargetType::Q5_1 => 9,
            TargetType::Q8_0 => 7,
        }
    }
}

/// The type a tensor of these dims is stored as in the output.
fn output_type(dims: &[u64], target: GgmlType) -> GgmlType {
    let whole_blocks = dims[0].is_multiple_of(target.block_size() as u64);
    if dims.len() == 2 && whole_blocks {
        target
    } else {
        GgmlType::F32
    }
}

pub fn run(args: Args) -> Result<()> {
    let input = GgufFile::open(&args.input)?;
    let target = args.ty.ggml_type();
    let simd = Simd::detect();

    let total: u64 = input.tensors().iter().map(TensorInfo::n_elements).sum();
    let progress = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    progress.set_style(
        ProgressStyle::with_template(
            "{msg:>8} [{bar:40}] {percent:>3}% {human_pos}/{human_len} weights, eta {eta}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.set_message(target.name());

    let mut writer = GgufWriter::new();
    for (key, value) in input.metadata() {
        writer.set(key, value.clone());
    }
    writer.set("general.file_type", Value::U32(args.ty.file_type()));

    let mut quantized = 0usize;
    for info in input.tensors() {
        let ty = output_type(&info.dims, target);
        let data = convert_tensor(&input, info, ty, simd, &progress)?;
        quantized += usize::from(ty == target);
        writer.add_tensor(info.name.clone(), info.dims.clone(), ty, Cow::Owned(data))?;
    }
    progress.finish_and_clear();
    // Write beside the destination and rename, so that an interrupted run never leaves a
    // truncated file under the final name.
    let mut partial = args.output.clone().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    writer.write_file(&partial)?;
    std::fs::rename(&partial, &args.output).map_err(|e| Error::io(&args.output, e))?;
    eprintln!(
        "wrote {}: {} tensors, {quantized} as {target}, {} as F32",
        args.output.display(),
        input.tensors().len(),
        input.tensors().len() - quantized
    );
    Ok(())
}

/// Dequantizes `info`'s rows to f32 and stores them as `ty`, rows in parallel.
fn convert_tensor(
    file: &GgufFile,
    info: &TensorInfo,
    ty: GgmlType,
    simd: Simd,
    progress: &ProgressBar,
) -> Result<Vec<u8>> {
    let with_tensor = |e: Error| match e {
        Error::UnsupportedTensorType { ty, .. } => Error::UnsupportedTensorType {
            tensor: info.name.clone(),
            ty,
        },
        other => other,
    };
    let row_len = info.dims[0];
    let n_rows = info.n_rows();
    // The reader checked that the row length is whole blocks of the input type, and the output
    // type is F32 or was chosen because rows are whole blocks of it.
    let (Some(src_row_bytes), Some(dst_row_bytes)) =
        (info.ty.row_bytes(row_len), ty.row_bytes(row_len))
    else {
        return Err(Error::InvalidArgument(format!(
            "tensor `{}`: rows of {row_len} are not whole blocks",
            info.name
        )));
    };
    let dst_len = usize::try_from(dst_row_bytes * n_rows)
        .map_err(|_| Error::InvalidArgument(format!("tensor `{}` is too large", info.name)))?;
    let mut out = vec![0u8; dst_len];
    let src = file.tensor_data(info);
    out.par_chunks_mut(dst_row_bytes as usize)
        .zip(src.par_chunks(src_row_bytes as usize))
        .try_for_each_init(
            || vec![0f32; row_len as usize],
            |row, (dst, src)| {
                dequantize_row(info.ty, src, row, simd).map_err(with_tensor)?;
                if ty == GgmlType::F32 {
                    for (bytes, v) in dst.chunks_exact_mut(4).zip(row.iter()) {
                        bytes.copy_from_slice(&v.to_le_bytes());
                    }
                } else {
                    quantize_row(ty, row, dst)?;
                }
                progress.inc(row_len);
                Ok::<(), Error>(())
            },
        )?;
    Ok(out)
}
