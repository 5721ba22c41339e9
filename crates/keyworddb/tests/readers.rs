//! The text and binary readers: Apple's documented input, every text-format layout and
//! escape, and each kind of malformed input with its position.

#[path = "support/textproto.rs"]
mod textproto;

use proptest::prelude::*;
use sift_keyworddb::{BinaryReader, Position, TextReader, encode_binary};
use textproto::quote;

/// A keyword and its value.
type Pair = (Vec<u8>, Vec<u8>);

fn text(s: &str) -> Result<Vec<Pair>, String> {
    TextReader::new("in.txtpb", s.as_bytes())
        .map(|r| r.map(|r| (r.keyword, r.value)).map_err(|e| e.to_string()))
        .collect()
}

fn kv(k: &[u8], v: &[u8]) -> Pair {
    (k.to_vec(), v.to_vec())
}

#[test]
fn apple_neurlfilter_testing_instructions_input_reads_exactly() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vectors/keyworddb/neurlfilter-input.txtpb"
    );
    let rows: Vec<_> = sift_keyworddb::open(std::path::Path::new(path))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 10);
    assert_eq!(rows[0].keyword, b"example.com");
    assert_eq!(rows[0].position, Position::Text { line: 1, col: 8 });
    assert_eq!(rows[9].keyword, b"example10.com/resource?query=bugs");
    assert!(rows.iter().all(|r| r.value == b"1"));
}

#[test]
fn every_layout_gives_the_same_rows() {
    let want = vec![kv(b"a", b"1"), kv(b"b", b"")];
    for layout in [
        r#"rows { keyword: "a" value: "1" } rows { keyword: "b" }"#,
        "rows {\n  keyword: \"a\"\n  value: \"1\"\n}\nrows {\n keyword: \"b\"\n}\n",
        r#"rows: [{ keyword: "a", value: "1" }, { keyword: "b" }]"#,
        r#"rows [{ keyword: "a"; value: "1" }, < keyword: "b" >]"#,
        r#"rows: { keyword: 'a' value: '1' }, rows < keyword: "b" >;"#,
        "# comment\nrows { # inside\n keyword: \"a\" # after\n value: \"1\" }\nrows{keyword:\"b\"}",
        r#"rows: [{ keyword: "a" value: "1" }] rows: [] rows: [{ keyword: "b" }]"#,
        "\u{feff}rows { keyword: \"a\" value: \"1\" } rows { keyword: \"b\" }",
        r#"rows { value: "1" keyword: "a" } rows { keyword: "" "b" "" }"#,
    ] {
        assert_eq!(text(layout).unwrap(), want, "{layout}");
    }
    assert_eq!(text("").unwrap(), vec![]);
    assert_eq!(text("# only a comment\n").unwrap(), vec![]);
}

#[test]
fn every_escape_resolves_to_its_bytes() {
    let rows = text(
        r#"rows { keyword: "\n\t\r\a\b\f\v\\\'\"\?" value: "\0\7\77\101\377\1234" }
           rows { keyword: "\x0\xff\xAbc\X41" value: "\u00e9\U0001F600" }
           rows { keyword: 'it''s' "\"" value: "caf\303\251" }"#,
    )
    .unwrap();
    assert_eq!(rows[0].0, b"\n\t\r\x07\x08\x0c\x0b\\'\"?");
    assert_eq!(rows[0].1, b"\x00\x07\x3f\x41\xff\x534");
    assert_eq!(rows[1].0, b"\x00\xff\xabcA");
    assert_eq!(rows[1].1, "é😀".as_bytes());
    assert_eq!(rows[2].0, b"its\"");
    assert_eq!(rows[2].1, "café".as_bytes());
}

#[test]
fn malformed_text_is_refused_with_line_column_and_reason() {
    for (input, at, reason) in [
        (
            "rows { keyword: \"a\"",
            "in.txtpb:1:6:",
            "unbalanced braces",
        ),
        (
            "rows { keyword: \"a\" }\n}",
            "in.txtpb:2:1:",
            "closes nothing",
        ),
        (
            "rows: [{ keyword: \"a\" }",
            "in.txtpb:1:24:",
            "ends inside `rows: [`",
        ),
        (
            "rows { keyword: \"a\" ]",
            "in.txtpb:1:21:",
            "expected `keyword`",
        ),
        (
            "rows { keyword: \"\\q\" }",
            "in.txtpb:1:18:",
            "bad escape \\q",
        ),
        ("rows { keyword: \"\\x\" }", "in.txtpb:1:18:", "\\x needs"),
        (
            "rows { keyword: \"\\u12\" }",
            "in.txtpb:1:18:",
            "\\u needs 4",
        ),
        (
            "rows { keyword: \"\\UFFFFFFFF\" }",
            "in.txtpb:1:18:",
            "not a Unicode",
        ),
        (
            "rows { keyword: \"\\400\" }",
            "in.txtpb:1:18:",
            "above \\377",
        ),
        (
            "rows { keyword: \"a\nb\" }",
            "in.txtpb:1:17:",
            "line break inside",
        ),
        ("rows { keyword: \"abc", "in.txtpb:1:17:", "ends inside it"),
        (
            "\n  rows { key: \"a\" }",
            "in.txtpb:2:10:",
            "unknown field `key`",
        ),
        (
            "rowz { keyword: \"a\" }",
            "in.txtpb:1:1:",
            "unknown field `rowz`",
        ),
        (
            "rows { keyword: \"a\" keyword: \"b\" }",
            "in.txtpb:1:21:",
            "given twice",
        ),
        ("rows { keyword \"a\" }", "in.txtpb:1:16:", "expected ':'"),
        (
            "rows { keyword: 1 }",
            "in.txtpb:1:17:",
            "expected a quoted string",
        ),
        (
            "rows { value: \"1\" }",
            "in.txtpb:1:6:",
            "without a `keyword`",
        ),
        (
            "rows { keyword: \"a\" } @",
            "in.txtpb:1:23:",
            "unexpected character '@'",
        ),
        (
            "rows: [{ keyword: \"a\" } { keyword: \"b\" }]",
            "in.txtpb:1:25:",
            "expected ',' or ']'",
        ),
        ("rows \"a\"", "in.txtpb:1:6:", "expected '{'"),
    ] {
        let err = text(input).unwrap_err();
        assert!(
            err.starts_with(at) && err.contains(reason),
            "{input:?}: {err}"
        );
    }
}

