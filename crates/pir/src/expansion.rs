//! Oblivious query expansion (`PirUtil.expand`): one query ciphertext holding up to n packed
//! selection values becomes that many ciphertexts each encrypting one of them.
//!
//! The tree is walked depth first in Eval form (a subtree's ciphertexts stay in cache; walking
//! it level by level, to keep one Galois key hot, measured slower), and each step's buffers come
//! from an [`ExpansionPool`] so that a server answering query after query does not allocate,
//! zero and page-fault the ~16 MB a 120-output expansion holds.

use std::collections::HashMap;
use std::sync::Arc;

use sift_he::bfv::{self, SwitchScratch};
use sift_he::{Ciphertext, Context, EvaluationKey, Format, Poly};

use crate::PirError;
use sift_he::arith::ceil_log2;

/// Spare ciphertext buffers most worth keeping between queries (128 KB each at n = 4096 with
/// two moduli): a bound, so an unusual query cannot pin memory for good.
const MAX_SPARE: usize = 512;

/// Reusable buffers of the expansion: spare ciphertexts and the key-switch scratch.
#[derive(Debug, Default)]
pub struct ExpansionPool {
    spare: Vec<Ciphertext>,
    scratch: SwitchScratch,
    levels: HashMap<LevelKey, Arc<ExpandLevel>>,
}

impl ExpansionPool {
    /// A ciphertext whose buffers may be overwritten (contents unspecified).
    fn take(&mut self) -> Ciphertext {
        self.spare
            .pop()
            .unwrap_or_else(|| Ciphertext::eval_shaped(0, 0))
    }

    /// A ciphertext shaped as 2 Eval polys over the first k moduli of degree n, from the spare
    /// buffers when there are any (words unspecified: the caller overwrites them all).
    pub fn take_eval(&mut self, k: usize, n: usize) -> Ciphertext {
        let mut c = self.take();
        c.reshape_eval(k, n);
        c
    }

    /// Hands ciphertexts back for reuse (beyond `MAX_SPARE`, 512, they are dropped).
    pub fn recycle(&mut self, cts: impl IntoIterator<Item = Ciphertext>) {
        for c in cts {
            if self.spare.len() >= MAX_SPARE {
                break;
            }
            self.spare.push(c);
        }
    }
}

/// Per-level data of the expansion: the Galois element used, how many times it is applied, its
/// Eval-form permutation, and X^(−2^(ℓ−1)) in Eval form with Shoup factors, also once per
/// block where the level's rows are constant on blocks (see [`bfv::Twist::blocks`]).
#[derive(Debug)]
struct ExpandLevel {
    g: usize,
    count: usize,
    perm: Vec<u32>,
    mono: Vec<u64>,
    mono_shoup: Vec<u64>,
    blocks: Option<(usize, Vec<u64>)>,
}

/// The largest block size b (a power of two from 8 to 64 dividing n) on whose aligned blocks
/// every row of `words` (rows of n) is constant, with one word per block; None below 8. In Eval
/// form X^(−s) takes ψ^(−s·(2·bitrev(j)+1)) at slot j, which depends only on j / s, so level ℓ
/// qualifies with b = min(2^(ℓ−1), 64); checking the words rather than trusting that keeps
/// the rows exact whatever the layout.
fn twist_blocks(words: &[u64], n: usize) -> Option<(usize, Vec<u64>)> {
    let b = [64usize, 32, 16, 8].into_iter().find(|&b| {
        n.is_multiple_of(b)
            && words
                .chunks_exact(b)
                .all(|blk| blk.iter().all(|&w| w == blk[0]))
    })?;
    Some((b, words.iter().step_by(b).copied().collect()))
}

/// What an [`ExpandLevel`] depends on: degree, the k moduli, the level and the element.
type LevelKey = (usize, Vec<u64>, u32, usize);

/// Cached levels kept at most (a server has few parameter sets; past this the cache restarts).
const MAX_LEVELS: usize = 64;

