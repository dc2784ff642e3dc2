//! `llmrt inspect MODEL [--json]`: a model summary, the metadata and the tensor table of a GGUF
//! file, like gguf-dump.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;

use llmrt::gguf::{GgufFile, Value};
use serde::Serialize;
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF file.
    pub model: PathBuf,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> llmrt::Result<()> {
    let file = GgufFile::open(&args.model)?;
    let summary = Summary::of(&file, &args.model);
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let written = if args.json {
        write_json(&mut out, &summary, &file)
    } else {
        write_text(&mut out, &summary, &file)
    }
    .and_then(|()| out.flush());
    match written {
        // A closed pipe (`llmrt inspect m.gguf | head`) is the reader's choice, not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(llmrt::Error::io("standard output", e)),
        Ok(()) => Ok(()),
    }
}

/// The model-level facts, read from well-known metadata keys (absent ones are `None`).
#[derive(Serialize)]
struct Summary {
    file: String,
    file_size: usize,
    gguf_version: u32,
    alignment: u64,
    data_offset: usize,
    architecture: Option<String>,
    name: Option<String>,
    parameter_count: u64,
    file_type: Option<String>,
    file_type_id: Option<u32>,
    context_length: Option<u64>,
    embedding_length: Option<u64>,
    block_count: Option<u64>,
    head_count: Option<u64>,
    head_count_kv: Option<u64>,
    vocab_size: Option<usize>,
    tokenizer_model: Option<String>,
    tokenizer_pre: Option<String>,
    has_chat_template: bool,
    tensor_count: usize,
    /// Number of tensors of each type, by type name.
    tensor_types: BTreeMap<String, usize>,
}

impl Summary {
    fn of(file: &GgufFile, path: &std::path::Path) -> Summary {
        let string = |key: &str| file.get(key).and_then(Value::as_str).map(str::to_string);
        let integer = |key: &str| {
            file.get(key)
                .and_then(Value::as_integer)
                .and_then(|i| u64::try_from(i).ok())
        };
        let architecture = string("general.architecture");
        let arch_key = |suffix: &str| {
            architecture
                .as_deref()
                .and_then(|arch| integer(&format!("{arch}.{suffix}")))
        };
        let file_type_id = integer("general.file_type").and_then(|t| u32::try_from(t).ok());
        let mut tensor_types = BTreeMap::new();
        for t in file.tensors() {
            *tensor_types.entry(t.ty.name().to_string()).or_insert(0) += 1;
        }
        Summary {
            file: path.display().to_string(),
            file_size: file.file_size(),
            gguf_version: file.version(),
            alignment: file.alignment(),
            data_offset: file.data_start(),
            name: string("general.name"),
            parameter_count: file.tensors().iter().map(|t| t.n_elements()).sum(),
            file_type: file_type_id.map(file_type_name),
            file_type_id,
            context_length: arch_key("context_length"),
            embedding_length: arch_key("embedding_length"),
            block_count: arch_key("block_count"),
            head_count: arch_key("attention.head_count"),
            head_count_kv: arch_key("attention.head_count_kv"),
            vocab_size: file
                .get("tokenizer.ggml.tokens")
                .and_then(Value::as_array)
                .map(<[Value]>::len),
            tokenizer_model: string("tokenizer.ggml.model"),
            tokenizer_pre: string("tokenizer.ggml.pre"),
            has_chat_template: file.get("tokenizer.chat_template").is_some(),
            tensor_count: file.tensors().len(),
            tensor_types,
            architecture,
        }
    }
}

/// llama.cpp's name for a `general.file_type` value (`llama_ftype`, without the `LLAMA_FTYPE_`
/// prefix).
fn file_type_name(id: u32) -> String {
    let name = match id {
        0 => "ALL_F32",
        1 => "MOSTLY_F16",
        2 => "MOSTLY_Q4_0",
        3 => "MOSTLY_Q4_1",
        4 => "MOSTLY_Q4_1_SOME_F16",
        7 => "MOSTLY_Q8_0",
        8 => "MOSTLY_Q5_0",
        9 => "MOSTLY_Q5_1",
        10 => "MOSTLY_Q2_K",
        11 => "MOSTLY_Q3_K_S",
        12 => "MOSTLY_Q3_K_M",
        13 => "MOSTLY_Q3_K_L",
        14 => "MOSTLY_Q4_K_S",
        15 => "MOSTLY_Q4_K_M",
        16 => "MOSTLY_Q5_K_S",
        17 => "MOSTLY_Q5_K_M",
        18 => "MOSTLY_Q6_K",
        19 => "MOSTLY_IQ2_XXS",
        20 => "MOSTLY_IQ2_XS",
        21 => "MOSTLY_Q2_K_S",
        22 => "MOSTLY_IQ3_XS",
        23 => "MOSTLY_IQ3_XXS",
        24 => "MOSTLY_IQ1_S",
        25 => "MOSTLY_IQ4_NL",
        26 => "MOSTLY_IQ3_S",
        27 => "MOSTLY_IQ3_M",
        28 => "MOSTLY_IQ2_S",
        29 => "MOSTLY_IQ2_M",
        30 => "MOSTLY_IQ4_XS",
        31 => "MOSTLY_IQ1_M",
        32 => "MOSTLY_BF16",
        36 => "MOSTLY_TQ1_0",
        37 => "MOSTLY_TQ2_0",
        38 => "MOSTLY_MXFP4_MOE",
        _ => return format!("UNKNOWN_{id}"),
    };
    name.to_string()
}

/// Array elements shown in listings before "… (N items)".
const ARRAY_ITEMS_SHOWN: usize = 8;
/// Characters of a string value shown in the text listing.
const STRING_CHARS_SHOWN: usize = 72;

