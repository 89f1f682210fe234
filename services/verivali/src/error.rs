//! The one error of the verivali service, and how each kind is told to a gRPC caller:
//! use cases return [`Error`], and `?` at the edge maps it to a `Status`.

use tonic::Status;

dtks_platform::service_error! {
    pub enum Error {}
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::Fault(fault) => fault.into(),
            Error::Refused(status) => status,
        }
    }
}
