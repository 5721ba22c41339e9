//! The fast walker ([`SubUrlWalker`], behind `suburls` and `for_each_suburl`) against a plain
//! reference expansion written from `parse_url` and the documented rules, on tricky URLs and on
//! a few thousand generated combinations (schemes, user info, IDN, case, ports, trailing dots,
//! IPs, empty segments, queries, fragments), errors included.

use sift_urlkeys::{
    KeyError, MAX_KEY, SubUrlWalker, for_each_suburl, normalize_key, parse_url, suburls,
};

/// The rules of the module documentation, spelled out with a `String` per piece: hosts from
/// two labels up (IP literals do not walk), each without then with the port, each with every
/// path form (with and without `/`), then the query/fragment forms; first occurrence kept.
fn reference(url: &str) -> Result<Vec<String>, KeyError> {
    let u = parse_url(url)?;
    let host = u.host.clone();
    let labels: Vec<&str> = host.split('.').collect();
    let is_ip = host.starts_with('[')
        || (labels.len() == 4 && labels.iter().all(|l| l.parse::<u8>().is_ok()));
    let hosts: Vec<String> = if is_ip || labels.len() < 2 {
        vec![host.clone()]
    } else {
        (0..labels.len() - 1)
            .rev()
            .map(|i| labels[i..].join("."))
            .collect()
    };
    let full = u.path.trim_end_matches('/').to_string();
    let mut tails: Vec<String> = vec![String::new(), "/".into()];
    for (i, c) in full.char_indices() {
        if c == '/' && i > 0 {
            tails.push(full[..i].to_string());
            tails.push(format!("{}/", &full[..i]));
        }
    }
    if !full.is_empty() {
        tails.push(full.clone());
        tails.push(format!("{full}/"));
    }
    for slash in ["/", ""] {
        match (&u.query, &u.fragment) {
            (Some(q), f) => {
                tails.push(format!("{full}{slash}?{q}"));
                if let Some(f) = f {
                    tails.push(format!("{full}{slash}?{q}#{f}"));
                }
            }
            (None, Some(f)) => tails.push(format!("{full}{slash}#{f}")),
            (None, None) => {}
        }
    }
    let mut ports = vec![String::new()];
    if let Some(p) = u.effective_port() {
        ports.push(format!(":{p}"));
    }
    let mut out: Vec<String> = Vec::new();
    for h in &hosts {
        for p in &ports {
            for t in &tails {
                let s = format!("{h}{p}{t}");
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
    }
    Ok(out)
}

/// `normalize_key` spelled out on `parse_url`: host, explicit port, path as given, non-empty
/// query and fragment.
fn reference_key(url: &str) -> Result<String, KeyError> {
    let u = parse_url(url)?;
    let mut key = u.host;
    if let Some(p) = u.port {
        key += &format!(":{p}");
    }
    key += &u.path;
    if let Some(q) = u.query {
        key += &format!("?{q}");
    }
    if let Some(f) = u.fragment {
        key += &format!("#{f}");
    }
    if key.len() > MAX_KEY {
        return Err(KeyError::TooLong);
    }
    Ok(key)
}

fn walked(w: &mut SubUrlWalker, url: &str) -> Result<Vec<String>, KeyError> {
    let mut v = Vec::new();
    let n = w.for_each(url, |k| v.push(k.to_owned()))?;
    assert_eq!(n, v.len(), "{url}: count");
    // The grouped form lists the same strings as prefixes.
    let mut g = Vec::new();
    let m = w.for_each_group(url, |s, lens| {
        assert!(lens.windows(2).all(|p| p[0] < p[1]), "{url}: {lens:?}");
        g.extend(lens.iter().map(|&l| s[..l].to_owned()));
    })?;
    assert_eq!(m, n);
    assert_eq!(g, v, "{url}: groups");
    Ok(v)
}

fn check(w: &mut SubUrlWalker, url: &str) {
    assert_eq!(
        normalize_key(url),
        reference_key(url),
        "normalize_key({url:?})"
    );
    let want = reference(url);
    let got = walked(w, url);
    assert_eq!(got, want, "walker vs reference for {url:?}");
    assert_eq!(suburls(url), want, "suburls vs reference for {url:?}");
    let mut v = Vec::new();
    let r = for_each_suburl(url, |k| v.push(k.to_owned()));
    match &want {
        Ok(want) => assert_eq!((r, &v), (Ok(()), want), "{url:?}"),
        Err(e) => assert_eq!(r, Err(e.clone()), "{url:?}"),
    }
    if let Ok(v) = &want {
        let mut s = v.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), v.len(), "duplicates for {url:?}");
    }
}

