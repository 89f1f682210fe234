//! Compiles `proto/dtks/**.proto` with protox (pure Rust: no protoc on any machine) and
//! generates prost messages and tonic services into OUT_DIR, together with the encoded
//! descriptor set that gRPC server reflection serves, and each service's edge macro
//! (see `edges` below).

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
    std::fs::write(out.join("dtks_edges.rs"), edges(&fds))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}

/// `GetProposalMatch` → `get_proposal_match`.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `.dtks.events.v1.ProposalMatched` → `$crate::events::v1::ProposalMatched`.
fn rust_type(proto: &str) -> String {
    let path: Vec<&str> = proto.trim_start_matches('.').split('.').collect();
    let (name, package) = path.split_last().expect("a message type has a name");
    let package = package.strip_prefix(&["dtks"][..]).expect("a DTKS message");
    format!("$crate::{}::{name}", package.join("::"))
}

/// For every service, a macro `<service>_edge!(Type)` that writes the tonic impl of the
/// service for `Type`: each RPC takes the caller's verified claims (which the access
/// guard put in the request) and hands them, with the request, to `Type`'s use case of
/// the RPC's own name, answering what it returns; `?` maps the use case's error to a
/// `Status`. A unary or server-streaming call's use case takes `(&Claims, &Request)`, a
/// client-streaming one `(&Claims, tonic::Streaming<Request>)`; a streamed answer is a
/// `tonic::codegen::BoxStream`.
fn edges(fds: &prost_types::FileDescriptorSet) -> String {
    let mut out = String::new();
    for file in &fds.file {
        let package = file
            .package()
            .trim_start_matches("dtks.")
            .replace('.', "::");
        for service in &file.service {
            let name = service.name();
            let server = format!("$crate::{package}::{}_server::{name}", snake(name));
            let mut methods = String::new();
            for m in &service.method {
                let rpc = snake(m.name());
                let (input, output) = (rust_type(m.input_type()), rust_type(m.output_type()));
                let streamed_in = m.client_streaming();
                let request = if streamed_in {
                    format!("::tonic::Streaming<{input}>")
                } else {
                    input
                };
                let answer = if m.server_streaming() {
                    let alias = format!("{}Stream", m.name());
                    methods.push_str(&format!(
                        "            type {alias} = ::tonic::codegen::BoxStream<{output}>;\n"
                    ));
                    format!("Self::{alias}")
                } else {
                    output
                };
                let call = if streamed_in {
                    "let who = ::dtks_platform::auth::claims(&request)?.clone();\n                \
                     let answer = self.RPC(&who, request.into_inner()).await?;"
                } else {
                    "let who = ::dtks_platform::auth::claims(&request)?;\n                \
                     let answer = self.RPC(who, request.get_ref()).await?;"
                }
                .replace("RPC", &rpc);
                methods.push_str(&format!(
                    "            #[::tracing::instrument(skip_all)]
            async fn {rpc}(
                &self,
                request: ::tonic::Request<{request}>,
            ) -> ::std::result::Result<::tonic::Response<{answer}>, ::tonic::Status> {{
                {call}
                ::std::result::Result::Ok(::tonic::Response::new(answer))
            }}
"
                ));
            }
            out.push_str(&format!(
                "/// The gRPC edge of `{name}` for a type with a use case per RPC (see build.rs).
#[macro_export]
macro_rules! {}_edge {{
    ($ty:ty) => {{
        #[::tonic::async_trait]
        impl {server} for $ty {{
{methods}        }}
    }};
}}

",
                snake(name)
            ));
        }
    }
    out
}
