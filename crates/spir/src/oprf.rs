//! RFC 9497 VOPRF(P-384, SHA-384), as swift-crypto's `P384._VOPRF` (context string
//! `"OPRFV1-\x01-P384-SHA384"`): the server's key, blind evaluation with a DLEQ proof, the
//! unblinded server-side evaluation used to process the database, and the client's blind and
//! finalize (which verifies the proof).

use p384::NistP384;
use rand_core::{CryptoRng, RngCore};
use voprf::{BlindedElement, EvaluationElement, Group, Proof, VoprfClient, VoprfServer};

use crate::spir::ParsedOprfOutput;
use crate::{ConfigType, ELEMENT_LEN, OUTPUT_LEN, OprfError, PRIVATE_KEY_LEN, PROOF_LEN};

type Suite = NistP384;

fn map_err(e: voprf::Error, what: &'static str) -> OprfError {
    match e {
        voprf::Error::Deserialization => OprfError::InvalidElement(what),
        voprf::Error::ProofVerification => OprfError::ProofVerification,
        _ => OprfError::InvalidInput,
    }
}

/// Accepts only compressed SEC1 encodings (tag 2 or 3, 49 bytes), as Apple's
/// `compressedRepresentation` and RFC 9497's `DeserializeElement` do; the `sec1` crate would also
/// take the 49-byte "compact" form (tag 5).
fn check_compressed(bytes: &[u8], what: &'static str) -> Result<(), OprfError> {
    if bytes.len() == ELEMENT_LEN && matches!(bytes[0], 2 | 3) {
        Ok(())
    } else {
        Err(OprfError::InvalidElement(what))
    }
}

fn element(bytes: &[u8]) -> [u8; ELEMENT_LEN] {
    let mut out = [0u8; ELEMENT_LEN];
    out.copy_from_slice(bytes);
    out
}

/// The server's OPRF key (Apple's `OprfPrivateKey`): a P-384 scalar, kept as 48 big-endian bytes
/// because that is what Apple's key files hold (as lowercase hex).
#[derive(Clone)]
pub struct OprfPrivateKey {
    bytes: [u8; PRIVATE_KEY_LEN],
    server: VoprfServer<Suite>,
}

impl std::fmt::Debug for OprfPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OprfPrivateKey")
            .field("public_key", &hex::encode(self.public_key()))
            .finish_non_exhaustive()
    }
}

impl OprfPrivateKey {
    /// A fresh random key (what `PIRProcessDatabase` does for `outputDatabaseEncryptionKeyFilePath`).
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        loop {
            let mut bytes = [0u8; PRIVATE_KEY_LEN];
            rng.fill_bytes(&mut bytes);
            // Rejection sampling: about 2^-190 of 48-byte strings are ≥ n or zero.
            if let Ok(k) = Self::from_bytes(&bytes) {
                return k;
            }
        }
    }

    /// The key from its 48 big-endian bytes; rejects zero and values ≥ the group order.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OprfError> {
        let bytes: [u8; PRIVATE_KEY_LEN] = bytes.try_into().map_err(|_| {
            OprfError::InvalidKey(format!("{} bytes, expected {PRIVATE_KEY_LEN}", bytes.len()))
        })?;
        let server = VoprfServer::<Suite>::new_with_key(&bytes)
            .map_err(|_| OprfError::InvalidKey("not a scalar in [1, n)".into()))?;
        Ok(Self { bytes, server })
    }

    /// The key from hex (surrounding whitespace ignored), the format of Apple's key files.
    pub fn from_hex(text: &str) -> Result<Self, OprfError> {
        let bytes =
            hex::decode(text.trim()).map_err(|e| OprfError::InvalidKey(format!("hex: {e}")))?;
        Self::from_bytes(&bytes)
    }

    /// The 48 big-endian key bytes (secret).
    pub fn to_bytes(&self) -> [u8; PRIVATE_KEY_LEN] {
        self.bytes
    }

    /// The key as lowercase hex without a newline, as Apple writes key files (secret).
    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }

    /// The public key as a compressed SEC1 point: `SymmetricPirClientConfig.server_public_key`.
    pub fn public_key(&self) -> [u8; ELEMENT_LEN] {
        element(&Suite::serialize_elem(self.server.get_public_key()))
    }

    /// The server's answer to an `OPRFRequest.query_element`: the evaluated element and a proof
    /// that it was computed with this key, with fresh proof randomness from the OS.
    pub fn blind_evaluate(&self, query_element: &[u8]) -> Result<BlindEvaluation, OprfError> {
        self.blind_evaluate_with_rng(query_element, &mut rand::rngs::OsRng)
    }

    /// [`Self::blind_evaluate`] with the proof's random scalar drawn from `rng`.
    pub fn blind_evaluate_with_rng<R: RngCore + CryptoRng>(
        &self,
        query_element: &[u8],
        rng: &mut R,
    ) -> Result<BlindEvaluation, OprfError> {
        check_compressed(query_element, "blinded element")?;
        let blinded = BlindedElement::<Suite>::deserialize(query_element)
            .map_err(|e| map_err(e, "blinded element"))?;
        let result = self.server.blind_evaluate(rng, &blinded);
        let mut proof = [0u8; PROOF_LEN];
        proof.copy_from_slice(&result.proof.serialize());
        Ok(BlindEvaluation {
            evaluated_element: element(&result.message.serialize()),
            proof,
        })
    }

    /// The OPRF output for `input` computed directly with the key (RFC 9497 `Evaluate`, Apple's
    /// `OprfPrivateKey.evaluate(_:)`): what a client obtains obliviously for the same input.
    pub fn evaluate(&self, input: &[u8]) -> Result<[u8; OUTPUT_LEN], OprfError> {
        let out = self
            .server
            .evaluate(input)
            .map_err(|e| map_err(e, "input"))?;
        let mut o = [0u8; OUTPUT_LEN];
        o.copy_from_slice(&out);
        Ok(o)
    }
}

