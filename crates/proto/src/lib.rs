//! Protobuf messages of Apple's PIR service, wire-compatible field for field.
