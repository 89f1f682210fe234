//! What crosses the edge: the gRPC server and refusals, request checks, proto conversion, DCI, and the fault every service error carries.

pub mod convert;
pub mod dci;
pub mod edge;
pub mod fault;
pub mod fields;
pub mod grpc;
