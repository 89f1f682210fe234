//! The gRPC edge of matching, written from the contract: each RPC names its caller and
//! hands the request to the use case of its own name on [`Api`] — `lookup`
//! (MatchPerson), `wave` (MatchWave), `results`, `review` — and answers with what it
//! returns; `?` maps the use case's error to a `Status`.

#[cfg(doc)]
use crate::Api;

dtks_proto::matching_service_edge!(crate::Api);
