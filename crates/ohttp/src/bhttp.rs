//! Binary HTTP messages (RFC 9292): the plaintext inside OHTTP encapsulation.
//!
//! Decoding accepts both known-length (framing 0/1) and indeterminate-length (framing 2/3)
//! messages, truncation of trailing empty sections (§3.8) and zero padding; every length read
//! from the wire is checked against the bytes that remain before anything is sliced or
//! allocated, so hostile input costs at most a copy of itself. Encoding always writes the
//! complete known-length form (no truncation), which every conforming decoder accepts.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

/// Framing indicator of a known-length request (RFC 9292 §3.3).
const KNOWN_LENGTH_REQUEST: u64 = 0;
/// Framing indicator of a known-length response.
const KNOWN_LENGTH_RESPONSE: u64 = 1;
/// Framing indicator of an indeterminate-length request.
const INDETERMINATE_REQUEST: u64 = 2;
/// Framing indicator of an indeterminate-length response.
const INDETERMINATE_RESPONSE: u64 = 3;
/// Largest value a QUIC variable-length integer can carry (2^62 - 1).
const VARINT_MAX: u64 = (1 << 62) - 1;

/// Why a binary HTTP message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BhttpError {
    /// The message ended inside a length, a field line, control data or a content chunk.
    #[error("binary HTTP message truncated inside a {0}")]
    Truncated(&'static str),
    /// The framing indicator is not one this message kind allows.
    #[error("binary HTTP framing indicator {0} not valid here")]
    BadFraming(u64),
    /// Bytes after the message that are not zero padding (§3.8).
    #[error("non-zero bytes after the binary HTTP message")]
    NonZeroPadding,
    /// A status code outside 100..=599, or an informational status where a final one belongs.
    #[error("invalid status code {0}")]
    BadStatus(u64),
    /// Request control data that does not form an HTTP method or URI.
    #[error("invalid request control data: {0}")]
    BadControlData(&'static str),
    /// A field name or value that HTTP does not allow.
    #[error("invalid field line")]
    BadField,
    /// More field lines, field bytes or content than the configured [`Limits`].
    #[error("binary HTTP {what} exceeds the limit of {limit}")]
    TooLarge {
        /// Which limit was hit.
        what: &'static str,
        /// The configured limit.
        limit: usize,
    },
    /// A number too large for the wire format (encoding only).
    #[error("value too large for a variable-length integer")]
    VarintOverflow,
}

/// Resource limits applied while decoding; they keep hostile messages from building huge
/// header maps (the whole message is already bounded by the outer body limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most field lines in one field section (header or trailer).
    pub max_fields: usize,
    /// Most bytes of names plus values in one field section.
    pub max_field_bytes: usize,
    /// Most content bytes.
    pub max_content: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_fields: 256,
            max_field_bytes: 64 * 1024,
            max_content: 64 * 1024 * 1024,
        }
    }
}

/// One field line (name and value, as raw bytes; names are lowercase on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Field name.
    pub name: Vec<u8>,
    /// Field value.
    pub value: Vec<u8>,
}

impl Field {
    /// A field line from anything byte-like.
    pub fn new(name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        Self {
            name: name.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
        }
    }
}

/// A binary HTTP request, field by field as on the wire (RFC 9292 §3.4, §3.5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BhttpRequest {
    /// Method token, e.g. `POST`.
    pub method: Vec<u8>,
    /// Scheme, e.g. `https`; may be empty.
    pub scheme: Vec<u8>,
    /// Authority (host and optional port); may be empty.
    pub authority: Vec<u8>,
    /// Path and query, e.g. `/queries`.
    pub path: Vec<u8>,
    /// Header field lines in order.
    pub headers: Vec<Field>,
    /// Content.
    pub content: Vec<u8>,
    /// Trailer field lines in order.
    pub trailers: Vec<Field>,
}

/// An informational (1xx) response carried before the final one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Informational {
    /// Status code, 100..=199.
    pub status: u16,
    /// Its header field lines.
    pub headers: Vec<Field>,
}

/// A binary HTTP response, field by field as on the wire (RFC 9292 §3.5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BhttpResponse {
    /// Informational responses preceding the final one.
    pub informational: Vec<Informational>,
    /// Final status code, 200..=599.
    pub status: u16,
    /// Header field lines in order.
    pub headers: Vec<Field>,
    /// Content.
    pub content: Vec<u8>,
    /// Trailer field lines in order.
    pub trailers: Vec<Field>,
}

