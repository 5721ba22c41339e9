//! Protobuf text format (`.txtpb`), as Apple's tools read and write `PirParameters` and
//! `KeywordDatabase`, through reflection over our descriptors.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage};

/// Why a text-format conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum TextFormatError {
    /// The message type is not one of ours (a bug, not bad input).
    #[error("unknown message type {0}")]
    UnknownType(String),
    /// The text does not parse as that message.
    #[error("invalid text format for {ty}: {source}")]
    Parse {
        /// Full message name.
        ty: String,
        /// Parser error with position.
        source: prost_reflect::text_format::ParseError,
    },
    /// The parsed message could not be converted to the generated type.
    #[error("cannot convert {0}: {1}")]
    Convert(String, prost::DecodeError),
}

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET)
            .expect("descriptor set generated at build time is valid")
    })
}

/// Parses protobuf text format into message `M`.
pub fn from_text<M: prost::Message + prost::Name + Default>(
    text: &str,
) -> Result<M, TextFormatError> {
    let name = M::full_name();
    let desc = pool()
        .get_message_by_name(&name)
        .ok_or_else(|| TextFormatError::UnknownType(name.clone()))?;
    let dynamic =
        DynamicMessage::parse_text_format(desc, text).map_err(|source| TextFormatError::Parse {
            ty: name.clone(),
            source,
        })?;
    dynamic
        .transcode_to::<M>()
        .map_err(|e| TextFormatError::Convert(name, e))
}

/// Writes message `M` in protobuf text format, one field per line, as Apple's tools do.
pub fn to_text<M: prost::Message + prost::Name>(msg: &M) -> Result<String, TextFormatError> {
    let name = M::full_name();
    let desc = pool()
        .get_message_by_name(&name)
        .ok_or_else(|| TextFormatError::UnknownType(name.clone()))?;
    let mut dynamic = DynamicMessage::new(desc);
    dynamic
        .transcode_from(msg)
        .map_err(|e| TextFormatError::Convert(name, e))?;
    let opts = prost_reflect::text_format::FormatOptions::new().pretty(true);
    Ok(dynamic.to_text_format_with_options(&opts))
}
