//! Prefilter delivery as the app's `fetchPrefilter(existingPrefilterTag:)` uses it: description,
//! data under its tag, 304 for the tag the device holds, gzip, optional user-token auth, and no
//! mixed state across a reload (a description's data path never serves another version's bits).

use crate::common;

use std::io::Read as _;
use std::path::Path;

use common::*;

/// Writes a prefilter holding `keys` to `<data>/prefilter/` as `sift build` does.
fn write_prefilter(data: &Path, keys: &[&str]) -> sift_bloom::Metadata {
    let s = sift_bloom::sizing(keys.len() as u64, 0.001).unwrap();
    let mut f = sift_bloom::BloomFilter::new(sift_bloom::Params {
        bit_count: s.bit_count,
        hash_count: s.hash_count,
        murmur_seed: 0,
    })
    .unwrap();
    for k in keys {
        f.insert(k.as_bytes());
    }
    let meta = sift_bloom::Metadata::for_filter(&f, keys.len() as u64, 0.001);
    sift_bloom::write_dir(
        &data.join("prefilter"),
        &f,
        &meta,
        sift_bloom::OutputFormat::Both,
    )
    .unwrap();
    meta
}

fn client() -> reqwest::Client {
    // No automatic decompression: the test looks at the encoding itself.
    reqwest::Client::builder().build().unwrap()
}

async fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = client().get(url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

/// The status of `GET url` with `headers`.
async fn status(url: &str, headers: &[(&str, &str)]) -> u16 {
    get(url, headers).await.status().as_u16()
}

/// `GET path` over a raw HTTP/1.1 connection with `Accept-Encoding: encoding`; returns the
/// lower-cased head and the body (chunked transfer decoded).
async fn raw_get(addr: std::net::SocketAddr, path: &str, encoding: &str) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: {encoding}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).await.unwrap();
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&all[..split]).to_lowercase();
    let mut rest = &all[split + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return (head, rest.to_vec());
    }
    let mut body = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let n =
            usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        body.extend_from_slice(&rest[eol + 2..eol + 2 + n]);
        rest = &rest[eol + 2 + n + 2..];
    }
    (head, body)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Description {
    bit_count: u32,
    hash_count: u32,
    murmur_seed: u32,
    tag: String,
    item_count: u64,
    data_path: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn description_data_etag_and_gzip() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_dataset(&data, &[("example.com", "1"), ("ads.example", "1")], 1, 1);
    // Enough keys for a bit array worth compressing (tiny bodies are sent as they are).
    let filler: Vec<String> = (0..300).map(|i| format!("filler-{i}.example")).collect();
    let mut keys = vec!["example.com", "ads.example"];
    keys.extend(filler.iter().map(String::as_str));
    let meta = write_prefilter(&data, &keys);
    let server = start(config(&data, &tmp.path().join("state"), 2)).await;
    let base = server.base_url();

    let r = get(&format!("{base}/prefilter/{USECASE}"), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["etag"].to_str().unwrap(),
        format!("\"{}\"", meta.tag)
    );
    assert_eq!(r.headers()["content-type"], "application/json");
    let d: Description = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        (d.bit_count, d.hash_count, d.murmur_seed, d.item_count),
        (meta.bit_count, meta.hash_count, meta.murmur_seed, 302)
    );
    assert_eq!(d.tag, meta.tag);
    assert_eq!(d.data_path, format!("/prefilter/{USECASE}/{}", meta.tag));

    // The data: the exact bit array, its tag as ETag, and it answers like the device's filter.
    let r = get(&format!("{base}{}", d.data_path), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["etag"].to_str().unwrap(),
        format!("\"{}\"", d.tag)
    );
    let bits = r.bytes().await.unwrap();
    assert_eq!(sift_bloom::sha256_tag(&bits), d.tag);
    let f = sift_bloom::BloomFilter::from_data(
        sift_bloom::Params {
            bit_count: d.bit_count,
            hash_count: d.hash_count,
            murmur_seed: d.murmur_seed,
        },
        bits.to_vec(),
    )
    .unwrap();
    assert!(f.contains(b"ads.example"));
    assert!(f.contains(b"example.com"));

    // The tag the device already holds: 304 with no body, on both routes.
    let inm = format!("\"{}\"", d.tag);
    for path in [format!("/prefilter/{USECASE}"), d.data_path.clone()] {
        let r = get(&format!("{base}{path}"), &[("if-none-match", &inm)]).await;
        assert_eq!(r.status(), 304, "{path}");
        assert!(r.bytes().await.unwrap().is_empty());
    }
    let r = get(
        &format!("{base}{}", d.data_path),
        &[("if-none-match", "\"other\"")],
    )
    .await;
    assert_eq!(r.status(), 200);

    // gzip when accepted; the decompressed body is the bit array. (Raw HTTP/1.1: the test's
    // reqwest build drops a hand-set Accept-Encoding.)
    let (head, gz) = raw_get(server.addr, &d.data_path, "gzip").await;
    assert!(head.contains("content-encoding: gzip"), "{head}");
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, bits.to_vec());

    // Unknown use case and unknown tag: 404, never another prefilter.
    let zeros = "0".repeat(64);
    assert_eq!(status(&format!("{base}/prefilter/nope"), &[]).await, 404);
    let unknown_tag = format!("{base}/prefilter/{USECASE}/{zeros}");
    assert_eq!(status(&unknown_tag, &[]).await, 404);
    server.stop().await;
}

