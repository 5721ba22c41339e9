//! Compiles our `.proto` files with `protox` (pure Rust, no `protoc` needed) and generates prost
//! types; also writes the file descriptor set used for text-format (`.txtpb`) parsing.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/he.proto",
        "proto/pir.proto",
        "proto/api_shared.proto",
        "proto/api_pir.proto",
        "proto/service.proto",
        "proto/lcid.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("descriptors.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    prost_build::Config::new()
        .enable_type_names()
        .btree_map(["."])
        .compile_fds(fds)?;
    Ok(())
}
