//! Prefilter files: raw bit array, JSON metadata and Apple's XML property list, written
//! atomically, and reading a prefilter directory back with validation.

use crate::filter::{BloomFilter, Params, expected_fp_rate};
use crate::{Error, Result};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::path::Path;

/// Raw bit array file name (what `.temporaryFilepath(URL)` can point at).
pub const BIN_FILE: &str = "prefilter.bin";
/// JSON metadata file name.
pub const JSON_FILE: &str = "prefilter.json";
/// Apple-sample-compatible XML property list file name.
pub const PLIST_FILE: &str = "prefilter.plist";

/// Which descriptions to write beside (or instead of) the raw bit array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// `prefilter.bin` + `prefilter.json`.
    Json,
    /// `prefilter.plist` only (bit array embedded as base64), for Apple's sample.
    Plist,
    /// All three files.
    Both,
}

/// Metadata of a built prefilter (JSON field names match Apple's naming).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Number of bits.
    pub bit_count: u32,
    /// Number of hash functions.
    pub hash_count: u32,
    /// MurmurHash3 seed.
    pub murmur_seed: u32,
    /// SHA-256 hex of the bit array; changes whenever the data changes.
    pub tag: String,
    /// Number of distinct keys inserted.
    pub item_count: u64,
    /// Configured false-positive tolerance.
    pub false_positive_tolerance: f64,
    /// Length of the bit array, `ceil(bitCount / 8)`.
    pub byte_count: u64,
    /// Theoretical false-positive rate for `itemCount` keys.
    pub expected_false_positive_rate: f64,
}

/// A prefilter read back from disk: filter plus its metadata.
#[derive(Debug, Clone)]
pub struct Prefilter {
    /// The filter.
    pub filter: BloomFilter,
    /// Its metadata (tag verified against the data).
    pub meta: Metadata,
}

/// SHA-256 hex of the bit array: the `tag` the system hands back to `fetchPrefilter`.
pub fn sha256_tag(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl Metadata {
    /// Metadata for a filter holding `item_count` keys built for tolerance `fp`.
    pub fn for_filter(filter: &BloomFilter, item_count: u64, fp: f64) -> Self {
        let p = filter.params();
        Self {
            bit_count: p.bit_count,
            hash_count: p.hash_count,
            murmur_seed: p.murmur_seed,
            tag: sha256_tag(filter.data()),
            item_count,
            false_positive_tolerance: fp,
            byte_count: filter.data().len() as u64,
            expected_false_positive_rate: expected_fp_rate(p.bit_count, p.hash_count, item_count),
        }
    }
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, synced, then
/// renamed over the target, so readers never see a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io_err(path, e))?;
    tmp.write_all(bytes).map_err(|e| io_err(path, e))?;
    tmp.as_file().sync_all().map_err(|e| io_err(path, e))?;
    tmp.persist(path).map_err(|e| io_err(path, e.error))?;
    Ok(())
}

/// Apple's XML property list for the filter (keys `itemCount`, `falsePositiveTolerance`,
/// `murmurSeed`, `bitCount`, `byteCount`, `hashCount`, `data`), as `PropertyListEncoder` writes
/// the sample's `BloomFilter`; the base64 stays on one line, which the sample's test expects.
pub fn plist_xml(filter: &BloomFilter, meta: &Metadata) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(filter.data());
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
<plist version=\"1.0\">\n<dict>\n\
\t<key>bitCount</key>\n\t<integer>{}</integer>\n\
\t<key>byteCount</key>\n\t<integer>{}</integer>\n\
\t<key>data</key>\n\t<data>{}</data>\n\
\t<key>falsePositiveTolerance</key>\n\t<real>{}</real>\n\
\t<key>hashCount</key>\n\t<integer>{}</integer>\n\
\t<key>itemCount</key>\n\t<integer>{}</integer>\n\
\t<key>murmurSeed</key>\n\t<integer>{}</integer>\n\
</dict>\n</plist>\n",
        meta.bit_count,
        meta.byte_count,
        b64,
        meta.false_positive_tolerance,
        meta.hash_count,
        meta.item_count,
        meta.murmur_seed
    )
}

/// Writes the prefilter files into `dir` (created if missing), each atomically.
pub fn write_dir(
    dir: &Path,
    filter: &BloomFilter,
    meta: &Metadata,
    fmt: OutputFormat,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    if matches!(fmt, OutputFormat::Json | OutputFormat::Both) {
        write_atomic(&dir.join(BIN_FILE), filter.data())?;
        let mut json = serde_json::to_vec_pretty(meta).map_err(|e| Error::Invalid {
            path: dir.join(JSON_FILE).display().to_string(),
            reason: e.to_string(),
        })?;
        json.push(b'\n');
        write_atomic(&dir.join(JSON_FILE), &json)?;
    }
    if matches!(fmt, OutputFormat::Plist | OutputFormat::Both) {
        write_atomic(&dir.join(PLIST_FILE), plist_xml(filter, meta).as_bytes())?;
    }
    Ok(())
}

/// Largest file read back (bitCount is a u32, so the bit array is at most 512 MiB; base64 more).
const MAX_FILE: u64 = 800 << 20;