/// Trailer fields of a decoded request, kept as an `http` extension when present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailers(pub HeaderMap);

/// A cursor over the input that never reads past its end.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn remaining(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, BhttpError> {
        let first = *self.buf.get(self.pos).ok_or(BhttpError::Truncated(what))?;
        let len = 1usize << (first >> 6);
        let bytes = self
            .buf
            .get(self.pos..self.pos + len)
            .ok_or(BhttpError::Truncated(what))?;
        let mut v = u64::from(first & 0x3f);
        for b in &bytes[1..] {
            v = (v << 8) | u64::from(*b);
        }
        self.pos += len;
        Ok(v)
    }

    fn bytes(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], BhttpError> {
        let rest = self.remaining();
        let n = usize::try_from(n).map_err(|_| BhttpError::Truncated(what))?;
        let out = rest.get(..n).ok_or(BhttpError::Truncated(what))?;
        self.pos += n;
        Ok(out)
    }

    fn length_prefixed(&mut self, what: &'static str) -> Result<&'a [u8], BhttpError> {
        let n = self.varint(what)?;
        self.bytes(n, what)
    }
}

fn push_field(
    fields: &mut Vec<Field>,
    total: &mut usize,
    name: &[u8],
    value: &[u8],
    limits: &Limits,
) -> Result<(), BhttpError> {
    if fields.len() >= limits.max_fields {
        return Err(BhttpError::TooLarge {
            what: "field count",
            limit: limits.max_fields,
        });
    }
    *total = total.saturating_add(name.len() + value.len());
    if *total > limits.max_field_bytes {
        return Err(BhttpError::TooLarge {
            what: "field section",
            limit: limits.max_field_bytes,
        });
    }
    if name.is_empty() {
        return Err(BhttpError::BadField);
    }
    fields.push(Field::new(name, value));
    Ok(())
}

/// Reads a field section; an absent section (end of input) is empty (§3.8 truncation).
fn read_fields(
    r: &mut Reader<'_>,
    indeterminate: bool,
    limits: &Limits,
) -> Result<Vec<Field>, BhttpError> {
    let mut fields = Vec::new();
    if r.at_end() {
        return Ok(fields);
    }
    let mut total = 0usize;
    if indeterminate {
        loop {
            let name_len = r.varint("field name length")?;
            if name_len == 0 {
                break;
            }
            let name = r.bytes(name_len, "field name")?;
            let value = r.length_prefixed("field value")?;
            push_field(&mut fields, &mut total, name, value, limits)?;
        }
    } else {
        let section = r.length_prefixed("field section")?;
        if section.len() > limits.max_field_bytes.saturating_mul(2) {
            return Err(BhttpError::TooLarge {
                what: "field section",
                limit: limits.max_field_bytes,
            });
        }
        let mut inner = Reader::new(section);
        while !inner.at_end() {
            let name = inner.length_prefixed("field name")?;
            let value = inner.length_prefixed("field value")?;
            push_field(&mut fields, &mut total, name, value, limits)?;
        }
    }
    Ok(fields)
}

/// Reads content; absent content (end of input) is empty.
fn read_content(
    r: &mut Reader<'_>,
    indeterminate: bool,
    limits: &Limits,
) -> Result<Vec<u8>, BhttpError> {
    if r.at_end() {
        return Ok(Vec::new());
    }
    let too_large = BhttpError::TooLarge {
        what: "content",
        limit: limits.max_content,
    };
    if indeterminate {
        let mut content = Vec::new();
        loop {
            let n = r.varint("content chunk length")?;
            if n == 0 {
                break;
            }
            let chunk = r.bytes(n, "content chunk")?;
            if content.len() + chunk.len() > limits.max_content {
                return Err(too_large);
            }
            content.extend_from_slice(chunk);
        }
        Ok(content)
    } else {
        let n = r.varint("content length")?;
        if n > limits.max_content as u64 {
            return Err(too_large);
        }
        Ok(r.bytes(n, "content")?.to_vec())
    }
}

/// The header fields, content and trailer fields of a message.
type Sections = (Vec<Field>, Vec<u8>, Vec<Field>);

/// The sections that end every message, followed by nothing but padding.
fn read_sections(
    r: &mut Reader<'_>,
    indeterminate: bool,
    limits: &Limits,
) -> Result<Sections, BhttpError> {
    let headers = read_fields(r, indeterminate, limits)?;
    let content = read_content(r, indeterminate, limits)?;
    let trailers = read_fields(r, indeterminate, limits)?;
    check_padding(r)?;
    Ok((headers, content, trailers))
}

