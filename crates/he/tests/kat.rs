//! Apple known-answer tests (vectors under tests/vectors/he, sources noted there).

use sift_he::arith::min_primitive_root;
use sift_he::drbg::{NistAes128Ctr, NistCtrDrbg};
use sift_he::ntt::NttTable;
use sift_he::packing;
use sift_he::poly::{sample_cbd, sample_ternary, sample_uniform};
use sift_he::serialize::{deserialize_rows, serialize_rows};
use sift_he::{Context, EncryptionParameters, Format, Poly};

fn lines(s: &str) -> impl Iterator<Item = &str> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// Runs `check` on each vector line of `text` (blank lines and `#` comments skipped) and
/// asserts that there were `expected` of them.
fn each_vector(text: &str, expected: usize, mut check: impl FnMut(&str)) {
    let mut count = 0;
    for l in lines(text) {
        check(l);
        count += 1;
    }
    assert_eq!(count, expected);
}

fn nums(s: &str) -> Vec<u64> {
    if s == "range256" {
        return (0..256).collect();
    }
    s.split(',').map(|x| x.parse().unwrap()).collect()
}

#[test]
fn ntt_kats() {
    each_vector(include_str!("../../../tests/vectors/he/ntt.txt"), 15, |l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f[0] == "root" {
            let (q, d, e): (u64, u64, u64) = (
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            );
            assert_eq!(min_primitive_root(q, d), Some(e), "{l}");
        } else {
            let q: u64 = f[0].parse().unwrap();
            let coeffs = nums(f[1]);
            let evals = nums(f[2]);
            let t = NttTable::new(q, coeffs.len()).unwrap();
            let mut a = coeffs.clone();
            t.forward(&mut a);
            assert_eq!(a, evals, "{l}");
            t.inverse(&mut a);
            assert_eq!(a, coeffs, "{l}");
        }
    });
}

#[test]
fn ntt_4096_one_hot() {
    let t = NttTable::new(557057, 4096).unwrap();
    let mut a = vec![0u64; 4096];
    a[0] = 1;
    t.forward(&mut a);
    assert!(a.iter().all(|&x| x == 1));
}

#[test]
fn ntt_matches_naive_negacyclic() {
    let n = 64;
    let q = 1152921504606830593u64;
    let t = NttTable::new(q, n).unwrap();
    let m = t.modulus;
    let x: Vec<u64> = (0..n as u64)
        .map(|i| m.reduce(i.wrapping_mul(0x9E3779B97F4A7C15)))
        .collect();
    let y: Vec<u64> = (0..n as u64)
        .map(|i| m.reduce(i.wrapping_mul(0xD1B54A32D192ED03) ^ 77))
        .collect();
    let mut naive = vec![0u64; n];
    for i in 0..n {
        for j in 0..n {
            let p = m.mul(x[i], y[j]);
            if i + j < n {
                naive[i + j] = m.add(naive[i + j], p);
            } else {
                naive[i + j - n] = m.sub(naive[i + j - n], p);
            }
        }
    }
    let (mut a, mut b) = (x.clone(), y.clone());
    t.forward(&mut a);
    t.forward(&mut b);
    let mut c: Vec<u64> = a.iter().zip(&b).map(|(&u, &v)| m.mul(u, v)).collect();
    t.inverse(&mut c);
    assert_eq!(c, naive);
}

#[test]
fn nist_ctr_drbg_vectors() {
    each_vector(
        include_str!("../../../tests/vectors/he/nist_ctr_drbg.txt"),
        15,
        |l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let entropy: [u8; 32] = hex::decode(f[0]).unwrap().try_into().unwrap();
            let expected = hex::decode(f[1]).unwrap();
            let mut d = NistCtrDrbg::new(&entropy);
            let mut out = vec![0u8; expected.len()];
            d.generate(&mut out);
            d.generate(&mut out);
            assert_eq!(out, expected, "{l}");
        },
    );
}

#[test]
fn randomize_interop_kats() {
    each_vector(
        include_str!("../../../tests/vectors/he/randomize_interop.txt"),
        4,
        |l| {
            let f: Vec<&str> = l.splitn(4, ' ').collect();
            let seed: [u8; 32] = hex::decode(f[1]).unwrap().try_into().unwrap();
            let moduli = nums(f[2]);
            let expected: Vec<Vec<u64>> = f[3].split('|').map(|p| nums(p.trim())).collect();
            let mut rng = NistAes128Ctr::new(&seed);
            let n = 4;
            let ms: Vec<sift_he::arith::Modulus> = moduli
                .iter()
                .map(|&q| sift_he::arith::Modulus::new(q))
                .collect();
            let sample = |rng: &mut NistAes128Ctr| {
                let mut d = vec![0u64; 2 * n];
                match f[0] {
                    "uniform" => sample_uniform(&ms, n, &mut d, rng),
                    "ternary" => sample_ternary(&moduli, n, &mut d, rng),
                    "cbd" => sample_cbd(&moduli, n, &mut d, rng),
                    _ => panic!("kind"),
                }
                d
            };
            for (i, exp) in expected.iter().enumerate() {
                if i > 0 {
                    for _ in 0..1000 {
                        sample(&mut rng);
                    }
                }
                assert_eq!(&sample(&mut rng), exp, "{l} poly {i}");
            }
        },
    );
}

