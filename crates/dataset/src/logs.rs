//! What `sift update` changed in a shard since its base files were written, so that an update
//! writes only its changes: the shard's `.rows` and `.cuckoo` stay shared (hard links) and two
//! small files beside them say what differs.
//!
//! - **Row log** (`<stem>-<i>.rows-log`): per changed keyword, its value now or its removal,
//!   sorted by keyword: `"SIFTRWL1" ‖` records of `u8 op (1 put, 0 remove) ‖ u32 LE len ‖
//!   keyword ‖` (put only) `u32 LE len ‖ value`. The shard's rows are the base `.rows` with the
//!   log applied ([`apply_row_log`]).
//! - **Table log** (`<stem>-<i>.cuckoo-log`): every cuckoo bucket changed since the base
//!   `.cuckoo`, as it is now: `"SIFTCKL1" ‖ u64 LE count ‖` records of `u32 LE table ‖ u32 LE
//!   bucket ‖ u32 LE len ‖` the bucket serialized. The shard's table is the base with those
//!   buckets replaced.
//!
//! An update that rewrites the shard's `.words` (or processes the shard afresh) also writes
//! fresh base files and no logs.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail, ensure};
use sift_pir::bucket::HashBucket;
use sift_pir::cuckoo::CuckooTable;
use sift_pir::server::Rows;

/// Magic of a row log.
const ROW_LOG_MAGIC: &[u8; 8] = b"SIFTRWL1";

/// Magic of a table log.
const TABLE_LOG_MAGIC: &[u8; 8] = b"SIFTCKL1";

/// The changes since a shard's base rows: keyword → its value now, or `None` when removed.
pub type RowLog = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Reads `u32 LE len ‖ bytes` from the front of `b` (the field format of `.rows` files and
/// the logs); `what` names the file in the error.
pub(crate) fn take<'a>(b: &mut &'a [u8], what: &str) -> anyhow::Result<&'a [u8]> {
    ensure!(b.len() >= 4, "truncated {what}");
    let n = u32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as usize;
    ensure!(b.len() >= 4 + n, "truncated {what}");
    let (v, rest) = b[4..].split_at(n);
    *b = rest;
    Ok(v)
}

/// Appends `u32 LE len ‖ bytes` to `out`.
pub(crate) fn put_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A row log's file bytes.
pub fn encode_row_log(log: &RowLog) -> Vec<u8> {
    let mut out = ROW_LOG_MAGIC.to_vec();
    for (k, v) in log {
        out.push(u8::from(v.is_some()));
        put_len_prefixed(&mut out, k);
        if let Some(v) = v {
            put_len_prefixed(&mut out, v);
        }
    }
    out
}

/// Parses a row log file (keywords strictly ascending).
pub fn decode_row_log(bytes: &[u8]) -> anyhow::Result<RowLog> {
    ensure!(
        bytes.get(..8) == Some(&ROW_LOG_MAGIC[..]),
        "not a sift row log file"
    );
    let mut b = &bytes[8..];
    let mut log = RowLog::new();
    while let Some((&op, rest)) = b.split_first() {
        b = rest;
        let k = take(&mut b, "row log keyword")?.to_vec();
        let v = match op {
            0 => None,
            1 => Some(take(&mut b, "row log value")?.to_vec()),
            _ => bail!("row log: unknown operation {op}"),
        };
        if let Some((last, _)) = log.last_key_value() {
            ensure!(*last < k, "row log: keywords out of order");
        }
        log.insert(k, v);
    }
    Ok(log)
}

/// The rows of a shard: `base` (a decoded `.rows` file) with `log` applied, sorted by keyword.
pub fn apply_row_log(base: Rows, log: &RowLog) -> Rows {
    let mut rows: BTreeMap<Vec<u8>, Vec<u8>> = base.into_iter().collect();
    for (k, v) in log {
        match v {
            Some(v) => rows.insert(k.clone(), v.clone()),
            None => rows.remove(k),
        };
    }
    rows.into_iter().collect()
}

/// The changed buckets of a table log: (table, bucket) → the bucket serialized.
pub type TableLog = BTreeMap<(usize, usize), Vec<u8>>;

/// A table log's file bytes.
pub fn encode_table_log(log: &TableLog) -> Vec<u8> {
    let mut out = TABLE_LOG_MAGIC.to_vec();
    out.extend_from_slice(&(log.len() as u64).to_le_bytes());
    for (&(t, b), bytes) in log {
        out.extend_from_slice(&(t as u32).to_le_bytes());
        out.extend_from_slice(&(b as u32).to_le_bytes());
        put_len_prefixed(&mut out, bytes);
    }
    out
}

/// Parses a table log file.
pub fn decode_table_log(bytes: &[u8]) -> anyhow::Result<TableLog> {
    ensure!(
        bytes.get(..8) == Some(&TABLE_LOG_MAGIC[..]) && bytes.len() >= 16,
        "not a sift cuckoo table log file"
    );
    let count = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let mut b = &bytes[16..];
    let mut log = TableLog::new();
    for _ in 0..count {
        ensure!(b.len() >= 8, "truncated cuckoo table log");
        let t = u32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as usize;
        let i = u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")) as usize;
        b = &b[8..];
        let bucket = take(&mut b, "cuckoo table log bucket")?;
        ensure!(
            log.insert((t, i), bucket.to_vec()).is_none(),
            "cuckoo table log: bucket {i} of table {t} twice"
        );
    }
    ensure!(b.is_empty(), "cuckoo table log: trailing bytes");
    Ok(log)
}

/// Replaces the logged buckets of `table`.
pub fn apply_table_log(table: &mut CuckooTable, log: &TableLog) -> anyhow::Result<()> {
    for (&(t, b), bytes) in log {
        let slot = table
            .tables
            .get_mut(t)
            .and_then(|buckets| buckets.get_mut(b))
            .with_context(|| format!("cuckoo table log: no bucket {b} in table {t}"))?;
        *slot = HashBucket::deserialize(bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_round_trip_apply_and_refuse_bad_files() {
        let mut log = RowLog::new();
        log.insert(b"b".to_vec(), None);
        log.insert(b"c".to_vec(), Some(b"2".to_vec()));
        log.insert(b"a".to_vec(), Some(b"9".to_vec()));
        let bytes = encode_row_log(&log);
        assert_eq!(decode_row_log(&bytes).unwrap(), log);
        let base = vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"1".to_vec()),
        ];
        assert_eq!(
            apply_row_log(base, &log),
            vec![
                (b"a".to_vec(), b"9".to_vec()),
                (b"c".to_vec(), b"2".to_vec())
            ]
        );
        assert!(
            decode_row_log(&bytes[..bytes.len() - 1]).is_err(),
            "truncated"
        );
        assert!(decode_row_log(b"SIFTRWL1\x07").is_err(), "bad operation");
        let mut unsorted = ROW_LOG_MAGIC.to_vec();
        for k in [b"b", b"a"] {
            unsorted.push(0);
            put_len_prefixed(&mut unsorted, k);
        }
        assert!(decode_row_log(&unsorted).is_err(), "out of order");

        let mut tlog = TableLog::new();
        tlog.insert((1, 3), vec![0]);
        tlog.insert((0, 2), vec![0]);
        let bytes = encode_table_log(&tlog);
        assert_eq!(decode_table_log(&bytes).unwrap(), tlog);
        assert!(
            decode_table_log(&bytes[..bytes.len() - 1]).is_err(),
            "truncated"
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode_table_log(&trailing).is_err(), "trailing");
    }
}
