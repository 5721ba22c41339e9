//! Live Caller ID Lookup end to end, as separate processes: `sift lcid build` from Apple's
//! documented input (and generated ones) with icons, `sift serve` with tokens and the OHTTP
//! gateway, and `sift check --lcid` doing both lookups of an incoming call.

use std::path::Path;

use crate::common;

use common::{Server, sift, stdout_of_success, usecase_toml, users_toml, write_file};
use rand::{Rng, SeedableRng};

const BUNDLE: &str = "net.example.lookup";
const USER_TOKEN: &str = "lcid-user-token";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/vectors/keyworddb");

/// Starts `sift serve` for `out/block` and `out/identity` with tokens required; returns the
/// server and its base URL.
fn serve(root: &Path, out: &Path) -> (Server, String) {
    let mut text = format!(
        "listen = \"127.0.0.1:0\"\ndev_plain_http = true\nstate_dir = \"{}\"\n{}",
        root.join("state").display(),
        users_toml(USER_TOKEN)
    );
    for stem in ["block", "identity"] {
        let dir = out.join(stem);
        text += &usecase_toml(&format!("{BUNDLE}.{stem}"), &dir.display().to_string());
        text += &format!("stem = \"{stem}\"\n");
    }
    common::serve(&write_file(root, "sift.toml", &text))
}

/// `sift check --lcid` for each number through the gateway with tokens; one JSON per number.
fn check(base: &str, numbers: &[&str]) -> Vec<serde_json::Value> {
    numbers
        .iter()
        .map(|n| {
            let out = stdout_of_success(
                sift()
                    .args(["check", "--json", "--bundle-id", BUNDLE, "--lcid", n])
                    .args(["--service", base, "--issuer", base, "--gateway", base])
                    .args(["--user-token", USER_TOKEN]),
            );
            serde_json::from_str(out.trim()).unwrap()
        })
        .collect()
}

fn random_bytes(rng: &mut impl Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.r#gen()).collect()
}

#[test]
fn apple_lcid_testing_input_answers_both_use_cases_through_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let icons = root.join("icons");
    std::fs::create_dir(&icons).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    // Apple's example: icons for Adam and the grocery store; one large enough to need several
    // response ciphertexts. Icons are opaque bytes to sift.
    std::fs::write(icons.join("+123.heic"), random_bytes(&mut rng, 1500)).unwrap();
    std::fs::write(icons.join("+12345.heic"), random_bytes(&mut rng, 20_000)).unwrap();
    let out = root.join("lcid");
    let stdout = stdout_of_success(
        sift()
            .args(["lcid", "build"])
            .arg(Path::new(FIXTURES).join("lcid-input.txtpb"))
            .arg("--icons")
            .arg(&icons)
            .arg("-o")
            .arg(&out),
    );
    assert!(stdout.contains("<bundle id>.block"), "{stdout}");
    assert!(out.join("block/current/block-0.words").exists());
    assert!(out.join("identity/current/identity-0.words").exists());
    let (_server, base) = serve(root, &out);
    let answers = check(&base, &["+123", "+1234", "+12345", "+1999"]);
    // (number, block, name, category, cache expiry in minutes where checked, icon bytes)
    let expected = [
        ("+123", false, "Adam", "person", Some(8), 1500),
        ("+1234", true, "Bob", "unspecified", None, 0),
        (
            "+12345",
            false,
            "Grocery Store",
            "business",
            Some(18),
            20_000,
        ),
    ];
    for (answer, (number, block, name, category, minutes, icon)) in answers.iter().zip(expected) {
        let id = &answer["identity"];
        assert_eq!(answer["block"], block, "{number}");
        assert_eq!(id["name"], name, "{number}");
        assert_eq!(id["category"], category, "{number}");
        if let Some(minutes) = minutes {
            assert_eq!(id["cache_expiry_minutes"], minutes, "{number}");
        }
        assert_eq!(id["icon_bytes"], icon, "{number}");
    }
    let absent = &answers[3];
    assert!(
        absent["block"].is_null() && absent["identity"].is_null(),
        "{absent}"
    );
    // Text output for people.
    let text = stdout_of_success(
        sift()
            .args(["check", "--bundle-id", BUNDLE, "--lcid", "+1234"])
            .args(["--service", &base, "--issuer", &base, "--gateway", &base])
            .args(["--user-token", USER_TOKEN]),
    );
    assert!(
        text.contains("+1234: BLOCK") && text.contains("\"Bob\""),
        "{text}"
    );
}

/// Numbers with identities (every third with an icon), sharded so that the block dataset
/// uses doubleMod over the identity dataset's shard count; every number answers both use
/// cases exactly through the gateway. `count` numbers, `per_shard` identities per shard.
fn many_numbers_answer_exactly(count: usize, per_shard: usize, probes: usize) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let icons = root.join("icons");
    std::fs::create_dir(&icons).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let mut text = String::new();
    let mut expected = Vec::new();
    for i in 0..count {
        let number = format!("+1415555{i:04}");
        let block = i % 7 == 0;
        let icon = (i % 3 == 0).then(|| rng.gen_range(100..600));
        text += &format!(
            "identities {{ key: \"{number}\" value {{ name: \"Caller {i}\" cache_expiry_minutes: {} block: {block} category: IDENTITY_CATEGORY_BUSINESS }} }}\n",
            i % 60
        );
        if let Some(n) = icon {
            std::fs::write(
                icons.join(format!("{number}.heic")),
                random_bytes(&mut rng, n),
            )
            .unwrap();
        }
        expected.push((number, block, icon.unwrap_or(0), i));
    }
    let input = root.join("input.txtpb");
    std::fs::write(&input, text).unwrap();
    let out = root.join("lcid");
    let o = sift()
        .args(["lcid", "build"])
        .arg(&input)
        .arg("--icons")
        .arg(&icons)
        .arg("-o")
        .arg(&out)
        .args(["--identity-entries-per-shard", &per_shard.to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let shards = (count / per_shard).max(1);
    assert!(
        stderr.contains(&format!("{shards} identity shard(s)")),
        "{stderr}"
    );
    let params = std::fs::read_to_string(out.join("block/current/block-0.params.txtpb")).unwrap();
    if shards > 1 {
        assert!(
            params.contains(&format!("other_shard_count: {shards}")),
            "{params}"
        );
    }
    let (_server, base) = serve(root, &out);
    let picks: Vec<_> = (0..probes)
        .map(|_| &expected[rng.gen_range(0..count)])
        .collect();
    let numbers: Vec<&str> = picks.iter().map(|p| p.0.as_str()).collect();
    for (answer, (number, block, icon, i)) in check(&base, &numbers).iter().zip(picks) {
        assert_eq!(answer["block"], *block, "{number}");
        assert_eq!(
            answer["identity"]["name"],
            format!("Caller {i}"),
            "{number}"
        );
        assert_eq!(answer["identity"]["icon_bytes"], *icon, "{number}");
        assert_eq!(
            answer["identity"]["cache_expiry_minutes"],
            i % 60,
            "{number}"
        );
    }
    let none = check(&base, &["+14155559999x"]);
    assert!(none[0]["block"].is_null() && none[0]["identity"].is_null());
}

#[test]
fn several_identity_shards_with_double_mod_block_sharding_answer_exactly() {
    many_numbers_answer_exactly(600, 200, 6);
}

/// The scale: 10,000 numbers with icons (about 15 s in the debug profile; it runs in
/// parallel with the rest of the binary, so CI pays little for it).
#[test]
fn ten_thousand_numbers_with_icons_answer_both_use_cases() {
    many_numbers_answer_exactly(10_000, 5_000, 20);
}