fn check_padding(r: &Reader<'_>) -> Result<(), BhttpError> {
    if r.remaining().iter().all(|b| *b == 0) {
        Ok(())
    } else {
        Err(BhttpError::NonZeroPadding)
    }
}

impl BhttpRequest {
    /// Decodes a request in either framing, applying `limits`.
    pub fn decode(buf: &[u8], limits: &Limits) -> Result<Self, BhttpError> {
        let mut r = Reader::new(buf);
        let indeterminate = Framing::read(&mut r, KNOWN_LENGTH_REQUEST, INDETERMINATE_REQUEST)?
            == Framing::Indeterminate;
        let method = r.length_prefixed("method")?.to_vec();
        let scheme = r.length_prefixed("scheme")?.to_vec();
        let authority = r.length_prefixed("authority")?.to_vec();
        let path = r.length_prefixed("path")?.to_vec();
        let (headers, content, trailers) = read_sections(&mut r, indeterminate, limits)?;
        Ok(Self {
            method,
            scheme,
            authority,
            path,
            headers,
            content,
            trailers,
        })
    }

    framed_encoders!();

    fn encode(&self, framing: Framing) -> Result<Vec<u8>, BhttpError> {
        let mut out = Vec::with_capacity(self.encoded_size_hint());
        put_varint(
            &mut out,
            framing.indicator(KNOWN_LENGTH_REQUEST, INDETERMINATE_REQUEST),
        )?;
        for part in [&self.method, &self.scheme, &self.authority, &self.path] {
            put_bytes(&mut out, part)?;
        }
        framing.put_fields(&mut out, &self.headers)?;
        framing.put_content(&mut out, &self.content)?;
        framing.put_fields(&mut out, &self.trailers)?;
        Ok(out)
    }

    fn encoded_size_hint(&self) -> usize {
        32 + self.method.len()
            + self.scheme.len()
            + self.authority.len()
            + self.path.len()
            + fields_len(&self.headers)
            + self.content.len()
            + fields_len(&self.trailers)
    }

    /// Converts to an `http` request. The URI is `scheme://authority/path` when both scheme and
    /// authority are present, else just the path. Trailers, if any, go in a [`Trailers`]
    /// extension.
    pub fn into_http(self) -> Result<http::Request<Bytes>, BhttpError> {
        let method =
            Method::from_bytes(&self.method).map_err(|_| BhttpError::BadControlData("method"))?;
        let path: &[u8] = if self.path.is_empty() {
            b"/"
        } else {
            &self.path
        };
        let mut uri = Uri::builder();
        if !self.scheme.is_empty() && !self.authority.is_empty() {
            uri = uri.scheme(&self.scheme[..]).authority(&self.authority[..]);
        }
        let uri = uri
            .path_and_query(path)
            .build()
            .map_err(|_| BhttpError::BadControlData("uri"))?;
        let mut req = http::Request::new(Bytes::from(self.content));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.headers_mut() = to_header_map(&self.headers)?;
        if !self.trailers.is_empty() {
            req.extensions_mut()
                .insert(Trailers(to_header_map(&self.trailers)?));
        }
        Ok(req)
    }

    /// Builds from an `http` request: scheme and authority from the URI (if absolute).
    pub fn from_http(req: &http::Request<Bytes>) -> Self {
        let uri = req.uri();
        Self {
            method: req.method().as_str().as_bytes().to_vec(),
            scheme: uri
                .scheme_str()
                .map(|s| s.as_bytes().to_vec())
                .unwrap_or_default(),
            authority: uri
                .authority()
                .map(|a| a.as_str().as_bytes().to_vec())
                .unwrap_or_default(),
            path: uri
                .path_and_query()
                .map_or_else(|| b"/".to_vec(), |p| p.as_str().as_bytes().to_vec()),
            headers: from_header_map(req.headers()),
            content: req.body().to_vec(),
            trailers: req
                .extensions()
                .get::<Trailers>()
                .map(|t| from_header_map(&t.0))
                .unwrap_or_default(),
        }
    }
}

