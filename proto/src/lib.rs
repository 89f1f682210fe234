//! The DTKS contracts: prost messages and tonic services generated from `proto/dtks`.
//! Every service and client of the pipeline speaks through these types; the domain
//! crate never sees them (conversion happens once, at each service's gRPC edge).

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod common {
    pub mod v1 {
        tonic::include_proto!("dtks.common.v1");
    }
}
pub mod events {
    pub mod v1 {
        tonic::include_proto!("dtks.events.v1");
    }
}
pub mod intake {
    pub mod v1 {
        tonic::include_proto!("dtks.intake.v1");
    }
}
pub mod matching {
    pub mod v1 {
        tonic::include_proto!("dtks.matching.v1");
    }
}
pub mod verivali {
    pub mod v1 {
        tonic::include_proto!("dtks.verivali.v1");
    }
}
pub mod determination {
    pub mod v1 {
        tonic::include_proto!("dtks.determination.v1");
    }
}
pub mod distribution {
    pub mod v1 {
        tonic::include_proto!("dtks.distribution.v1");
    }
}
pub mod reporting {
    pub mod v1 {
        tonic::include_proto!("dtks.reporting.v1");
    }
}

// Each service's `<service>_edge!` macro, generated from its RPCs by build.rs.
include!(concat!(env!("OUT_DIR"), "/dtks_edges.rs"));

/// Encoded `FileDescriptorSet` of every DTKS contract, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/dtks_descriptor.bin"));