#[test]
fn coefficient_packing_kats() {
    each_vector(
        include_str!("../../../tests/vectors/he/coefficient_packing.txt"),
        15,
        |l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let bits: u32 = f[2].parse().unwrap();
            let skip: u32 = f[3].parse().unwrap();
            if f[0] == "b2c" {
                let bytes: Vec<u8> = nums(f[1]).into_iter().map(|b| b as u8).collect();
                let decode = f[4] == "true";
                let got = packing::bytes_to_coefficients(&bytes, bits, decode, skip).unwrap();
                assert_eq!(got, nums(f[5]), "{l}");
            } else {
                let bytes: Vec<u8> = nums(f[4]).into_iter().map(|b| b as u8).collect();
                assert_eq!(
                    packing::coefficients_to_bytes(&nums(f[1]), bits, skip).unwrap(),
                    bytes,
                    "{l}"
                );
            }
        },
    );
}

#[test]
fn poly_serialize_kats() {
    each_vector(
        include_str!("../../../tests/vectors/he/poly_serialize.txt"),
        3,
        |l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let data = nums(f[0]);
            let moduli = nums(f[1]);
            let skip: u32 = f[2].parse().unwrap();
            let n = data.len() / moduli.len();
            let mut bytes = Vec::new();
            serialize_rows(&data, n, &moduli, skip, &mut bytes).unwrap();
            let mut back = vec![0u64; data.len()];
            assert_eq!(
                deserialize_rows(&bytes, n, &moduli, skip, &mut back).unwrap(),
                bytes.len()
            );
            assert_eq!(back, nums(f[3]), "{l}");
        },
    );
}

#[test]
fn parameter_kats() {
    each_vector(
        include_str!("../../../tests/vectors/he/parameters.txt"),
        17,
        |l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let p = EncryptionParameters::predefined(f[0]).unwrap();
            assert_eq!(p.n, f[1].parse::<usize>().unwrap());
            assert_eq!(
                p.bit_widths(),
                nums(f[2]).into_iter().map(|x| x as u32).collect::<Vec<_>>(),
                "{l}"
            );
            assert_eq!(sift_he::arith::ceil_log2(p.t), f[3].parse::<u32>().unwrap());
            assert_eq!(p.supports_evaluation_key(), f[4] == "true");
            let skip = nums(f[5]);
            assert_eq!(
                p.skip_lsbs_for_decryption().to_vec(),
                skip.iter().map(|&x| x as u32).collect::<Vec<_>>(),
                "{l}"
            );
            p.validate().unwrap();
        },
    );
    assert_eq!(EncryptionParameters::predefined_names().count(), 17);
    assert_eq!(
        EncryptionParameters::predefined("n_4096_logq_27_28_28_logt_5")
            .unwrap()
            .bytes_per_plaintext(),
        2048
    );
}

#[test]
fn galois_kats() {
    each_vector(
        include_str!("../../../tests/vectors/he/galois.txt"),
        3,
        |l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n: usize = f[0].parse().unwrap();
            let moduli = nums(f[1]);
            let g: usize = f[2].parse().unwrap();
            let ctx =
                Context::new(EncryptionParameters::new(n, 2, moduli.clone()).unwrap()).unwrap();
            let mut poly = Poly::zero(&ctx, moduli.len(), Format::Coeff);
            poly.data_mut().copy_from_slice(&nums(f[3]));
            let out = poly.apply_galois(&ctx, g).unwrap();
            assert_eq!(out.data(), nums(f[4]), "{l}");
            // Eval-form Galois agrees with Coeff-form for every element.
            for g in (3..2 * n).step_by(2) {
                let mut a = poly.apply_galois(&ctx, g).unwrap();
                a.forward_ntt(&ctx).unwrap();
                let mut e = poly.clone();
                e.forward_ntt(&ctx).unwrap();
                assert_eq!(e.apply_galois(&ctx, g).unwrap(), a, "element {g}");
            }
        },
    );
}

#[test]
fn ntt_small_modulus_path_matches_u64_path() {
    for (q, n) in [
        (268369921u64, 4096usize),
        (134176769, 4096),
        (40961, 4096),
        (536690689, 8192),
    ] {
        let t = NttTable::new(q, n).unwrap();
        let x: Vec<u64> = (0..n as u64)
            .map(|i| i.wrapping_mul(0x9E3779B97F4A7C15) % q)
            .collect();
        let (mut a, mut b) = (x.clone(), x.clone());
        t.forward(&mut a);
        t.forward_u64(&mut b);
        assert_eq!(a, b, "forward q={q}");
        t.inverse(&mut a);
        t.inverse_u64(&mut b);
        assert_eq!(a, x, "inverse q={q}");
        assert_eq!(b, x, "inverse u64 q={q}");
    }
}
