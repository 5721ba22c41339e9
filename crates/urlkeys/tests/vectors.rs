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

#[test]
fn tricky_urls_give_unique_sub_urls() {
    for url in [
        "https://www.a.b.example.com/x//y/?q=1#f",
        "https://WWW.Example.COM:443/A//B//",
        "http://192.168.0.1:8080/a/b",
        "https://example.com#frag",
        "https://example.com/?",
    ] {
        let subs = sift_urlkeys::suburls(url).unwrap();
        let mut sorted = subs.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), subs.len(), "duplicates for {url}: {subs:?}");
        let mut walked = Vec::new();
        sift_urlkeys::for_each_suburl(url, |k| walked.push(k.to_owned())).unwrap();
        assert_eq!(walked, subs);
    }
    let subs = sift_urlkeys::suburls("https://www.a.b.example.com/x//y/?q=1#f").unwrap();
    for want in [
        "example.com",
        "b.example.com:443/x/",
        "a.b.example.com/x//y?q=1#f",
    ] {
        assert!(subs.iter().any(|s| s == want), "missing {want} in {subs:?}");
    }
}

#[test]
fn hosts_with_empty_labels_are_rejected() {
    assert!(sift_urlkeys::suburls("https://a..b.example.com/").is_err());
    assert!(sift_urlkeys::for_each_suburl("https://a..b.example.com/", |_| {}).is_err());
}
