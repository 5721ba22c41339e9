//! Rows partitioned on disk, so that a build's memory follows the shards in flight rather than
//! the dataset.
//!
//! A streaming build goes through two partitionings, both of this type:
//!
//! 1. **Import buckets.** Every input row goes, as it is read, to one of [`IMPORT_BUCKETS`]
//!    buckets chosen by a hash of its keyword, so every copy of a keyword lands in the same
//!    bucket. Each bucket is then sorted and de-duplicated on its own (an identical row is
//!    merged, the same keyword with two values is an error naming both places), which needs
//!    one bucket in memory per worker thread. The de-duplicated buckets hold the exact rows.
//! 2. **Shard partitions.** The automatic shard count depends on the number of distinct rows
//!    and on how the sharding function spreads them, which is only known after step 1. So the
//!    keyword hashes are written beside the buckets, the shard count is chosen by streaming
//!    over them ([`RowBuckets::auto_shard_count`]), and the buckets are redistributed into one
//!    partition per shard ([`RowBuckets::into_shards`]). Shards are then loaded, sorted by
//!    keyword and processed one per worker thread (rayon's pool is the bound).
//!
//! A partition keeps its rows in a memory buffer until the buffer reaches its share of the
//! buffer budget, then appends them to its file. Small datasets therefore never touch the
//! disk; large ones use about the budget in memory plus one bucket or shard per thread.
//! The files live in a folder inside the new version's staging folder (its name starts with
//! `.`, so it is never listed in a manifest) and are removed when the partitions are dropped:
//! after a successful build, on an error, and on a panic's unwinding. A killed build leaves
//! them inside its staging folder, which the next build removes.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use rayon::prelude::*;
use sift_pir::keyword::{ShardingFunction, keyword_hash};
use sift_pir::server::Rows;

use crate::process::{decode_rows, encode_rows, target_rows_per_shard};

/// Buckets of the import step: enough that a bucket of a 100M-row dataset (about 100k rows)
/// is small next to a shard.
pub const IMPORT_BUCKETS: usize = 1024;

/// Default memory budget (bytes) for the buffers of all partitions of one partitioning.
pub const DEFAULT_BUFFER_BYTES: usize = 256 << 20;

/// Environment variable that overrides [`DEFAULT_BUFFER_BYTES`] (tests use a tiny budget so
/// that every row goes through the files).
pub const BUFFER_ENV: &str = "SIFT_BUILD_PARTITION_BUFFER";

/// The buffer budget: [`BUFFER_ENV`] when set to a number, else [`DEFAULT_BUFFER_BYTES`].
pub fn buffer_bytes() -> usize {
    std::env::var(BUFFER_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_BUFFER_BYTES)
}

/// `count` append-only partitions of byte records: a memory buffer each, spilled to a file in
/// `dir` when it reaches `budget / count` bytes. The folder is removed on drop.
pub struct Partitions {
    dir: PathBuf,
    buffers: Vec<Mutex<Vec<u8>>>,
    flush_at: usize,
}

