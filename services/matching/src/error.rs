//! The one error of the matching service, and how each kind is told to a gRPC caller:
//! handlers and use cases return [`Error`], and `?` at the edge maps it to a `Status`.

use tonic::Status;

use crate::dci::RegistryError;

dtks_platform::service_error! {
    pub enum Error {
        /// The civil registry did not answer: UNAVAILABLE, the caller may try again.
        #[error("civil registry unavailable: {0}")]
        Registry(#[from] RegistryError),
    }
    to_status {
        Error::Registry(e) => Status::unavailable(format!("civil registry unavailable: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_reaches_the_caller_with_its_code_and_no_cause_of_storage() {
        let unavailable = Status::from(Error::Registry(RegistryError::Open));
        assert_eq!(unavailable.code(), tonic::Code::Unavailable);
        let internal = Status::from(Error::from(sea_orm::DbErr::Custom("nik 3204".into())));
        assert_eq!(internal.code(), tonic::Code::Internal);
        assert!(!internal.message().contains("3204"));
        let refused = Status::from(Error::from(dtks_platform::grpc::invalid_field(
            "person",
            "is required",
        )));
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    }
}