impl BhttpResponse {
    /// Decodes a response in either framing, informational responses included.
    pub fn decode(buf: &[u8], limits: &Limits) -> Result<Self, BhttpError> {
        let mut r = Reader::new(buf);
        let indeterminate = Framing::read(&mut r, KNOWN_LENGTH_RESPONSE, INDETERMINATE_RESPONSE)?
            == Framing::Indeterminate;
        let mut informational = Vec::new();
        let status = loop {
            let status = r.varint("status code")?;
            match status {
                100..=199 => {
                    if informational.len() >= limits.max_fields {
                        return Err(BhttpError::TooLarge {
                            what: "informational responses",
                            limit: limits.max_fields,
                        });
                    }
                    let headers = read_fields(&mut r, indeterminate, limits)?;
                    informational.push(Informational {
                        status: status as u16,
                        headers,
                    });
                }
                200..=599 => break status as u16,
                other => return Err(BhttpError::BadStatus(other)),
            }
        };
        let (headers, content, trailers) = read_sections(&mut r, indeterminate, limits)?;
        Ok(Self {
            informational,
            status,
            headers,
            content,
            trailers,
        })
    }

    framed_encoders!();

    fn encode(&self, framing: Framing) -> Result<Vec<u8>, BhttpError> {
        let mut out = Vec::with_capacity(
            32 + fields_len(&self.headers) + self.content.len() + fields_len(&self.trailers),
        );
        put_varint(
            &mut out,
            framing.indicator(KNOWN_LENGTH_RESPONSE, INDETERMINATE_RESPONSE),
        )?;
        for info in &self.informational {
            check_status(info.status, 100..=199)?;
            put_varint(&mut out, u64::from(info.status))?;
            framing.put_fields(&mut out, &info.headers)?;
        }
        check_status(self.status, 200..=599)?;
        put_varint(&mut out, u64::from(self.status))?;
        framing.put_fields(&mut out, &self.headers)?;
        framing.put_content(&mut out, &self.content)?;
        framing.put_fields(&mut out, &self.trailers)?;
        Ok(out)
    }

    /// Builds from an `http` response (informational responses cannot be expressed there).
    pub fn from_http(resp: &http::Response<Bytes>) -> Self {
        Self {
            informational: Vec::new(),
            status: resp.status().as_u16(),
            headers: from_header_map(resp.headers()),
            content: resp.body().to_vec(),
            trailers: Vec::new(),
        }
    }

    /// Converts to an `http` response, dropping informational responses and trailers.
    pub fn into_http(self) -> Result<http::Response<Bytes>, BhttpError> {
        let status = StatusCode::from_u16(self.status)
            .map_err(|_| BhttpError::BadStatus(u64::from(self.status)))?;
        let mut resp = http::Response::new(Bytes::from(self.content));
        *resp.status_mut() = status;
        *resp.headers_mut() = to_header_map(&self.headers)?;
        Ok(resp)
    }
}

fn check_status(status: u16, range: std::ops::RangeInclusive<u16>) -> Result<(), BhttpError> {
    if range.contains(&status) {
        Ok(())
    } else {
        Err(BhttpError::BadStatus(u64::from(status)))
    }
}

fn fields_len(fields: &[Field]) -> usize {
    fields
        .iter()
        .map(|f| f.name.len() + f.value.len() + 16)
        .sum()
}

fn to_header_map(fields: &[Field]) -> Result<HeaderMap, BhttpError> {
    let mut map = HeaderMap::with_capacity(fields.len());
    for f in fields {
        let name = HeaderName::from_bytes(&f.name).map_err(|_| BhttpError::BadField)?;
        let value = HeaderValue::from_bytes(&f.value).map_err(|_| BhttpError::BadField)?;
        map.append(name, value);
    }
    Ok(map)
}

fn from_header_map(map: &HeaderMap) -> Vec<Field> {
    map.iter()
        .map(|(n, v)| Field::new(n.as_str(), v.as_bytes()))
        .collect()
}

/// Appends a QUIC variable-length integer (RFC 9000 §16) in its shortest form.
pub(crate) fn put_varint(out: &mut Vec<u8>, v: u64) -> Result<(), BhttpError> {
    match v {
        0..=0x3f => out.push(v as u8),
        0x40..=0x3fff => out.extend_from_slice(&((v as u16) | 0x4000).to_be_bytes()),
        0x4000..=0x3fff_ffff => out.extend_from_slice(&((v as u32) | 0x8000_0000).to_be_bytes()),
        0x4000_0000..=VARINT_MAX => {
            out.extend_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes())
        }
        _ => return Err(BhttpError::VarintOverflow),
    }
    Ok(())
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<(), BhttpError> {
    put_varint(out, b.len() as u64)?;
    out.extend_from_slice(b);
    Ok(())
}