fn write_text(out: &mut impl Write, s: &Summary, file: &GgufFile) -> io::Result<()> {
    fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
        v.as_ref().map_or("-".to_string(), T::to_string)
    }
    let types: Vec<String> = s
        .tensor_types
        .iter()
        .map(|(ty, n)| format!("{n} {ty}"))
        .collect();
    let rows: [(&str, String); 16] = [
        (
            "file",
            format!(
                "{} ({}, GGUF v{})",
                s.file,
                human_bytes(s.file_size as u64),
                s.gguf_version
            ),
        ),
        (
            "data",
            format!("from byte {}, aligned to {}", s.data_offset, s.alignment),
        ),
        ("architecture", opt(&s.architecture)),
        ("name", opt(&s.name)),
        (
            "parameters",
            format!("{} ({})", s.parameter_count, human_count(s.parameter_count)),
        ),
        (
            "file type",
            match (&s.file_type, s.file_type_id) {
                (Some(name), Some(id)) => format!("{name} ({id})"),
                _ => "-".into(),
            },
        ),
        ("context length", opt(&s.context_length)),
        ("embedding size", opt(&s.embedding_length)),
        ("layers", opt(&s.block_count)),
        ("heads", opt(&s.head_count)),
        ("KV heads", opt(&s.head_count_kv)),
        ("vocab size", opt(&s.vocab_size)),
        ("tokenizer model", opt(&s.tokenizer_model)),
        ("pre-tokenizer", opt(&s.tokenizer_pre)),
        (
            "chat template",
            if s.has_chat_template { "yes" } else { "no" }.into(),
        ),
        (
            "tensors",
            format!("{} ({})", s.tensor_count, types.join(", ")),
        ),
    ];
    for (label, value) in rows {
        writeln!(out, "{:<16} {value}", format!("{label}:"))?;
    }

    writeln!(out, "\nmetadata ({} entries):", file.metadata().len())?;
    let key_width = file
        .metadata()
        .iter()
        .map(|(k, _)| k.len())
        .max()
        .unwrap_or(0);
    for (key, value) in file.metadata() {
        writeln!(
            out,
            "  {key:<key_width$}  {:<16} {}",
            value.type_description(),
            short_value(value)
        )?;
    }

    writeln!(out, "\ntensors ({}):", file.tensors().len())?;
    let name_width = file
        .tensors()
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    writeln!(
        out,
        "  {:>5}  {:<name_width$}  {:<7} {:<22} {:>12}  {:>12}",
        "#", "name", "type", "shape", "bytes", "offset"
    )?;
    for (i, t) in file.tensors().iter().enumerate() {
        let shape: Vec<String> = t.dims.iter().map(u64::to_string).collect();
        writeln!(
            out,
            "  {i:>5}  {:<name_width$}  {:<7} {:<22} {:>12}  {:>12}",
            t.name,
            t.ty.name(),
            shape.join(" x "),
            t.size,
            t.offset
        )?;
    }
    Ok(())
}

/// A value for the text listing: arrays shortened to their first items, long strings cut.
fn short_value(v: &Value) -> String {
    match v {
        Value::String(s) if s.chars().count() > STRING_CHARS_SHOWN => {
            let head: String = s.chars().take(STRING_CHARS_SHOWN).collect();
            format!("{head:?}… ({} chars)", s.chars().count())
        }
        Value::Array(_, items) => {
            let mut shown: Vec<String> = items
                .iter()
                .take(ARRAY_ITEMS_SHOWN)
                .map(short_value)
                .collect();
            if items.len() > ARRAY_ITEMS_SHOWN {
                shown.push(format!("… ({} items)", items.len()));
            }
            format!("[{}]", shown.join(", "))
        }
        v => v.to_string(),
    }
}

fn write_json(out: &mut impl Write, s: &Summary, file: &GgufFile) -> io::Result<()> {
    let metadata: Vec<serde_json::Value> = file
        .metadata()
        .iter()
        .map(|(key, value)| json!({"key": key, "type": value.type_description(), "value": json_value(value)}))
        .collect();
    let tensors: Vec<serde_json::Value> = file
        .tensors()
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "type": t.ty.name(),
                "shape": t.dims,
                "bytes": t.size,
                "offset": t.offset,
            })
        })
        .collect();
    let mut object = serde_json::to_value(s).map_err(io::Error::other)?;
    if let Some(map) = object.as_object_mut() {
        map.insert("metadata".into(), metadata.into());
        map.insert("tensors".into(), tensors.into());
    }
    serde_json::to_writer_pretty(&mut *out, &object).map_err(io::Error::other)?;
    writeln!(out)
}

/// A metadata value as JSON: scalars as they are (non-finite floats as strings, which JSON
/// lacks), strings whole, arrays as `{"length", "items"}` with the first items only.
fn json_value(v: &Value) -> serde_json::Value {
    let float = |f: f64| {
        serde_json::Number::from_f64(f)
            .map_or_else(|| json!(f.to_string()), serde_json::Value::Number)
    };
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F32(x) => float(f64::from(*x)),
        Value::F64(x) => float(*x),
        Value::Bool(x) => json!(x),
        Value::String(x) => json!(x),
        Value::Array(_, items) => json!({
            "length": items.len(),
            "items": items.iter().take(ARRAY_ITEMS_SHOWN).map(json_value).collect::<Vec<_>>(),
        }),
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = "bytes";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    if unit == "bytes" {
        format!("{n} bytes")
    } else {
        format!("{value:.1} {unit}")
    }
}

fn human_count(n: u64) -> String {
    match n {
        0..=999 => n.to_string(),
        1_000..=999_999 => format!("{:.1} K", n as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} M", n as f64 / 1e6),
        _ => format!("{:.2} B", n as f64 / 1e9),
    }
}
