//! Compiles `proto/dtks/**.proto` with protox (pure Rust: no protoc on any machine) and
//! generates prost messages and tonic services into OUT_DIR, together with the encoded
//! descriptor set that gRPC server reflection serves.

use std::path::PathBuf;

use prost::Message;

const FILES: &[&str] = &[
    "dtks/common/v1/common.proto",
    "dtks/events/v1/events.proto",
    "dtks/intake/v1/intake.proto",
    "dtks/matching/v1/matching.proto",
    "dtks/verivali/v1/verivali.proto",
    "dtks/determination/v1/determination.proto",
    "dtks/distribution/v1/distribution.proto",
    "dtks/reporting/v1/reporting.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=dtks");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(FILES, ["."])?;
    std::fs::write(out.join("dtks_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