/// The public encoders of a message type, one per [`Framing`], over its private `encode`.
macro_rules! framed_encoders {
    () => {
        /// Encodes in the known-length form, with every section present.
        pub fn encode_known_length(&self) -> Result<Vec<u8>, BhttpError> {
            self.encode(Framing::KnownLength)
        }

        /// Encodes in the indeterminate-length form (content as one chunk), every section present.
        pub fn encode_indeterminate_length(&self) -> Result<Vec<u8>, BhttpError> {
            self.encode(Framing::Indeterminate)
        }
    };
}
use framed_encoders;

/// The two wire forms of a message (RFC 9292 §3.2): field sections and content prefixed by
/// their length, or ended by a zero.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    KnownLength,
    Indeterminate,
}

impl Framing {
    /// Reads the framing indicator, `known` or `indeterminate` (the request's or the
    /// response's); any other value is an error.
    fn read(r: &mut Reader<'_>, known: u64, indeterminate: u64) -> Result<Self, BhttpError> {
        match r.varint("framing indicator")? {
            v if v == known => Ok(Framing::KnownLength),
            v if v == indeterminate => Ok(Framing::Indeterminate),
            other => Err(BhttpError::BadFraming(other)),
        }
    }

    /// The framing indicator: `known` or `indeterminate` (the request's or the response's).
    fn indicator(self, known: u64, indeterminate: u64) -> u64 {
        match self {
            Framing::KnownLength => known,
            Framing::Indeterminate => indeterminate,
        }
    }

    fn put_fields(self, out: &mut Vec<u8>, fields: &[Field]) -> Result<(), BhttpError> {
        match self {
            Framing::KnownLength => put_known_fields(out, fields),
            Framing::Indeterminate => put_indeterminate_fields(out, fields),
        }
    }

    fn put_content(self, out: &mut Vec<u8>, content: &[u8]) -> Result<(), BhttpError> {
        match self {
            Framing::KnownLength => put_bytes(out, content),
            Framing::Indeterminate => put_indeterminate_content(out, content),
        }
    }
}

fn put_known_fields(out: &mut Vec<u8>, fields: &[Field]) -> Result<(), BhttpError> {
    let mut section = Vec::with_capacity(fields_len(fields));
    for f in fields {
        put_bytes(&mut section, &f.name)?;
        put_bytes(&mut section, &f.value)?;
    }
    put_bytes(out, &section)
}

fn put_indeterminate_fields(out: &mut Vec<u8>, fields: &[Field]) -> Result<(), BhttpError> {
    for f in fields {
        if f.name.is_empty() {
            return Err(BhttpError::BadField);
        }
        put_bytes(out, &f.name)?;
        put_bytes(out, &f.value)?;
    }
    put_varint(out, 0)
}

fn put_indeterminate_content(out: &mut Vec<u8>, content: &[u8]) -> Result<(), BhttpError> {
    if !content.is_empty() {
        put_bytes(out, content)?;
    }
    put_varint(out, 0)
}

/// Decodes a request straight into an `http` request (the gateway's path).
pub fn decode_request(buf: &[u8], limits: &Limits) -> Result<http::Request<Bytes>, BhttpError> {
    BhttpRequest::decode(buf, limits)?.into_http()
}

/// Encodes an `http` response in the known-length form (the gateway's path).
pub fn encode_response(resp: &http::Response<Bytes>) -> Result<Vec<u8>, BhttpError> {
    BhttpResponse::from_http(resp).encode_known_length()
}

/// Encodes an `http` request in the known-length form (a client's path).
pub fn encode_request(req: &http::Request<Bytes>) -> Result<Vec<u8>, BhttpError> {
    BhttpRequest::from_http(req).encode_known_length()
}

