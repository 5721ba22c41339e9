//! Encryption parameters, including every predefined set of Apple's `PredefinedRlweParameters`.

use crate::HeError;
use crate::arith::{ceil_log2, floor_log2, is_prime};

/// BFV encryption parameters. The last coefficient modulus is the special key-switching prime P;
/// ciphertexts live over the first `moduli.len() - 1` moduli (or all of them when there is only one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionParameters {
    /// Apple's name for the set, when predefined.
    pub name: Option<&'static str>,
    /// Polynomial degree n (power of two).
    pub n: usize,
    /// Plaintext modulus t.
    pub t: u64,
    /// Coefficient moduli q_0 … q_{L−1}; the last is the special prime P.
    pub moduli: Vec<u64>,
}

/// (name, n, t, moduli) for every predefined set (SHE `EncryptionParameters.swift`).
const PREDEFINED: &[(&str, usize, u64, &[u64])] = &[
    (
        "insecure_n_16_logq_60_logt_15",
        16,
        16417,
        &[1152921504606830593],
    ),
    (
        "insecure_n_512_logq_4x60_logt_20",
        512,
        525313,
        &[
            576460752303436801,
            576460752303439873,
            576460752303447041,
            576460752303471617,
        ],
    ),
    (
        "insecure_n_8_logq_5x18_logt_5",
        8,
        17,
        &[131249, 131297, 131441, 131489, 131617],
    ),
    (
        "n_4096_logq_16_33_33_logt_4",
        4096,
        11,
        &[40961, 8589852673, 8589844481],
    ),
    (
        "n_4096_logq_27_28_28_logt_13",
        4096,
        4099,
        &[134176769, 268369921, 268361729],
    ),
    (
        "n_4096_logq_27_28_28_logt_16",
        4096,
        40961,
        &[134176769, 268369921, 268361729],
    ),
    (
        "n_4096_logq_27_28_28_logt_17",
        4096,
        65537,
        &[134176769, 268369921, 268361729],
    ),
    (
        "n_4096_logq_27_28_28_logt_4",
        4096,
        11,
        &[134176769, 268369921, 268361729],
    ),
    (
        "n_4096_logq_27_28_28_logt_5",
        4096,
        17,
        &[134176769, 268369921, 268361729],
    ),
    (
        "n_4096_logq_27_28_28_logt_6",
        4096,
        37,
        &[134176769, 268369921, 268361729],
    ),
    (
        "n_8192_logq_28_60_60_logt_20",
        8192,
        557057,
        &[268369921, 1152921504606830593, 1152921504606748673],
    ),
    (
        "n_8192_logq_29_60_60_logt_15",
        8192,
        16411,
        &[536690689, 1152921504606830593, 1152921504606748673],
    ),
    (
        "n_8192_logq_3x55_logt_24",
        8192,
        8404993,
        &[36028797018652673, 36028797017571329, 36028797017456641],
    ),
    (
        "n_8192_logq_3x55_logt_29",
        8192,
        268582913,
        &[36028797018652673, 36028797017571329, 36028797017456641],
    ),
    (
        "n_8192_logq_3x55_logt_30",
        8192,
        536903681,
        &[36028797018652673, 36028797017571329, 36028797017456641],
    ),
    (
        "n_8192_logq_3x55_logt_42",
        8192,
        2199023288321,
        &[36028797018652673, 36028797017571329, 36028797017456641],
    ),
    (
        "n_8192_logq_40_60_60_logt_26",
        8192,
        33832961,
        &[1099511480321, 1152921504606830593, 1152921504606748673],
    ),
];

impl EncryptionParameters {
    /// Every predefined parameter name, in Apple's declaration order.
    pub fn predefined_names() -> impl Iterator<Item = &'static str> {
        PREDEFINED.iter().map(|p| p.0)
    }

    /// The predefined set with Apple's `PredefinedRlweParameters` raw name.
    pub fn predefined(name: &str) -> Result<Self, HeError> {
        let (name, n, t, moduli) = PREDEFINED
            .iter()
            .find(|p| p.0 == name)
            .ok_or_else(|| HeError::InvalidParameters(format!("unknown parameter set {name}")))?;
        Ok(EncryptionParameters {
            name: Some(name),
            n: *n,
            t: *t,
            moduli: moduli.to_vec(),
        })
    }

    /// Custom parameters; checks n is a power of two and every modulus is an NTT-friendly prime > t
    /// below 2^61.
    pub fn new(n: usize, t: u64, moduli: Vec<u64>) -> Result<Self, HeError> {
        let p = EncryptionParameters {
            name: None,
            n,
            t,
            moduli,
        };
        p.validate()?;
        Ok(p)
    }

    /// Checks the invariants the arithmetic relies on.
    pub fn validate(&self) -> Result<(), HeError> {
        let bad = |m: &str| Err(HeError::InvalidParameters(m.to_string()));
        if !self.n.is_power_of_two() || self.n < 2 {
            return bad("degree must be a power of two");
        }
        if self.moduli.is_empty() || self.moduli.len() > 32 {
            return bad("need 1..=32 moduli");
        }
        if self.t < 2 || !is_prime(self.t) {
            return bad("plaintext modulus must be prime");
        }
        for (i, &q) in self.moduli.iter().enumerate() {
            if q >= (1 << 61) || !is_prime(q) || q % (2 * self.n as u64) != 1 || q <= self.t {
                return bad("coefficient moduli must be NTT-friendly primes > t below 2^61");
            }
            if self.moduli[..i].contains(&q) {
                return bad("duplicate modulus");
            }
        }
        Ok(())
    }

    /// Number of moduli a fresh ciphertext uses (L − 1, or 1 with a single modulus).
    pub fn ciphertext_moduli_count(&self) -> usize {
        if self.moduli.len() > 1 {
            self.moduli.len() - 1
        } else {
            1
        }
    }

    /// Whether key switching (Galois, relinearization) is possible: needs ≥ 2 moduli.
    pub fn supports_evaluation_key(&self) -> bool {
        self.moduli.len() > 1
    }

    /// ⌊log2 t⌋: plaintext bits carried per coefficient.
    pub fn bits_per_coeff(&self) -> u32 {
        floor_log2(self.t)
    }

    /// n·⌊log2 t⌋ / 8: bytes one plaintext holds.
    pub fn bytes_per_plaintext(&self) -> usize {
        self.n * self.bits_per_coeff() as usize / 8
    }

    /// ⌈log2 q_i⌉ for each modulus: serialized bits per coefficient.
    pub fn bit_widths(&self) -> Vec<u32> {
        self.moduli.iter().map(|&q| ceil_log2(q)).collect()
    }

    /// Apple's `skipLSBsForDecryption` for a two-polynomial ciphertext at one modulus q_0.
    pub fn skip_lsbs_for_decryption(&self) -> [u32; 2] {
        let q0 = self.moduli[0];
        let t = self.t;
        let l_prime: i64 = if q0 >= 2 * t {
            floor_log2(q0 / t) as i64 - 3
        } else {
            0
        };
        let mut poly0 = l_prime.max(0);
        let tmp = (8.0 * (2.0 * self.n as f64 / 9.0).sqrt()) as u64;
        let mut poly1 = l_prime - if tmp == 0 { 0 } else { ceil_log2(tmp) as i64 };
        if poly1 <= 1 {
            poly0 = (l_prime + 1).max(0);
            poly1 = 0;
        }
        [poly0 as u32, poly1 as u32]
    }
}
