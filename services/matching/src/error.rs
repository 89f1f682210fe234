//! The one error of the matching service, and how each kind is told to a gRPC caller:
//! handlers and use cases return [`Error`], and `?` at the edge maps it to a `Status`.

use dtks_platform::grpc;
use tonic::Status;

use crate::dci::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The civil registry did not answer: UNAVAILABLE, the caller may try again.
    #[error("civil registry unavailable: {0}")]
    Registry(#[from] RegistryError),
    /// Storage failed: INTERNAL, the cause logged and never sent.
    #[error("storage: {0}")]
    Store(#[from] sea_orm::DbErr),
    /// A stored result that cannot be read back: INTERNAL.
    #[error("stored result unreadable: {0}")]
    Decode(#[from] prost::DecodeError),
    /// A stored value that cannot be read back: INTERNAL.
    #[error("stored value unreadable: {0}")]
    Json(#[from] serde_json::Error),
    /// A stored id that is not one: INTERNAL.
    #[error("stored id unreadable: {0}")]
    Id(#[from] uuid::Error),
    /// A task of the call died (a panic): INTERNAL.
    #[error("task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A refusal already worded for the caller (a field, a region, a state).
    #[error("{}", .0.message())]
    Refused(Status),
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        Error::Refused(status)
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::Registry(e) => Status::unavailable(format!("civil registry unavailable: {e}")),
            Error::Store(e) => grpc::internal(e),
            Error::Decode(e) => grpc::internal(e),
            Error::Json(e) => grpc::internal(e),
            Error::Id(e) => grpc::internal(e),
            Error::Task(e) => grpc::internal(e),
            Error::Refused(status) => status,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_reaches_the_caller_with_its_code_and_no_cause_of_storage() {
        let unavailable = Status::from(Error::Registry(RegistryError::Open));
        assert_eq!(unavailable.code(), tonic::Code::Unavailable);
        let internal = Status::from(Error::Store(sea_orm::DbErr::Custom("nik 3204".into())));
        assert_eq!(internal.code(), tonic::Code::Internal);
        assert!(!internal.message().contains("3204"));
        let refused = Status::from(Error::from(grpc::invalid_field("person", "is required")));
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    }
}
