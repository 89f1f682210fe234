//! The gRPC edge of reporting, written from the contract: each RPC names its caller and
//! hands the request to the use case of its own name on [`Reporting`] (in `read`: a
//! report, the summary, an export, a rebuild); `?` maps the use case's error to a
//! `Status`.

#[cfg(doc)]
use crate::Reporting;

dtks_proto::reporting_service_edge!(crate::Reporting);
