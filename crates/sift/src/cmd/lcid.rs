//! `sift lcid`: Live Caller ID Lookup datasets, as Apple's `ConstructDatabase` and
//! `PIRProcessDatabase` make them together.
//!
//! `sift lcid build INPUT.txtpb [--icons DIR] -o OUT` reads `InputIdentities` (phone number →
//! name, cache expiry, block flag, category), attaches `DIR/<number>.heic` icons as opaque
//! bytes, and writes two ordinary datasets through the same code as `sift build`:
//! `OUT/block` (value: one byte, 0 or 1) and `OUT/identity` (value: a serialized
//! `CallIdentity`). The dataset with fewer shards uses `doubleMod` sharding over the other's
//! shard count, so the two lookups of one number reveal no more than one of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use prost::Message as _;
use sift_pir::keyword::ShardingFunction;
use sift_proto::lcid::{CallIdentity, Icon, ImageFormat, InputIdentities};

use crate::rows::MAX_VALUE_LEN;

/// Apple's example `entryCountPerShard` for the block dataset (1-byte values).
pub const BLOCK_ENTRIES_PER_SHARD: usize = 50_000;
/// Apple's example `entryCountPerShard` for the identity dataset (icon-sized values).
pub const IDENTITY_ENTRIES_PER_SHARD: usize = 5_000;
/// Parameters of both datasets in Apple's testing instructions.
pub const RLWE_PARAMETERS: &str = "n_4096_logq_27_28_28_logt_5";
/// File stems of the two datasets (Apple's `fileStem` in its example service config).
pub const BLOCK_STEM: &str = "block";
/// File stem of the identity dataset.
pub const IDENTITY_STEM: &str = "identity";

/// Subcommands of `sift lcid`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Build the block and identity datasets from Apple's `InputIdentities` text format.
    Build(BuildArgs),
}

/// Arguments of `sift lcid build`.
#[derive(clap::Args)]
#[command(after_help = "Example:

  sift lcid build input.txtpb --icons icons -o lcid
  # serves as two use cases of the extension's bundle id:
  #   <bundle id>.block    -> dataset_dir lcid/block,    stem \"block\"
  #   <bundle id>.identity -> dataset_dir lcid/identity, stem \"identity\"")]
pub struct BuildArgs {
    /// `InputIdentities` in protobuf text format (`identities { key: \"+123\" value { … } }`).
    pub input: PathBuf,
    /// Folder of icons named `<number>.heic`; attached as opaque bytes.
    #[arg(long)]
    pub icons: Option<PathBuf>,
    /// Output folder: gets `block/` and `identity/`.
    #[arg(short, long)]
    pub output_dir: PathBuf,
    /// Predefined encryption parameters for both datasets.
    #[arg(long, default_value = RLWE_PARAMETERS)]
    pub rlwe_parameters: String,
    /// Seed for cuckoo evictions (reproducible output).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Test queries per processed shard.
    #[arg(long, default_value_t = 1)]
    pub trials_per_shard: usize,
    /// Rows per shard of the block dataset (Apple's example: 50000).
    #[arg(long, default_value_t = BLOCK_ENTRIES_PER_SHARD)]
    pub block_entries_per_shard: usize,
    /// Rows per shard of the identity dataset (Apple's example: 5000).
    #[arg(long, default_value_t = IDENTITY_ENTRIES_PER_SHARD)]
    pub identity_entries_per_shard: usize,
}

/// Runs `sift lcid`.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Build(a) => build(a),
    }
}

/// The two datasets' rows, sorted by number.
pub struct LcidRows {
    /// Number → one byte, 0 or 1.
    pub block: Vec<(Vec<u8>, Vec<u8>)>,
    /// Number → serialized `CallIdentity` (numbers whose identity is empty are left out).
    pub identity: Vec<(Vec<u8>, Vec<u8>)>,
    /// Icons attached.
    pub icons: usize,
}