#[test]
fn rows_before_an_error_come_out_and_nothing_after_it() {
    let mut r = TextReader::new(
        "f",
        &b"rows { keyword: \"a\" } rows { oops } rows { keyword: \"c\" }"[..],
    );
    assert_eq!(r.next().unwrap().unwrap().keyword, b"a");
    assert!(r.next().unwrap().is_err());
    assert!(r.next().is_none());
}

#[test]
fn binary_round_trips_and_skips_unknown_fields() {
    let rows = vec![kv(b"\x00\xff", b""), kv(b"+14155550123", &[7u8; 300])];
    let mut bytes = encode_binary(&rows);
    // An unknown top-level varint field (2) and an unknown field (3) inside a row.
    bytes.extend_from_slice(&[0x10, 0x96, 0x01]);
    bytes.extend_from_slice(&[0x0a, 0x07, 0x0a, 0x01, b'k', 0x1a, 0x02, b'x', b'y']);
    let got: Vec<_> = BinaryReader::new("f", &bytes[..])
        .map(|r| r.map(|r| (r.keyword, r.value)))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, vec![rows[0].clone(), rows[1].clone(), kv(b"k", b"")]);
}

#[test]
fn truncated_binary_is_refused_with_the_byte_offset() {
    let bytes = encode_binary(&[kv(b"abc", b"1"), kv(b"second", b"value")]);
    let second = 2 + 8; // first row: tag, length 8, 8 bytes of row.
    for cut in [second + 1, second + 5, bytes.len() - 1] {
        let results: Vec<_> = BinaryReader::new("db.binpb", &bytes[..cut]).collect();
        assert_eq!(results.len(), 2, "cut at {cut}");
        assert_eq!(results[0].as_ref().unwrap().keyword, b"abc");
        let e = results[1].as_ref().unwrap_err();
        assert_eq!(
            e.position,
            Position::Binary {
                offset: second as u64
            },
            "cut at {cut}"
        );
        assert!(
            e.to_string().starts_with("db.binpb:byte 10: truncated"),
            "{e}"
        );
    }
    // A row claiming a field longer than itself.
    let bad = [0x0a, 0x03, 0x0a, 0x09, b'a'];
    let e = BinaryReader::new("f", &bad[..])
        .next()
        .unwrap()
        .unwrap_err();
    assert_eq!(e.position, Position::Binary { offset: 2 });
    // A varint cut in the middle.
    let e = BinaryReader::new("f", &[0x0a, 0x80][..])
        .next()
        .unwrap()
        .unwrap_err();
    assert!(e.reason.contains("truncated row length"), "{e}");
}

#[test]
fn open_refuses_unknown_extensions() {
    let e = sift_keyworddb::open(std::path::Path::new("list.txt"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("expected a .txtpb or .binpb"), "{e}");
}

proptest! {
    #[test]
    fn any_bytes_survive_text_and_binary(rows in proptest::collection::vec(
        (proptest::collection::vec(any::<u8>(), 0..20), proptest::collection::vec(any::<u8>(), 0..40)),
        0..8,
    ), one_line in any::<bool>()) {
        let sep = if one_line { " " } else { "\n" };
        let t: String = rows.iter().map(|(k, v)| {
            format!("rows {{{sep}keyword: {}{sep}value: {}{sep}}}{sep}", quote(k), quote(v))
        }).collect();
        prop_assert_eq!(text(&t).unwrap(), rows.clone());
        let b = encode_binary(&rows);
        let got: Vec<_> = BinaryReader::new("f", &b[..])
            .map(|r| r.map(|r| (r.keyword, r.value)).unwrap())
            .collect();
        prop_assert_eq!(got, rows);
    }
}