/// The server's OPRF answer (Apple's `OprfResponse`, `OPRFResponse` on the wire).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlindEvaluation {
    /// Compressed evaluated element `k·B` (`OPRFResponse.evaluated_element`).
    pub evaluated_element: [u8; ELEMENT_LEN],
    /// DLEQ proof `c ‖ s` (`OPRFResponse.proof`).
    pub proof: [u8; PROOF_LEN],
}

impl BlindEvaluation {
    /// From the two `OPRFResponse` fields; checks only their lengths (the client checks the
    /// point and the proof when finalizing).
    pub fn from_parts(evaluated_element: &[u8], proof: &[u8]) -> Result<Self, OprfError> {
        Ok(Self {
            evaluated_element: evaluated_element
                .try_into()
                .map_err(|_| OprfError::InvalidElement("evaluated element"))?,
            proof: proof.try_into().map_err(|_| OprfError::InvalidProof)?,
        })
    }

    /// Apple's `rawRepresentation`: evaluated element ‖ proof (145 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        [&self.evaluated_element[..], &self.proof[..]].concat()
    }

    /// Parses Apple's `rawRepresentation` (145 bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OprfError> {
        if bytes.len() != ELEMENT_LEN + PROOF_LEN {
            return Err(OprfError::InvalidProof);
        }
        Self::from_parts(&bytes[..ELEMENT_LEN], &bytes[ELEMENT_LEN..])
    }
}

/// The device side of the OPRF (Apple's `OprfClient`), bound to the server's public key from
/// `SymmetricPirClientConfig`.
#[derive(Clone, Debug)]
pub struct OprfClient {
    public_key: <Suite as Group>::Elem,
    config_type: ConfigType,
}

impl OprfClient {
    /// A client for the server's compressed public key (49 bytes).
    pub fn new(server_public_key: &[u8], config_type: ConfigType) -> Result<Self, OprfError> {
        check_compressed(server_public_key, "server public key")?;
        let public_key = Suite::deserialize_elem(server_public_key)
            .map_err(|e| map_err(e, "server public key"))?;
        Ok(Self {
            public_key,
            config_type,
        })
    }

    /// Blinds `keyword` with a fresh random scalar: the state to keep and the element to send.
    pub fn blind<R: RngCore + CryptoRng>(
        &self,
        keyword: &[u8],
        rng: &mut R,
    ) -> Result<OprfQuery, OprfError> {
        let r = VoprfClient::<Suite>::blind(keyword, rng).map_err(|e| map_err(e, "input"))?;
        Ok(OprfQuery {
            keyword: keyword.to_vec(),
            element: element(&r.message.serialize()),
            state: r.state,
        })
    }

    /// Verifies the server's proof, unblinds and hashes: the OPRF output split as Apple's
    /// `OprfClient.parse` does.
    pub fn finalize(
        &self,
        query: &OprfQuery,
        response: &BlindEvaluation,
    ) -> Result<ParsedOprfOutput, OprfError> {
        check_compressed(&response.evaluated_element, "evaluated element")?;
        let evaluated = EvaluationElement::<Suite>::deserialize(&response.evaluated_element)
            .map_err(|e| map_err(e, "evaluated element"))?;
        let proof =
            Proof::<Suite>::deserialize(&response.proof).map_err(|_| OprfError::InvalidProof)?;
        let out = query
            .state
            .finalize(&query.keyword, &evaluated, &proof, self.public_key)
            .map_err(|e| map_err(e, "evaluated element"))?;
        let mut o = [0u8; OUTPUT_LEN];
        o.copy_from_slice(&out);
        Ok(ParsedOprfOutput::new(o, self.config_type))
    }
}

/// One blinded keyword awaiting the server's answer (Apple's `OprfQueryContext`).
pub struct OprfQuery {
    keyword: Vec<u8>,
    element: [u8; ELEMENT_LEN],
    state: VoprfClient<Suite>,
}

impl OprfQuery {
    /// The compressed blinded element: `OPRFRequest.query_element`.
    pub fn element(&self) -> &[u8; ELEMENT_LEN] {
        &self.element
    }
}

impl std::fmt::Debug for OprfQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OprfQuery")
            .field("element", &hex::encode(self.element))
            .finish_non_exhaustive()
    }
}