impl Partitions {
    /// Creates `dir` (which must not exist yet) for `count` partitions sharing `budget`
    /// bytes of buffers.
    pub fn new(dir: &Path, count: usize, budget: usize) -> anyhow::Result<Partitions> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Partitions {
            dir: dir.to_path_buf(),
            buffers: (0..count.max(1)).map(|_| Mutex::new(Vec::new())).collect(),
            flush_at: (budget / count.max(1)).max(1),
        })
    }

    /// How many partitions.
    pub fn count(&self) -> usize {
        self.buffers.len()
    }

    fn file(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{i}"))
    }

    fn spill(&self, i: usize, bytes: &[u8]) -> anyhow::Result<()> {
        let p = self.file(i);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .with_context(|| format!("opening {}", p.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {} (is the disk full?)", p.display()))
    }

    /// Appends `bytes` (whole records) to partition `i`.
    pub fn append(&self, i: usize, bytes: &[u8]) -> anyhow::Result<()> {
        let mut buf = self.buffers[i].lock().unwrap_or_else(|e| e.into_inner());
        if buf.len() + bytes.len() >= self.flush_at {
            if !buf.is_empty() {
                self.spill(i, &buf)?;
                buf.clear();
                buf.shrink_to(0);
            }
            if bytes.len() >= self.flush_at {
                return self.spill(i, bytes);
            }
        }
        buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Appends one record of length-prefixed fields (`u32 LE len ‖ bytes` each).
    pub fn push(&self, i: usize, fields: &[&[u8]]) -> anyhow::Result<()> {
        let mut rec = Vec::with_capacity(fields.iter().map(|f| 4 + f.len()).sum());
        for f in fields {
            put_field(&mut rec, f);
        }
        self.append(i, &rec)
    }

    /// Removes and returns everything partition `i` holds (file first, then buffer: the
    /// order records were appended in).
    pub fn take(&self, i: usize) -> anyhow::Result<Vec<u8>> {
        let mut buf = self.buffers[i].lock().unwrap_or_else(|e| e.into_inner());
        let p = self.file(i);
        let mut out = Vec::new();
        match File::open(&p) {
            Ok(mut f) => {
                f.read_to_end(&mut out)
                    .with_context(|| format!("reading {}", p.display()))?;
                std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("opening {}", p.display())),
        }
        out.extend_from_slice(&buf);
        *buf = Vec::new();
        Ok(out)
    }

    /// Files currently in the partitions' folder (for tests of the spilling).
    pub fn files_on_disk(&self) -> usize {
        std::fs::read_dir(&self.dir).map_or(0, |rd| rd.count())
    }
}

impl Drop for Partitions {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Appends `u32 LE len ‖ bytes`.
pub fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Reads one length-prefixed field from the front of `b`.
pub fn take_field<'a>(b: &mut &'a [u8]) -> anyhow::Result<&'a [u8]> {
    anyhow::ensure!(b.len() >= 4, "truncated partition record");
    let n = u32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as usize;
    anyhow::ensure!(b.len() >= 4 + n, "truncated partition record");
    let (f, rest) = b[4..].split_at(n);
    *b = rest;
    Ok(f)
}

/// The import bucket of `keyword` (a fast hash unrelated to the sharding function).
pub fn import_bucket(keyword: &[u8], buckets: usize) -> usize {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::hash::DefaultHasher::new();
    keyword.hash(&mut h);
    (h.finish() % buckets as u64) as usize
}

/// Exact rows (keywords distinct), in buckets on disk: the result of the import step.
pub struct RowBuckets {
    rows: Partitions,
    hashes: Option<Partitions>,
    dir: PathBuf,
    budget: usize,
    /// Distinct rows in all buckets.
    pub row_count: u64,
    /// The longest value, in bytes.
    pub max_value_len: usize,
}

impl RowBuckets {
    /// Wraps de-duplicated buckets (each in the `.rows` encoding, see
    /// [`encode_rows`]) that live in `dir/rows`.
    pub fn new(
        dir: &Path,
        rows: Partitions,
        row_count: u64,
        max_value_len: usize,
        budget: usize,
    ) -> RowBuckets {
        RowBuckets {
            rows,
            hashes: None,
            dir: dir.to_path_buf(),
            budget,
            row_count,
            max_value_len,
        }
    }

    /// Rows already in memory (distinct keywords), in [`IMPORT_BUCKETS`] buckets kept in
    /// memory under `dir`: the path of callers that hold them anyway (`sift update`, `sift
    /// lcid build`). Each row is moved into its bucket as it is consumed, so the later passes
    /// hold one bucket's copy at a time, not a second copy of the dataset.
    pub fn from_rows(dir: &Path, rows: Rows) -> anyhow::Result<RowBuckets> {
        let parts = Partitions::new(&dir.join("rows"), IMPORT_BUCKETS, usize::MAX)?;
        let n = rows.len() as u64;
        let mut max_value_len = 0;
        for (k, v) in rows {
            max_value_len = max_value_len.max(v.len());
            parts.push(import_bucket(&k, IMPORT_BUCKETS), &[&k, &v])?;
        }
        Ok(RowBuckets::new(dir, parts, n, max_value_len, usize::MAX))
    }

    /// Buckets.
    pub fn bucket_count(&self) -> usize {
        self.rows.count()
    }

    /// The rows of bucket `i` (put back after reading).
    pub fn read_bucket(&self, i: usize) -> anyhow::Result<Rows> {
        let bytes = self.rows.take(i)?;
        let rows = decode_rows(&bytes)?;
        self.rows.append(i, &bytes)?;
        Ok(rows)
    }

    /// Calls `f` with every bucket's rows in turn (the prefilter's keys).
    pub fn for_each_bucket(&self, mut f: impl FnMut(&Rows)) -> anyhow::Result<()> {
        for i in 0..self.bucket_count() {
            f(&self.read_bucket(i)?);
        }
        Ok(())
    }

    /// Replaces every row by `f`'s output for its bucket (symmetric PIR's keyword′ and
    /// encrypted value); `f` must keep keywords distinct. `on_rows` gets each bucket's count.
    pub fn transform(
        &mut self,
        f: impl Fn(Rows) -> anyhow::Result<Rows>,
        on_rows: &dyn Fn(u64),
    ) -> anyhow::Result<()> {
        self.hashes = None;
        let mut max = 0;
        for i in 0..self.bucket_count() {
            let rows = decode_rows(&self.rows.take(i)?)?;
            let n = rows.len() as u64;
            let rows = f(rows)?;
            max = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(max);
            self.rows.append(i, &encode_rows(&rows))?;
            on_rows(n);
        }
        self.max_value_len = max;
        Ok(())
    }

    /// Computes every row's keyword hash once, in bucket order, beside the rows.
    fn ensure_hashes(&mut self) -> anyhow::Result<()> {
        if self.hashes.is_some() {
            return Ok(());
        }
        let dir = self.dir.join("hashes");
        let _ = std::fs::remove_dir_all(&dir);
        let hashes = Partitions::new(&dir, self.bucket_count(), self.budget.min(64 << 20))?;
        (0..self.bucket_count())
            .into_par_iter()
            .try_for_each(|i| -> anyhow::Result<()> {
                let rows = self.read_bucket(i)?;
                let mut out = Vec::with_capacity(rows.len() * 8);
                for (k, _) in &rows {
                    out.extend_from_slice(&keyword_hash(k).to_le_bytes());
                }
                hashes.append(i, &out)
            })?;
        self.hashes = Some(hashes);
        Ok(())
    }

    fn bucket_hashes(&self, i: usize) -> anyhow::Result<Vec<u64>> {
        let h = self
            .hashes
            .as_ref()
            .context("keyword hashes were not computed")?;
        let bytes = h.take(i)?;
        h.append(i, &bytes)?;
        Ok(bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }

    /// Rows per shard for `shard_count` shards, streaming over the stored hashes.
    pub fn shard_sizes(
        &mut self,
        function: ShardingFunction,
        shard_count: usize,
    ) -> anyhow::Result<Vec<usize>> {
        self.ensure_hashes()?;
        let mut sizes = vec![0usize; shard_count];
        for i in 0..self.bucket_count() {
            for h in self.bucket_hashes(i)? {
                sizes[function.shard_of_hash(h, shard_count)] += 1;
            }
        }
        Ok(sizes)
    }

    /// The automatic shard count, as [`crate::process::auto_shard_count`] computes it for
    /// the same rows, without holding them.
    pub fn auto_shard_count(&mut self, function: ShardingFunction) -> anyhow::Result<usize> {
        let target = target_rows_per_shard(self.max_value_len.max(1));
        let n = self.row_count as usize;
        if n <= target {
            return Ok(1);
        }
        let mut k = crate::process::first_shard_count_guess(n, target);
        loop {
            let sizes = self.shard_sizes(function, k)?;
            if sizes.iter().max().copied().unwrap_or(0) <= target {
                return Ok(k);
            }
            k += (k / 64).max(1);
        }
    }

    /// Redistributes the rows into one partition per shard (`shard_count` shards under
    /// `function`); `on_rows` gets each bucket's row count.
    pub fn into_shards(
        mut self,
        function: ShardingFunction,
        shard_count: usize,
        on_rows: &dyn Fn(u64),
    ) -> anyhow::Result<Partitions> {
        self.ensure_hashes()?;
        let shards = Partitions::new(&self.dir.join("shards"), shard_count, self.budget)?;
        for i in 0..self.bucket_count() {
            let bytes = self.rows.take(i)?;
            let hashes = self.bucket_hashes(i)?;
            let mut b = bytes.as_slice();
            let mut n = 0;
            while !b.is_empty() {
                let start = b;
                take_field(&mut b)?;
                take_field(&mut b)?;
                let rec = &start[..start.len() - b.len()];
                let h = *hashes.get(n).context("fewer hashes than rows")?;
                shards.append(function.shard_of_hash(h, shard_count), rec)?;
                n += 1;
            }
            on_rows(n as u64);
        }
        Ok(shards)
    }
}

impl Drop for RowBuckets {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.dir.join("hashes"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` partitions sharing `budget` bytes in the folder `name` of a fresh temporary
    /// directory, with that directory and the folder's path.
    fn temp_partitions(
        name: &str,
        count: usize,
        budget: usize,
    ) -> (tempfile::TempDir, std::path::PathBuf, Partitions) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        let parts = Partitions::new(&path, count, budget).unwrap();
        (dir, path, parts)
    }

    #[test]
    fn spilled_partitions_return_records_in_order_and_clean_up() {
        let (_dir, p, parts) = temp_partitions("parts", 4, 64);
        for i in 0..100u32 {
            parts
                .push((i % 4) as usize, &[&i.to_le_bytes(), b"value"])
                .unwrap();
        }
        assert!(parts.files_on_disk() > 0, "a 64-byte budget spills");
        let bytes = parts.take(1).unwrap();
        let mut b = bytes.as_slice();
        let mut got = Vec::new();
        while !b.is_empty() {
            got.push(u32::from_le_bytes(
                take_field(&mut b).unwrap().try_into().unwrap(),
            ));
            assert_eq!(take_field(&mut b).unwrap(), b"value");
        }
        assert_eq!(got, (0..100).filter(|i| i % 4 == 1).collect::<Vec<_>>());
        drop(parts);
        assert!(!p.exists());
    }

    #[test]
    fn bucketed_rows_shard_like_the_in_memory_path() {
        let (dir, _, parts) = temp_partitions("rows", 8, 100);
        let rows: Rows = (0..3000u32)
            .map(|i| (format!("k{i}").into_bytes(), vec![1]))
            .collect();
        for r in &rows {
            parts
                .append(
                    import_bucket(&r.0, 8),
                    &encode_rows(std::slice::from_ref(r)),
                )
                .unwrap();
        }
        let mut b = RowBuckets::new(dir.path(), parts, rows.len() as u64, 1, 100);
        let hashes: Vec<u64> = rows.iter().map(|r| keyword_hash(&r.0)).collect();
        assert_eq!(
            b.shard_sizes(ShardingFunction::Sha256, 7).unwrap(),
            crate::process::shard_sizes(&hashes, ShardingFunction::Sha256, 7)
        );
        let shards = b.into_shards(ShardingFunction::Sha256, 7, &|_| {}).unwrap();
        let mut total = 0;
        for s in 0..7 {
            let got = decode_rows(&shards.take(s).unwrap()).unwrap();
            for (k, _) in &got {
                assert_eq!(ShardingFunction::Sha256.shard_index(k, 7).unwrap(), s);
            }
            total += got.len();
        }
        assert_eq!(total, rows.len());
    }
}