/// Reads `InputIdentities` text and icons into the rows of the two datasets, refusing an
/// identity whose serialized `CallIdentity` exceeds the 65,535-byte value limit.
pub fn lcid_rows(input: &Path, icons: Option<&Path>) -> anyhow::Result<LcidRows> {
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let parsed: InputIdentities =
        sift_proto::from_text(&text).map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
    let identities: BTreeMap<String, _> = parsed.identities.into_iter().collect();
    if identities.is_empty() {
        bail!("{}: no identities: nothing to build", input.display());
    }
    let mut icon_files: BTreeMap<String, PathBuf> = BTreeMap::new();
    if let Some(dir) = icons {
        for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let p = e?.path();
            if p.extension().and_then(|x| x.to_str()) == Some("heic")
                && let Some(stem) = p.file_stem().and_then(|s| s.to_str())
            {
                icon_files.insert(stem.to_string(), p);
            }
        }
    }
    let mut out = LcidRows {
        block: Vec::with_capacity(identities.len()),
        identity: Vec::with_capacity(identities.len()),
        icons: 0,
    };
    for (number, id) in &identities {
        out.block
            .push((number.as_bytes().to_vec(), vec![u8::from(id.block)]));
        let icon = match icon_files.remove(number) {
            Some(p) => {
                out.icons += 1;
                Some(Icon {
                    format: ImageFormat::Heic as i32,
                    image: std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
                })
            }
            None => None,
        };
        let identity = CallIdentity {
            name: id.name.clone(),
            icon,
            cache_expiry_minutes: id.cache_expiry_minutes,
            category: id.category,
        };
        if identity == CallIdentity::default() {
            continue;
        }
        let bytes = identity.encode_to_vec();
        if bytes.len() > MAX_VALUE_LEN {
            bail!(
                "{}: identity of {number} serializes to {} bytes (icon {} bytes), over the \
                 {MAX_VALUE_LEN}-byte limit of a value; use a smaller icon",
                input.display(),
                bytes.len(),
                identity.icon.as_ref().map_or(0, |i| i.image.len())
            );
        }
        out.identity.push((number.as_bytes().to_vec(), bytes));
    }
    for (number, p) in icon_files {
        tracing::warn!("icon {} has no identity {number}; not used", p.display());
    }
    Ok(out)
}

/// The sharding functions of two datasets with `a` and `b` shards: the one with fewer shards
/// uses `doubleMod` over the other's count (Apple's recommendation for one keyword looked up
/// in two use cases); the other plain SHA-256.
pub fn paired_sharding(a: usize, b: usize) -> (ShardingFunction, ShardingFunction) {
    let double = |other: usize| ShardingFunction::DoubleMod {
        other_shard_count: u32::try_from(other).unwrap_or(u32::MAX),
    };
    match a.cmp(&b) {
        std::cmp::Ordering::Less => (double(b), ShardingFunction::Sha256),
        std::cmp::Ordering::Greater => (ShardingFunction::Sha256, double(a)),
        std::cmp::Ordering::Equal => (ShardingFunction::Sha256, ShardingFunction::Sha256),
    }
}

