//! Apple's documented sub-URL examples (`tests/vectors/urlkeys/`).

use sift_urlkeys::suburls;
use std::collections::BTreeSet;

const OVERVIEW: &str =
    include_str!("../../../tests/vectors/urlkeys/neurlfiltermanager_overview.txt");
const PARSING: &str =
    include_str!("../../../tests/vectors/urlkeys/parsingconfiguration_examples.txt");

fn data(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
}

#[test]
fn overview_list_exact() {
    let mut it = data(OVERVIEW);
    let url = it.next().unwrap().strip_prefix("url ").unwrap();
    let want: BTreeSet<&str> = it.collect();
    assert_eq!(want.len(), 48);
    let got = suburls(url).unwrap();
    assert_eq!(got.len(), 48, "no duplicates expected: {got:?}");
    let got: BTreeSet<&str> = got.iter().map(String::as_str).collect();
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
}

#[test]
fn overview_order_matches_documentation() {
    let mut it = data(OVERVIEW);
    let url = it.next().unwrap().strip_prefix("url ").unwrap();
    let want: Vec<&str> = it.collect();
    assert_eq!(suburls(url).unwrap(), want);
}

#[test]
fn parsing_configuration_examples() {
    let mut got: Vec<String> = Vec::new();
    let mut cases = 0;
    for l in data(PARSING) {
        let (op, arg) = l.split_once(' ').unwrap();
        match op {
            "url" => {
                got = suburls(arg).unwrap();
                cases += 1;
            }
            "has" => assert!(got.iter().any(|g| g == arg), "{arg} missing from {got:?}"),
            "not" => assert!(
                !got.iter().any(|g| g == arg),
                "{arg} unexpectedly in {got:?}"
            ),
            _ => panic!("bad line {l}"),
        }
    }
    assert_eq!(cases, 3);
}

#[test]
fn case_insensitive_and_idn() {
    assert_eq!(
        suburls("HTTPS://WWW.SUB1.Example.COM/A/B/C?ID=123#Fragment").unwrap(),
        suburls("https://www.sub1.example.com/a/b/c?id=123#fragment").unwrap()
    );
    let v = suburls("https://www.bücher.de/").unwrap();
    assert_eq!(v[0], "xn--bcher-kva.de");
}

#[test]
fn empty_segments_do_not_duplicate() {
    let v = suburls("https://example.com/a//b").unwrap();
    let set: BTreeSet<&String> = v.iter().collect();
    assert_eq!(set.len(), v.len(), "{v:?}");
    assert!(v.contains(&"example.com/a//b".to_string()));
}
