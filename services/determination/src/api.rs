//! The gRPC edge of determination, written from the contract: each RPC names its caller
//! and hands the request to the use case of its own name on [`Api`] (in [`crate::read`]);
//! `?` maps the use case's error to a `Status`.

#[cfg(doc)]
use crate::run::Api;

dtks_proto::determination_service_edge!(crate::run::Api);