const TRICKY: &[&str] = &[
    "https://www.sub1.example.com/a/b/c?id=123#fragment",
    "HTTPS://WWW.SUB1.Example.COM/A/B/C?ID=123#Fragment",
    "https://www.example.com/news/article?id=42",
    "https://www.example.com/",
    "example.com",
    "www",
    "www.com",
    "www.www.example.com",
    "http://example.com",
    "http://example.com:80/",
    "https://example.com:8443/x/#frag",
    "https://example.com:/x",
    "https://example.com:00443/x",
    "https://example.com:65535",
    "https://example.com:0/",
    "https://example.com:7/",
    "https://example.com:00000/",
    "https://example.com:10000/",
    "https://example.com:65536",
    "https://example.com:8a",
    "https://example.com:-1",
    "ftp://example.com/file",
    "ws://example.com/chat",
    "WSS://Example.com/chat",
    "custom+scheme://example.com/",
    "example.com/redirect?u=http://evil.com/",
    "//example.com/a",
    "https://user:pw@example.com/a",
    "https://user@WWW.Example.com:81/a",
    "https://a@b@example.com/a",
    "https://example.com./a",
    "https://example.com../a",
    "https://.example.com/",
    "https://a..b.example.com/",
    "https://192.168.1.1/a",
    "https://192.168.1.1:8080/a/b?x#y",
    "https://256.1.1.1/a",
    "https://1.2.3/a",
    "https://www.1.2.3.4/a",
    "https://[::1]:8443/",
    "https://[2001:DB8::1]/a?q",
    "https://[::1/",
    "https://example.com/a//b",
    "https://WWW.Example.COM:443/A//B//",
    "https://www.a.b.example.com/x//y/?q=1#f",
    "https://example.com//",
    "https://example.com///a",
    "https://example.com#frag",
    "https://example.com/?",
    "https://example.com/?#",
    "https://example.com?q",
    "https://example.com#f?x",
    "https://example.com/a?b#c#d?e",
    "https://example.com/a?b?c",
    "https://example.com/a/?q=/x/y",
    "https://bücher.de/Straße",
    "https://www.BÜCHER.de/a?Ä=1#Ö",
    "https://例え.テスト/パス",
    "https://example.com/café",
    "https://xn--bcher-kva.de/a",
    "https://XN--BCHER-KVA.DE/a",
    "https://*.example.com/",
    "https:///path",
    "https://:443/",
    "",
    "   ",
    "  https://example.com/a  ",
    "https://exa mple.com/",
    "https://example.com/a b",
    "https://example.com/\u{7f}",
    "https://example.com/\u{b}",
    "\u{b}https://example.com/",
    "https://ex!ample.com/",
    "https://under_score.example.com/",
    "https://-dash.example.com/",
    "localhost",
    "localhost:3000/x",
    "a.b.c.d.e.f.example.co.uk/x",
];

#[test]
fn walker_matches_reference_on_tricky_urls() {
    let mut w = SubUrlWalker::new();
    for url in TRICKY {
        check(&mut w, url);
    }
    // And with a fresh walker per URL, in reverse order (no state leaks between URLs).
    for url in TRICKY.iter().rev() {
        check(&mut SubUrlWalker::new(), url);
    }
    let long = format!("https://example.com/{}", "a".repeat(MAX_KEY));
    check(&mut w, &long);
    // Keys at the length limit: the input fits, the key (scheme dropped) fits or not.
    let host = "example.com/";
    for extra in [0, 1, 8, 9] {
        let path = "b".repeat(MAX_KEY - host.len() + extra - 8);
        check(&mut w, &format!("https://{host}{path}"));
        check(&mut w, &format!("{host}{path}"));
        check(&mut w, &format!("example.com:1/{path}"));
    }
}

#[test]
fn walker_matches_reference_on_generated_urls() {
    let schemes = ["", "https://", "HTTP://", "ws://", "x-y://"];
    let users = ["", "u:p@", "@"];
    let hosts = [
        "example.com",
        "WWW.Sub.Example.COM.",
        "www.x",
        "10.0.0.1",
        "[::1]",
        "bücher.de",
        "a..b",
        "",
    ];
    let ports = ["", ":", ":8080", ":443", ":99999", ":x"];
    let paths = ["", "/", "/A/b", "/a//b/", "//", "/ä/x"];
    let queries = ["", "?", "?Q=1", "?a?b"];
    let frags = ["", "#", "#F", "#f?x"];
    let mut w = SubUrlWalker::new();
    let mut cases = 0;
    for s in schemes {
        for u in users {
            for h in hosts {
                for p in ports {
                    for pa in paths {
                        for q in queries {
                            for f in frags {
                                check(&mut w, &format!("{s}{u}{h}{p}{pa}{q}{f}"));
                                cases += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cases, 5 * 3 * 8 * 6 * 6 * 4 * 4);
}

#[test]
fn typical_url_has_sixteen_sub_urls() {
    // The benchmark's "typical" case: the count the < 2 µs target refers to.
    let mut w = SubUrlWalker::new();
    let n = w
        .for_each("https://www.example.com/news/article?id=42", |_| {})
        .unwrap();
    assert_eq!(n, 16);
}

#[test]
fn walker_matches_reference_on_random_strings() {
    // Random strings over the characters URL parsing reacts to (xorshift, fixed seed), half of
    // them behind a scheme: every split point, error and edge the rules have.
    const ALPHABET: &[u8] = b"aAbwW.....:://///??##@@[]-_*0123456789%+ \t\x7f";
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut w = SubUrlWalker::new();
    let mut ok = 0;
    for i in 0..30_000 {
        let len = (next() % 24) as usize;
        let mut s: String = (0..len)
            .map(|_| char::from(ALPHABET[(next() % ALPHABET.len() as u64) as usize]))
            .collect();
        if i % 2 == 0 {
            s.insert_str(0, ["https://", "http://", "HTTP://www.", "ws://"][i % 4]);
        }
        if i % 7 == 0 {
            s.push('é');
        }
        check(&mut w, &s);
        ok += usize::from(parse_url(&s).is_ok());
    }
    eprintln!("{ok} of 30000 random strings parse");
    // Both outcomes are well represented.
    assert!((3_000..27_000).contains(&ok), "{ok} valid of 30000");
}