/// The level's data from the pool's cache, built on first use (its monomial NTTs, Shoup
/// factors and permutation cost about as much as a few key switches).
fn cached_level(
    ctx: &Context,
    k: usize,
    log_step: u32,
    key: &EvaluationKey,
    pool: &mut ExpansionPool,
) -> Result<Arc<ExpandLevel>, PirError> {
    let (g, _) = level_element(ctx.n, log_step, key)?;
    let id: LevelKey = (
        ctx.n,
        (0..k).map(|r| ctx.modulus(r).value).collect(),
        log_step,
        g,
    );
    if let Some(level) = pool.levels.get(&id) {
        return Ok(level.clone());
    }
    let level = Arc::new(expand_level(ctx, k, log_step, key)?);
    if pool.levels.len() >= MAX_LEVELS {
        pool.levels.clear();
    }
    pool.levels.insert(id, level.clone());
    Ok(level)
}

/// The Galois element a level uses, the largest key element 2^j + 1 not above the level's
/// target 2^(log n − ℓ + 1) + 1, and how many times it must be applied to act as the target
/// (more than once under key compression).
fn level_element(n: usize, log_step: u32, key: &EvaluationKey) -> Result<(usize, usize), PirError> {
    let log_n = n.trailing_zeros();
    if log_step == 0 || log_step > log_n {
        return Err(PirError::Malformed("expansion deeper than log n".into()));
    }
    let target = (1usize << (log_n - log_step + 1)) + 1;
    let g = key
        .galois
        .keys()
        .copied()
        .filter(|&g| g <= target)
        .max()
        .ok_or_else(|| sift_he::HeError::MissingKey(format!("Galois element ≤ {target}")))?;
    let (tl, gl) = (
        (target - 1).trailing_zeros(),
        usize::BITS - 1 - (g - 1).leading_zeros(),
    );
    if !(g - 1).is_power_of_two() || gl > tl {
        return Err(
            sift_he::HeError::MissingKey(format!("Galois element 2^k+1 ≤ {target}")).into(),
        );
    }
    Ok((g, 1usize << (tl - gl)))
}

