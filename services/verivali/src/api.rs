//! The gRPC edge of verivali, written from the contract: each RPC names its caller and
//! hands the request to the use case of its own name on [`Verivali`] — `read`, `review`
//! (the region's steps), `decide` (the deciding steps), `aftercare`, `complaints`, `qa`,
//! `officers` — and answers with what it returns; `?` maps the use case's error to a
//! `Status`.

#[cfg(doc)]
use crate::Verivali;

dtks_proto::verivali_service_edge!(crate::Verivali);
