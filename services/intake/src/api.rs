//! The gRPC edge of intake, written from the contract: each RPC names its caller and
//! hands the request to the use case of its own name (`submit_proposal`,
//! `import_proposals` in `submit`; the rest in `proposals`); `?` maps the use case's
//! error to a `Status`.

dtks_proto::intake_service_edge!(crate::Intake);