fn read_capped(path: &Path) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path).map_err(|e| io_err(path, e))?.len();
    if len > MAX_FILE {
        return Err(Error::Invalid {
            path: path.display().to_string(),
            reason: format!("file is {len} bytes, larger than any valid prefilter"),
        });
    }
    std::fs::read(path).map_err(|e| io_err(path, e))
}

/// Reads a prefilter directory: `prefilter.json` + `prefilter.bin` when present, else
/// `prefilter.plist`. Checks the byte count against `bitCount` and the tag against the data.
pub fn read_dir(dir: &Path) -> Result<Prefilter> {
    let json_path = dir.join(JSON_FILE);
    let plist_path = dir.join(PLIST_FILE);
    let (meta, data, src) = if json_path.exists() {
        let raw = read_capped(&json_path)?;
        let meta: Metadata = serde_json::from_slice(&raw).map_err(|e| Error::Invalid {
            path: json_path.display().to_string(),
            reason: format!("bad JSON metadata: {e}"),
        })?;
        let bin = dir.join(BIN_FILE);
        (meta, read_capped(&bin)?, bin)
    } else if plist_path.exists() {
        let raw = read_capped(&plist_path)?;
        let text = String::from_utf8(raw).map_err(|_| Error::Invalid {
            path: plist_path.display().to_string(),
            reason: "not UTF-8".into(),
        })?;
        let (meta, data) = parse_plist(&text).map_err(|reason| Error::Invalid {
            path: plist_path.display().to_string(),
            reason,
        })?;
        (meta, data, plist_path)
    } else {
        return Err(Error::Invalid {
            path: dir.display().to_string(),
            reason: format!("neither {JSON_FILE} nor {PLIST_FILE} found"),
        });
    };
    let invalid = |reason: String| Error::Invalid {
        path: src.display().to_string(),
        reason,
    };
    if meta.byte_count != u64::from(meta.bit_count.div_ceil(8))
        || data.len() as u64 != meta.byte_count
    {
        return Err(invalid(format!(
            "bit array is {} bytes; bitCount {} needs {} (byteCount says {})",
            data.len(),
            meta.bit_count,
            meta.bit_count.div_ceil(8),
            meta.byte_count
        )));
    }
    let tag = sha256_tag(&data);
    if !meta.tag.is_empty() && meta.tag != tag {
        return Err(invalid(format!(
            "tag {} does not match the data's SHA-256 {tag}",
            meta.tag
        )));
    }
    let params = Params {
        bit_count: meta.bit_count,
        hash_count: meta.hash_count,
        murmur_seed: meta.murmur_seed,
    };
    let filter = BloomFilter::from_data(params, data).map_err(|e| invalid(e.to_string()))?;
    let mut meta = meta;
    meta.tag = tag;
    Ok(Prefilter { filter, meta })
}

/// Tolerant reader for the flat plist `plist_xml` writes (and Apple's tool writes): a `<dict>`
/// of `<key>` followed by `<integer>`, `<real>` or `<data>`.
fn parse_plist(text: &str) -> std::result::Result<(Metadata, Vec<u8>), String> {
    fn value_after<'a>(text: &'a str, key: &str) -> Option<(&'a str, &'a str)> {
        let k = format!("<key>{key}</key>");
        let rest = text[text.find(&k)? + k.len()..].trim_start();
        let open_end = rest.find('>')?;
        let tag = rest.strip_prefix('<')?.get(..open_end - 1)?;
        let body = &rest[open_end + 1..];
        let close = body.find(&format!("</{tag}>"))?;
        Some((tag, body[..close].trim()))
    }
    let int = |key: &str| -> std::result::Result<u64, String> {
        match value_after(text, key) {
            Some(("integer", v)) => v.parse().map_err(|_| format!("{key}: bad integer {v:?}")),
            _ => Err(format!("missing <integer> {key}")),
        }
    };
    let u32_of = |key: &str| -> std::result::Result<u32, String> {
        u32::try_from(int(key)?).map_err(|_| format!("{key} does not fit in 32 bits"))
    };
    let data = match value_after(text, "data") {
        Some(("data", v)) => {
            let clean: String = v.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(clean)
                .map_err(|e| format!("data: bad base64: {e}"))?
        }
        _ => return Err("missing <data> data".into()),
    };
    let fp = match value_after(text, "falsePositiveTolerance") {
        Some(("real" | "integer", v)) => v.parse().unwrap_or(0.0),
        _ => 0.0,
    };
    let bit_count = u32_of("bitCount")?;
    let hash_count = u32_of("hashCount")?;
    let item_count = int("itemCount").unwrap_or(0);
    let meta = Metadata {
        bit_count,
        hash_count,
        murmur_seed: u32_of("murmurSeed")?,
        tag: sha256_tag(&data),
        item_count,
        false_positive_tolerance: fp,
        byte_count: int("byteCount").unwrap_or(data.len() as u64),
        expected_false_positive_rate: if bit_count > 0 {
            expected_fp_rate(bit_count, hash_count, item_count)
        } else {
            0.0
        },
    };
    Ok((meta, data))
}