/// Decodes a response into an `http` response (a client's path).
pub fn decode_response(buf: &[u8], limits: &Limits) -> Result<http::Response<Bytes>, BhttpError> {
    BhttpResponse::decode(buf, limits)?.into_http()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip_and_boundaries() {
        for v in [
            0u64,
            0x3f,
            0x40,
            0x3fff,
            0x4000,
            0x3fff_ffff,
            0x4000_0000,
            VARINT_MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v).unwrap();
            let mut r = Reader::new(&out);
            assert_eq!(r.varint("x").unwrap(), v);
            assert!(r.at_end());
        }
        assert_eq!(
            put_varint(&mut Vec::new(), VARINT_MAX + 1),
            Err(BhttpError::VarintOverflow)
        );
        // RFC 9000 §A.1 examples.
        let mut r = Reader::new(&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]);
        assert_eq!(r.varint("x").unwrap(), 151_288_809_941_952_652);
        let mut r = Reader::new(&[0x9d, 0x7f, 0x3e, 0x7d]);
        assert_eq!(r.varint("x").unwrap(), 494_878_333);
        let mut r = Reader::new(&[0x7b, 0xbd]);
        assert_eq!(r.varint("x").unwrap(), 15_293);
        let mut r = Reader::new(&[0x40, 0x25]);
        assert_eq!(r.varint("x").unwrap(), 37);
        assert!(Reader::new(&[0x80, 0x01]).varint("x").is_err());
    }

    #[test]
    fn lengths_beyond_input_are_truncation_not_allocation() {
        // Known-length request whose method claims 2^62-1 bytes.
        let msg = [0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            BhttpRequest::decode(&msg, &Limits::default()),
            Err(BhttpError::Truncated(_))
        ));
    }

    #[test]
    fn limits_are_enforced() {
        let mut req = BhttpRequest {
            method: b"GET".to_vec(),
            scheme: b"https".to_vec(),
            authority: b"a".to_vec(),
            path: b"/".to_vec(),
            ..Default::default()
        };
        for i in 0..10 {
            req.headers.push(Field::new(format!("x-{i}"), "v"));
        }
        req.content = vec![7; 100];
        let limits = Limits {
            max_fields: 9,
            ..Limits::default()
        };
        for enc in [
            req.encode_known_length().unwrap(),
            req.encode_indeterminate_length().unwrap(),
        ] {
            assert!(matches!(
                BhttpRequest::decode(&enc, &limits),
                Err(BhttpError::TooLarge { .. })
            ));
            let small_content = Limits {
                max_content: 99,
                ..Limits::default()
            };
            assert!(matches!(
                BhttpRequest::decode(&enc, &small_content),
                Err(BhttpError::TooLarge {
                    what: "content",
                    ..
                })
            ));
            assert_eq!(BhttpRequest::decode(&enc, &Limits::default()).unwrap(), req);
        }
    }

    #[test]
    fn padding_must_be_zero_and_wrong_framing_is_rejected() {
        let ok = [0x01, 0x40, 0xc8, 0, 0, 0];
        assert_eq!(
            BhttpResponse::decode(&ok, &Limits::default())
                .unwrap()
                .status,
            200
        );
        let bad = [0x01, 0x40, 0xc8, 0, 0, 0, 1];
        assert_eq!(
            BhttpResponse::decode(&bad, &Limits::default()),
            Err(BhttpError::NonZeroPadding)
        );
        assert_eq!(
            BhttpRequest::decode(&ok, &Limits::default()),
            Err(BhttpError::BadFraming(1))
        );
        assert_eq!(
            BhttpResponse::decode(&[0x01, 0x40, 0x63], &Limits::default()),
            Err(BhttpError::BadStatus(99))
        );
    }

    #[test]
    fn http_conversion_round_trip() {
        let req = http::Request::builder()
            .method("POST")
            .uri("https://pir.example.com/queries?x=1")
            .header("content-type", "application/octet-stream")
            .header("user-identifier", "abc")
            .body(Bytes::from_static(b"\x01\x02\x03"))
            .unwrap();
        let enc = encode_request(&req).unwrap();
        let back = decode_request(&enc, &Limits::default()).unwrap();
        assert_eq!(back.method(), "POST");
        assert_eq!(back.uri(), "https://pir.example.com/queries?x=1");
        assert_eq!(back.headers(), req.headers());
        assert_eq!(back.body(), req.body());

        let resp = http::Response::builder()
            .status(404)
            .header("x-a", "1")
            .body(Bytes::from_static(b"nope"))
            .unwrap();
        let enc = encode_response(&resp).unwrap();
        let back = decode_response(&enc, &Limits::default()).unwrap();
        assert_eq!(back.status(), 404);
        assert_eq!(back.headers(), resp.headers());
        assert_eq!(back.body(), resp.body());
    }

    #[test]
    fn relative_request_and_bad_control_data() {
        let req = BhttpRequest {
            method: b"GET".to_vec(),
            path: b"/config".to_vec(),
            ..Default::default()
        };
        let http = req.clone().into_http().unwrap();
        assert_eq!(http.uri(), "/config");
        let bad = BhttpRequest {
            method: b"G T".to_vec(),
            ..req.clone()
        };
        assert!(bad.into_http().is_err());
        let bad_path = BhttpRequest {
            path: b"no slash\n".to_vec(),
            ..req
        };
        assert!(bad_path.into_http().is_err());
    }
}
