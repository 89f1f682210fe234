//! The one error of the determination service, and how each kind is told to a gRPC
//! caller: use cases return [`Error`], and `?` at the edge maps it to a `Status`.

use tonic::Status;

dtks_platform::service_error! {
    pub enum Error {
        /// The month asked for has no snapshot: NOT_FOUND.
        #[error("period not determined")]
        NotDetermined,
        /// Another determination holds the cluster's Lease or the lock: ABORTED, the caller
        /// may try again when it finishes.
        #[error("{0}")]
        Busy(String),
        /// The cluster's Lease could not be read or taken: UNAVAILABLE.
        #[error("the determination lease: {0}")]
        Lease(String),
    }
    to_status {
        e @ Error::NotDetermined => Status::not_found(e.to_string()),
        Error::Busy(why) => Status::aborted(why),
        e @ Error::Lease(_) => dtks_platform::fault::unavailable("the determination lease", &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_run_is_aborted_and_a_missing_month_not_found() {
        assert_eq!(
            Status::from(Error::Busy("held".into())).code(),
            tonic::Code::Aborted
        );
        assert_eq!(
            Status::from(Error::NotDetermined).code(),
            tonic::Code::NotFound
        );
        let lease = Status::from(Error::Lease("kube: 10.0.0.1 refused".into()));
        assert_eq!(lease.code(), tonic::Code::Unavailable);
        assert!(!lease.message().contains("10.0.0.1"));
    }
}
