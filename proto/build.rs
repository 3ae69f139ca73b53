//! Generates the gRPC API (`mailferry.v1`) from `mailferry/v1/*.proto` when the `grpc` feature is
//! on, with protox (pure Rust, no `protoc` needed), and writes the descriptor set that server
//! reflection serves.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=mailferry/v1/migration.proto");
    #[cfg(feature = "grpc")]
    {
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
        let fds = protox::compile(["mailferry/v1/migration.proto"], ["."])?;
        std::fs::write(
            out.join("mailferry_descriptor.bin"),
            prost::Message::encode_to_vec(&fds),
        )?;
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .compile_fds(fds)?;
    }
    Ok(())
}
