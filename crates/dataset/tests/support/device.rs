//! A device-like PIR client against an in-process keyword-PIR server, for tests that check what
//! a loaded dataset answers. Shared by path between the `dataset` crate's unit and integration
//! tests and the `sift` binary's integration tests.

#![allow(dead_code)]

use std::path::Path;

use sift_pir::client::KeywordPirClient;
use sift_pir::server::KeywordPirServer;
use sift_proto::{api, he};

/// A device's PIR client built from `server`'s published shard parameters, with its own
/// evaluation key.
pub struct Device<'a> {
    /// The server the device asks.
    pub server: &'a KeywordPirServer,
    /// The device's PIR client.
    pub client: KeywordPirClient,
    key: he::SerializedEvaluationKey,
}

impl<'a> Device<'a> {
    /// A fresh client (and key) for `server`.
    pub fn new(server: &'a KeywordPirServer) -> Self {
        let protos: Vec<_> = server.shards().iter().map(|s| s.proto.clone()).collect();
        let mut rng = rand::thread_rng();
        let client = KeywordPirClient::new(&protos, &mut rng).unwrap();
        let key = client.evaluation_key(&mut rng).unwrap();
        Self {
            server,
            client,
            key,
        }
    }

    /// The query for `word` and the server's answer to it (an error when the server refuses).
    pub fn ask(
        &self,
        word: impl AsRef<[u8]>,
    ) -> (api::PirRequest, Result<api::PirResponse, String>) {
        let q = self
            .client
            .query(word.as_ref(), &mut rand::thread_rng())
            .unwrap();
        let r = self.server.answer(&q, &self.key).map_err(|e| e.to_string());
        (q, r)
    }

    /// The value stored for `word`, or `None`; panics if the server refuses.
    pub fn lookup(&self, word: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        let word = word.as_ref();
        let r = self
            .ask(word)
            .1
            .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(word)));
        self.client.decode(word, &r).unwrap()
    }
}

/// The value `server` answers for each of `words` (`None`: absent), through one fresh device.
pub fn lookup_all<W: AsRef<[u8]>>(server: &KeywordPirServer, words: &[W]) -> Vec<Option<Vec<u8>>> {
    let device = Device::new(server);
    words.iter().map(|w| device.lookup(w)).collect()
}

/// Flips the last bit of the file at `path` and returns its new contents.
pub fn flip_last_bit(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(path, &bytes).unwrap();
    bytes
}