/// The bit array the server at `base` serves under the data path of `d`.
async fn data_bits(base: &str, d: &Description) -> Vec<u8> {
    let r = get(&format!("{base}{}", d.data_path), &[]).await;
    r.bytes().await.unwrap().to_vec()
}

/// The prefilter description the server at `base` gives for [`USECASE`].
async fn description(base: &str) -> Description {
    let body = get(&format!("{base}/prefilter/{USECASE}"), &[])
        .await
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_never_mixes_description_and_data() {
    let tmp = tempfile::tempdir().unwrap();
    let data = example_dataset(tmp.path());
    let old = write_prefilter(&data, &["example.com"]);
    let server = start(config(&data, &tmp.path().join("state"), 2)).await;
    let base = server.base_url();
    let d: Description = description(&base).await;
    assert_eq!(d.tag, old.tag);

    // A new list: shards and prefilter change between the device's two requests.
    let rows: Vec<(String, String)> = (0..40)
        .map(|i| (format!("new-{i}.example"), "1".to_string()))
        .collect();
    write_dataset(&data, &rows, 1, 2);
    let keys: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let new = write_prefilter(&data, &keys);
    assert_eq!(server.state.reload(), vec![USECASE.to_string()]);

    // The old description's data path still gives the old bits (never the new ones)...
    let bits = data_bits(&base, &d).await;
    assert_eq!(sift_bloom::sha256_tag(&bits), old.tag);
    // ...and the description now names the new prefilter, whose data matches it.
    let d2: Description = description(&base).await;
    assert_eq!(d2.tag, new.tag);
    let bits = data_bits(&base, &d2).await;
    assert_eq!(sift_bloom::sha256_tag(&bits), new.tag);
    // The device's old tag is no longer current: a full answer, not 304.
    let r = get(
        &format!("{base}/prefilter/{USECASE}"),
        &[("if-none-match", &format!("\"{}\"", old.tag))],
    )
    .await;
    assert_eq!(r.status(), 200);

    // A corrupt prefilter (bits that do not match the tag) is refused: the last good one stays.
    std::fs::write(data.join("prefilter").join("prefilter.bin"), [0u8; 3]).unwrap();
    assert!(server.state.reload().is_empty());
    let d3: Description = description(&base).await;
    assert_eq!(d3.tag, new.tag);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_token_required_when_configured() {
    let tmp = tempfile::tempdir().unwrap();
    let data = example_dataset(tmp.path());
    write_prefilter(&data, &["example.com"]);
    let mut cfg = config_with_tokens(&data, &tmp.path().join("state"));
    cfg.prefilter.require_user_token = true;
    let server = start(cfg).await;
    let url = format!("{}/prefilter/{USECASE}", server.base_url());
    assert_eq!(status(&url, &[]).await, 401);
    assert_eq!(
        status(&url, &[("authorization", "Bearer wrong")]).await,
        401
    );
    let r = get(&url, &[("authorization", "Bearer user-token-1")]).await;
    assert_eq!(r.status(), 200);
    let d: Description = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let r = get(
        &format!("{}{}", server.base_url(), d.data_path),
        &[("authorization", "Bearer user-token-1")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let data_url = format!("{}{}", server.base_url(), d.data_path);
    assert_eq!(status(&data_url, &[]).await, 401);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataset_without_prefilter_answers_404() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_with_dataset(tmp.path(), EXAMPLE_ROWS, 1, 1).await;
    let r = get(&format!("{}/prefilter/{USECASE}", server.base_url()), &[]).await;
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("no prefilter"));
    server.stop().await;
}