fn expand_level(
    ctx: &Context,
    k: usize,
    log_step: u32,
    key: &EvaluationKey,
) -> Result<ExpandLevel, PirError> {
    let n = ctx.n;
    // Checks the level against log n before the shift below is formed.
    let (g, count) = level_element(n, log_step, key)?;
    let shift = 1usize << (log_step - 1);
    // X^(−shift) = −X^(n−shift).
    let mut mono = Poly::zero(ctx, k, Format::Coeff);
    for r in 0..k {
        let q = ctx.modulus(r).value;
        mono.row_mut(r)[n - shift] = q - 1;
    }
    mono.forward_ntt(ctx)?;
    // Shoup factors ⌊w·2^32/q⌋ for moduli below 2^30 (32-bit lanes, packed above w),
    // ⌊w·2^64/q⌋ otherwise.
    let mono_shoup: Vec<u64> = (0..k)
        .flat_map(|r| {
            let m = *ctx.modulus(r);
            mono.row(r)
                .iter()
                .map(move |&w| {
                    if m.value < (1 << 30) {
                        // w and its 32-bit Shoup factor in one word (see `bfv::Twist`).
                        w | ((w << 32) / m.value) << 32
                    } else {
                        m.shoup(w)
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect();
    Ok(ExpandLevel {
        g,
        count,
        perm: Poly::galois_eval_permutation(n, g)?,
        blocks: twist_blocks(&mono_shoup, n),
        mono: mono.into_data(),
        mono_shoup,
    })
}

/// One expansion step in Eval form, in place: `ct` becomes c + σ(c) and the returned
/// ciphertext (from the pool) (c − σ(c))·X^(−2^(ℓ−1)).
fn expand_one_step_eval(
    ctx: &Context,
    ct: &mut Ciphertext,
    level: &ExpandLevel,
    key: &EvaluationKey,
    pool: &mut ExpansionPool,
) -> Result<Ciphertext, PirError> {
    let ksk = key
        .galois
        .get(&level.g)
        .ok_or_else(|| sift_he::HeError::MissingKey(format!("Galois element {}", level.g)))?;
    let mut minus = pool.take();
    bfv::expand_step_eval(
        ctx,
        ct,
        level.g,
        level.count,
        &level.perm,
        ksk,
        bfv::Twist {
            w: &level.mono,
            packed: &level.mono_shoup,
            blocks: level
                .blocks
                .as_ref()
                .map(|(b, words)| (*b, words.as_slice())),
        },
        &mut pool.scratch,
        &mut minus,
    )?;
    Ok(minus)
}

/// Oblivious expansion of query ciphertexts into `output_count` encrypted 0/1 constants
/// (`PirUtil.expand`), computed in Eval form (no NTT round trip per step); outputs in Eval form.
pub fn expand_eval(
    ctx: &Context,
    cts: &[Ciphertext],
    output_count: usize,
    key: &EvaluationKey,
) -> Result<Vec<Ciphertext>, PirError> {
    expand_eval_pooled(ctx, cts, output_count, key, &mut ExpansionPool::default())
}

/// [`expand_eval`] with buffers from `pool` (hand the outputs back with
/// [`ExpansionPool::recycle`] once used).
///
/// Output p is the leaf reached by reading p's bits from the lowest: at level ℓ the first
/// child (c + σ(c)) keeps the positions whose bit ℓ−1 is 0, the second the others, which is
/// the interleaving of Apple's recursion. Leaves that end one level early (when
/// the output count is not a power of two) are doubled, as Apple's client expects.
pub fn expand_eval_pooled(
    ctx: &Context,
    cts: &[Ciphertext],
    output_count: usize,
    key: &EvaluationKey,
    pool: &mut ExpansionPool,
) -> Result<Vec<Ciphertext>, PirError> {
    expand_eval_into(ctx, cts, output_count, key, pool, &mut |_, _| Ok(false))?
        .into_iter()
        .map(|c| c.ok_or_else(|| PirError::Malformed("expansion left an output empty".into())))
        .collect()
}

/// Decides, for output p as soon as it exists, whether it is consumed on the spot (true: its
/// buffers go back to the pool) or kept in the returned vector.
pub type LeafSink<'a> = dyn FnMut(usize, &Ciphertext) -> Result<bool, PirError> + 'a;

/// [`expand_eval_pooled`] handing every output to `sink` while it is still in cache; outputs
/// the sink consumed are None in the result.
pub fn expand_eval_into(
    ctx: &Context,
    cts: &[Ciphertext],
    output_count: usize,
    key: &EvaluationKey,
    pool: &mut ExpansionPool,
    sink: &mut LeafSink,
) -> Result<Vec<Option<Ciphertext>>, PirError> {
    let n = ctx.n;
    if cts.is_empty() || (cts.len() - 1) * n >= output_count || cts.len() * n < output_count {
        return Err(PirError::Malformed(format!(
            "{} query ciphertexts cannot expand to {output_count}",
            cts.len()
        )));
    }
    let k = cts[0].moduli_count();
    let height = ceil_log2(output_count.min(n) as u64);
    let levels = (1..=height)
        .map(|l| cached_level(ctx, k, l, key, pool))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out: Vec<Option<Ciphertext>> = (0..output_count).map(|_| None).collect();
    let mut base = 0;
    for ct in cts {
        let m = (output_count - base).min(n);
        let tree_height = ceil_log2(m as u64);
        let mut root = pool.take();
        root.clone_from(ct);
        root.convert_to(ctx, Format::Eval);
        root.clear_seed();
        expand_node(
            ctx,
            root,
            Node {
                count: m,
                step: 1,
                height: tree_height,
                pos: 0,
            },
            &mut Walk {
                levels: &levels,
                key,
                pool,
                sink,
                base,
                out: &mut out[base..base + m],
            },
        )?;
        base += m;
    }
    Ok(out)
}

/// Where a node of the expansion tree sits: outputs below it, its level (1-based), the tree
/// height and the position of its first output.
#[derive(Clone, Copy)]
struct Node {
    count: usize,
    step: u32,
    height: u32,
    pos: usize,
}

/// What stays the same while one query ciphertext's tree is walked.
struct Walk<'a, 'b> {
    levels: &'a [Arc<ExpandLevel>],
    key: &'a EvaluationKey,
    pool: &'a mut ExpansionPool,
    sink: &'a mut LeafSink<'b>,
    /// Output index of this tree's first leaf.
    base: usize,
    out: &'a mut [Option<Ciphertext>],
}

/// Expands one node depth first (the subtree's ciphertexts stay in cache), handing its leaves
/// to the sink or writing them into `out` at their positions.
fn expand_node(ctx: &Context, mut c: Ciphertext, node: Node, w: &mut Walk) -> Result<(), PirError> {
    if node.count == 1 {
        if node.step <= node.height {
            c.mul_scalar_assign(ctx, 2);
        }
        if (w.sink)(w.base + node.pos, &c)? {
            w.pool.recycle([c]);
            return Ok(());
        }
        let slot = w
            .out
            .get_mut(node.pos)
            .ok_or_else(|| PirError::Malformed("expansion position".into()))?;
        *slot = Some(c);
        return Ok(());
    }
    let level = w
        .levels
        .get(node.step as usize - 1)
        .ok_or_else(|| PirError::Malformed("expansion level".into()))?
        .clone();
    let diff = expand_one_step_eval(ctx, &mut c, &level, w.key, w.pool)?;
    let child = |count, pos| Node {
        count,
        step: node.step + 1,
        height: node.height,
        pos,
    };
    let half = node.count / 2;
    expand_node(ctx, c, child(node.count - half, node.pos), w)?;
    expand_node(ctx, diff, child(half, node.pos + (1 << (node.step - 1))), w)
}

/// Oblivious expansion of query ciphertexts into `output_count` encrypted 0/1 constants
/// (`PirUtil.expand`); outputs in Coeff form.
pub fn expand(
    ctx: &Context,
    cts: &[Ciphertext],
    output_count: usize,
    key: &EvaluationKey,
) -> Result<Vec<Ciphertext>, PirError> {
    let mut out = expand_eval(ctx, cts, output_count, key)?;
    for c in &mut out {
        c.convert_to(ctx, Format::Coeff);
    }
    Ok(out)
}

/// One expansion step (`expandCiphertextForOneStep`): returns (c + σ(c), (c − σ(c))·X^(−2^(ℓ−1))).
#[cfg(test)]
fn expand_one_step_reference(
    ctx: &Context,
    ct: &Ciphertext,
    log_step: u32,
    key: &EvaluationKey,
) -> Result<(Ciphertext, Ciphertext), PirError> {
    let shift = 1i64 << (log_step - 1);
    let (g, count) = level_element(ctx.n, log_step, key)?;
    let mut c1 = ct.clone();
    for _ in 0..count {
        c1 = bfv::apply_galois(ctx, &c1, g, key)?;
    }
    let mut diff = ct.clone();
    diff.sub_assign(ctx, &c1)?;
    diff.multiply_power_of_x(ctx, -shift)?;
    c1.add_assign(ctx, ct)?;
    Ok((c1, diff))
}

#[cfg(test)]
fn expand_ciphertext_reference(
    ctx: &Context,
    ct: Ciphertext,
    output_count: usize,
    log_step: u32,
    expected_height: u32,
    key: &EvaluationKey,
) -> Result<Vec<Ciphertext>, PirError> {
    if output_count == 1 {
        if log_step > expected_height {
            return Ok(vec![ct]);
        }
        let mut out = ct.clone();
        out.add_assign(ctx, &ct)?;
        return Ok(vec![out]);
    }
    let second = output_count >> 1;
    let first = output_count - second;
    let (p0, p1) = expand_one_step_reference(ctx, &ct, log_step, key)?;
    drop(ct);
    let a = expand_ciphertext_reference(ctx, p0, first, log_step + 1, expected_height, key)?;
    let b = expand_ciphertext_reference(ctx, p1, second, log_step + 1, expected_height, key)?;
    let mut out = Vec::with_capacity(output_count);
    let mut a = a.into_iter();
    for y in b {
        out.push(a.next().expect("first half is not shorter"));
        out.push(y);
    }
    out.extend(a);
    Ok(out)
}

/// The straightforward Coeff-form, depth-first expansion, kept to check [`expand_eval`] against.
#[cfg(test)]
pub(crate) fn expand_reference(
    ctx: &Context,
    cts: &[Ciphertext],
    output_count: usize,
    key: &EvaluationKey,
) -> Result<Vec<Ciphertext>, PirError> {
    let n = ctx.n;
    if cts.is_empty() || (cts.len() - 1) * n >= output_count || cts.len() * n < output_count {
        return Err(PirError::Malformed(format!(
            "{} query ciphertexts cannot expand to {output_count}",
            cts.len()
        )));
    }
    let mut remaining = output_count;
    let mut out = Vec::with_capacity(output_count);
    for ct in cts {
        let m = remaining.min(n);
        remaining -= m;
        let mut c = ct.clone();
        c.convert_to(ctx, Format::Coeff);
        c.clear_seed();
        out.extend(expand_ciphertext_reference(
            ctx,
            c,
            m,
            1,
            ceil_log2(m as u64),
            key,
        )?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{KeyCompression, evaluation_key_config};
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use sift_he::{Plaintext, SecretKey};

    /// The Eval-form expansion must produce exactly the reference expansion's ciphertexts,
    /// with and without key compression (repeated Galois applications).
    #[test]
    fn eval_expansion_matches_reference() {
        let ctx = Context::predefined("n_4096_logq_27_28_28_logt_4").unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        let sk = SecretKey::generate(&ctx, &mut rng);
        for (outputs, compression) in [
            (120, KeyCompression::NoCompression),
            (37, KeyCompression::MaxCompression),
        ] {
            let cfg = evaluation_key_config(outputs, ctx.n, compression);
            let key =
                EvaluationKey::generate(&ctx, &sk, &cfg.galois_elements, true, &mut rng).unwrap();
            let mut values = vec![0u64; outputs];
            values[3] = 1;
            values[outputs - 1] = 7;
            let pt = Plaintext::new(&ctx, &values).unwrap();
            let q = vec![bfv::encrypt(&ctx, &pt, &sk, &mut rng)];
            let fast = expand(&ctx, &q, outputs, &key).unwrap();
            let slow = expand_reference(&ctx, &q, outputs, &key).unwrap();
            assert_eq!(fast.len(), outputs);
            assert_eq!(fast, slow);
        }
    }

    /// X^(−s) in Eval form is constant on aligned blocks of s slots, so the levels with s ≥ 8
    /// get twist words once per block of min(s, 64), each equal to the row it stands for.
    #[test]
    fn deep_levels_twist_once_per_block() {
        let ctx = Context::predefined("n_4096_logq_27_28_28_logt_4").unwrap();
        let mut rng = StdRng::seed_from_u64(5);
        let sk = SecretKey::generate(&ctx, &mut rng);
        let cfg = evaluation_key_config(120, ctx.n, KeyCompression::NoCompression);
        let key = EvaluationKey::generate(&ctx, &sk, &cfg.galois_elements, true, &mut rng).unwrap();
        for l in 1..=7u32 {
            let level = expand_level(&ctx, 2, l, &key).unwrap();
            let s = 1usize << (l - 1);
            match &level.blocks {
                None => assert!(s < 8, "level {l}"),
                Some((b, words)) => {
                    assert_eq!(*b, s.min(64), "level {l}");
                    for (c, w) in level.mono_shoup.iter().enumerate() {
                        assert_eq!(*w, words[c / b], "level {l} slot {c}");
                    }
                }
            }
        }
    }

    /// A pooled expansion run twice (reused, dirty buffers) equals a fresh one.
    #[test]
    fn pooled_expansion_reuses_buffers_exactly() {
        let ctx = Context::predefined("n_4096_logq_27_28_28_logt_4").unwrap();
        let mut rng = StdRng::seed_from_u64(4);
        let sk = SecretKey::generate(&ctx, &mut rng);
        let outputs = 23;
        let cfg = evaluation_key_config(outputs, ctx.n, KeyCompression::HybridCompression);
        let key = EvaluationKey::generate(&ctx, &sk, &cfg.galois_elements, true, &mut rng).unwrap();
        let mut pool = ExpansionPool::default();
        for hot in [5usize, 22] {
            let mut values = vec![0u64; outputs];
            values[hot] = 3;
            let pt = Plaintext::new(&ctx, &values).unwrap();
            let q = vec![bfv::encrypt(&ctx, &pt, &sk, &mut rng)];
            let pooled = expand_eval_pooled(&ctx, &q, outputs, &key, &mut pool).unwrap();
            assert_eq!(pooled, expand_eval(&ctx, &q, outputs, &key).unwrap());
            pool.recycle(pooled);
            assert!(!pool.spare.is_empty());
        }
    }
}
