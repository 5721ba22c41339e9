//! Arbitrary bytes as binary HTTP: decoding never panics, and whatever decodes re-encodes to
//! something that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sift_ohttp::bhttp::{BhttpRequest, BhttpResponse, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(req) = BhttpRequest::decode(data, &limits) {
        let again = req.encode_known_length().expect("encodes");
        assert_eq!(BhttpRequest::decode(&again, &limits).expect("decodes"), req);
        let _ = req.into_http();
    }
    if let Ok(resp) = BhttpResponse::decode(data, &limits) {
        let again = resp.encode_indeterminate_length().expect("encodes");
        assert_eq!(
            BhttpResponse::decode(&again, &limits).expect("decodes"),
            resp
        );
        let _ = resp.into_http();
    }
});
