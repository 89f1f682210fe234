//! The gRPC edge of distribution, written from the contract: each RPC names its caller
//! and hands the request to the use case of its own name on [`Distribution`] — lists in
//! `lists` and `delivery`, data requests in `requests` and `extract`, programmes in
//! `programmes`, months in `months`; `?` maps the use case's error to a `Status`.

#[cfg(doc)]
use crate::Distribution;

dtks_proto::distribution_service_edge!(crate::Distribution);