fn build(a: BuildArgs) -> anyhow::Result<ExitCode> {
    let rows = lcid_rows(&a.input, a.icons.as_deref())?;
    write_datasets(rows, &a)?;
    println!(
        "wrote {0}/{BLOCK_STEM} and {0}/{IDENTITY_STEM}: serve them as the use cases \
         <bundle id>.block (stem \"{BLOCK_STEM}\") and <bundle id>.identity (stem \"{IDENTITY_STEM}\")",
        a.output_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Builds both datasets from `input` (and `icons`) into `out` with Apple's defaults: what
/// `sift lcid build` does, for `sift demo`.
pub fn build_datasets(
    input: &Path,
    icons: Option<&Path>,
    out: &Path,
    seed: u64,
    trials_per_shard: usize,
) -> anyhow::Result<()> {
    let a = BuildArgs {
        input: input.to_path_buf(),
        icons: icons.map(Path::to_path_buf),
        output_dir: out.to_path_buf(),
        rlwe_parameters: RLWE_PARAMETERS.into(),
        seed,
        trials_per_shard,
        block_entries_per_shard: BLOCK_ENTRIES_PER_SHARD,
        identity_entries_per_shard: IDENTITY_ENTRIES_PER_SHARD,
    };
    write_datasets(lcid_rows(input, icons)?, &a)
}

/// Shards and writes `rows` as `OUT/block` and `OUT/identity` through `sift build`'s writer.
fn write_datasets(rows: LcidRows, a: &BuildArgs) -> anyhow::Result<()> {
    if a.block_entries_per_shard == 0 || a.identity_entries_per_shard == 0 {
        bail!("entries per shard must be at least 1");
    }
    let block_shards = (rows.block.len() / a.block_entries_per_shard).max(1);
    let identity_shards = (rows.identity.len() / a.identity_entries_per_shard).max(1);
    let (block_fn, identity_fn) = paired_sharding(block_shards, identity_shards);
    eprintln!(
        "read {} numbers: {} to block, {} identities, {} icons; {block_shards} block shard(s), \
         {identity_shards} identity shard(s)",
        rows.block.len(),
        rows.block.iter().filter(|r| r.1 == [1]).count(),
        rows.identity.len(),
        rows.icons
    );
    for (stem, data, shards, function) in [
        (BLOCK_STEM, rows.block, block_shards, block_fn),
        (IDENTITY_STEM, rows.identity, identity_shards, identity_fn),
    ] {
        if data.is_empty() {
            bail!("no {stem} rows: every identity is empty");
        }
        let options = super::build::BuildOptions {
            stem: stem.to_string(),
            rlwe_parameters: Some(a.rlwe_parameters.clone()),
            shard_count: Some(shards),
            value: String::new(),
            seed: a.seed,
            no_prefilter: true,
            trials_per_shard: Some(a.trials_per_shard),
            sharding_function: Some(function),
            ..Default::default()
        };
        super::build::write_dataset(data, options, &a.output_dir.join(stem))
            .with_context(|| format!("{stem} dataset"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dataset_with_fewer_shards_uses_double_mod_over_the_other() {
        let dm = |n| ShardingFunction::DoubleMod {
            other_shard_count: n,
        };
        assert_eq!(paired_sharding(1, 2), (dm(2), ShardingFunction::Sha256));
        assert_eq!(paired_sharding(5, 3), (ShardingFunction::Sha256, dm(5)));
        assert_eq!(
            paired_sharding(4, 4),
            (ShardingFunction::Sha256, ShardingFunction::Sha256)
        );
    }
}

/// What a device learns about an incoming number: both lookups, decoded.
#[derive(Debug, serde::Serialize)]
pub struct LcidAnswer {
    /// The number looked up.
    pub number: String,
    /// The block flag: `Some(true)` block, `Some(false)` don't, `None` not in the dataset.
    pub block: Option<bool>,
    /// The identity, when the number has one.
    pub identity: Option<IdentityView>,
    /// Round-trip time of the block lookup (ms).
    pub block_ms: f64,
    /// Round-trip time of the identity lookup (ms).
    pub identity_ms: f64,
}

/// A decoded `CallIdentity` for people and scripts.
#[derive(Debug, serde::Serialize)]
pub struct IdentityView {
    /// Name shown in the call UI.
    pub name: String,
    /// `person`, `business` or `unspecified`.
    pub category: &'static str,
    /// How long the device may reuse the answer.
    pub cache_expiry_minutes: u32,
    /// Icon size in bytes (0 without an icon); the image itself is opaque to sift.
    pub icon_bytes: usize,
}

impl std::fmt::Display for LcidAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let block = match self.block {
            Some(true) => "BLOCK",
            Some(false) => "don't block",
            None => "not in the block dataset",
        };
        writeln!(f, "{}: {block}  ({:.1} ms)", self.number, self.block_ms)?;
        match &self.identity {
            Some(i) => write!(
                f,
                "  identity: {:?} ({}), cache {} min, icon {} bytes  ({:.1} ms)",
                i.name, i.category, i.cache_expiry_minutes, i.icon_bytes, self.identity_ms
            ),
            None => write!(f, "  identity: none  ({:.1} ms)", self.identity_ms),
        }
    }
}

/// Looks `number` up as a device does for an incoming call: block flag first, then identity.
/// A value that is not what the dataset format promises (a block value other than one byte
/// 0/1, an identity that does not decode) is an error, never a guess.
pub async fn lookup(
    block: &mut sift_client::device::DeviceClient,
    identity: &mut sift_client::device::DeviceClient,
    number: &str,
) -> anyhow::Result<LcidAnswer> {
    let (b, bc) = block
        .lookup_bytes(number.as_bytes())
        .await
        .context("block lookup")?;
    let block_flag = match b.as_deref() {
        None => None,
        Some([0]) => Some(false),
        Some([1]) => Some(true),
        Some(v) => bail!(
            "block dataset answered {} bytes for {number}, expected one byte 0 or 1",
            v.len()
        ),
    };
    let (i, ic) = identity
        .lookup_bytes(number.as_bytes())
        .await
        .context("identity lookup")?;
    let identity_view = i
        .map(|bytes| -> anyhow::Result<IdentityView> {
            let id = CallIdentity::decode(bytes.as_slice())
                .with_context(|| format!("identity of {number} is not a CallIdentity"))?;
            Ok(IdentityView {
                category: match id.category() {
                    sift_proto::lcid::IdentityCategory::Person => "person",
                    sift_proto::lcid::IdentityCategory::Business => "business",
                    sift_proto::lcid::IdentityCategory::Unspecified => "unspecified",
                },
                name: id.name,
                cache_expiry_minutes: id.cache_expiry_minutes,
                icon_bytes: id.icon.map_or(0, |i| i.image.len()),
            })
        })
        .transpose()?;
    Ok(LcidAnswer {
        number: number.to_string(),
        block: block_flag,
        identity: identity_view,
        block_ms: bc.millis,
        identity_ms: ic.millis,
    })
}
