//! What goes wrong inside a service that no caller can mend: storage, a stored value that
//! no longer reads, a task that died. Every service's error enum carries these as one
//! variant, [`Fault`], told to a gRPC caller as INTERNAL with the cause logged and never
//! sent. [`service_error!`](crate::service_error) lets `?` lift each kind (and a worded
//! refusal, a `tonic::Status`) into the service's own error.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum Fault {
    #[error("storage: {0}")]
    Store(#[from] sea_orm::DbErr),
    #[error("storage: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("stored message unreadable: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("stored value unreadable: {0}")]
    Json(#[from] serde_json::Error),
    #[error("stored code unknown: {0}")]
    Code(#[from] prost::UnknownEnumValue),
    #[error("stored id unreadable: {0}")]
    Id(#[from] uuid::Error),
    #[error("sealed value unreadable: {0}")]
    Sealed(#[from] crate::sealed::SealError),
    #[error("task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("{0}")]
    Other(String),
}

impl From<Fault> for Status {
    fn from(fault: Fault) -> Self {
        crate::grpc::internal(fault)
    }
}

/// The kinds [`service_error!`](crate::service_error) lifts, named from here so that a
/// service need not depend on each crate.
#[doc(hidden)]
pub mod kinds {
    pub use crate::sealed::SealError;
    pub use prost::{DecodeError, UnknownEnumValue};
    pub use sea_orm::DbErr;
    pub use serde_json::Error as JsonError;
    pub use sqlx::Error as SqlError;
    pub use tokio::task::JoinError;
    pub use tonic::Status;
    pub use uuid::Error as IdError;
}

/// UNAVAILABLE for a part the service depends on (`what`), the caller told to try
/// again; the cause is logged, never sent.
pub fn unavailable(what: &str, cause: &dyn std::fmt::Display) -> Status {
    tracing::warn!(error = %cause, what, "a dependency is unavailable");
    Status::unavailable(format!("{what} cannot be reached now; try again"))
}

/// Declares a service's `Error`: the variants of its own, then `Fault` (INTERNAL, the
/// cause logged and never sent) and `Refused` (a `Status` already worded for the
/// caller); a `From` for every fault kind and for `Status`, so that `?` lifts them all;
/// the crate's `Result`; and the one `From<Error> for Status`, whose arms for the
/// service's own kinds follow in `to_status { … }`.
///
/// ```ignore
/// dtks_platform::service_error! {
///     pub enum Error {
///         #[error("period not determined")]
///         NotDetermined,
///     }
///     to_status {
///         e @ Error::NotDetermined => tonic::Status::not_found(e.to_string()),
///     }
/// }
/// ```
#[macro_export]
macro_rules! service_error {
    ($(#[$meta:meta])* pub enum $error:ident {}) => {
        $crate::service_error! { $(#[$meta])* pub enum $error {} to_status {} }
    };
    (
        $(#[$meta:meta])* pub enum $error:ident { $($own:tt)* }
        to_status { $($arms:tt)* }
    ) => {
        $crate::service_error! { @declare $(#[$meta])* pub enum $error { $($own)* } }

        impl From<$error> for $crate::fault::kinds::Status {
            fn from(error: $error) -> Self {
                match error {
                    $($arms)*
                    $error::Fault(fault) => fault.into(),
                    $error::Refused(status) => status,
                }
            }
        }
    };
    (@declare $(#[$meta:meta])* pub enum $error:ident { $($own:tt)* }) => {
        $(#[$meta])*
        #[derive(Debug, thiserror::Error)]
        pub enum $error {
            $($own)*
            /// Storage, a stored value, a task: INTERNAL, the cause logged and never sent.
            #[error(transparent)]
            Fault($crate::fault::Fault),
            /// A refusal already worded for the caller (a field, a region, a state).
            #[error("{}", .0.message())]
            Refused($crate::fault::kinds::Status),
        }

        /// A use case's answer, or the service's error.
        pub type Result<T, E = $error> = ::std::result::Result<T, E>;

        $crate::service_error!(@each $error:
            $crate::fault::kinds::DbErr,
            $crate::fault::kinds::SqlError,
            $crate::fault::kinds::DecodeError,
            $crate::fault::kinds::JsonError,
            $crate::fault::kinds::UnknownEnumValue,
            $crate::fault::kinds::IdError,
            $crate::fault::kinds::SealError,
            $crate::fault::kinds::JoinError,
        );
        impl From<$crate::fault::Fault> for $error {
            fn from(fault: $crate::fault::Fault) -> Self {
                $error::Fault(fault)
            }
        }
        impl From<$crate::fault::kinds::Status> for $error {
            fn from(status: $crate::fault::kinds::Status) -> Self {
                $error::Refused(status)
            }
        }
    };
    (@each $error:ident: $($kind:ty),* $(,)?) => {
        $(impl From<$kind> for $error {
            fn from(cause: $kind) -> Self {
                $error::Fault($crate::fault::Fault::from(cause))
            }
        })*
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_reaches_the_caller_as_internal_without_its_cause() {
        let status = Status::from(Fault::from(sea_orm::DbErr::Custom("nik 3204".into())));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(!status.message().contains("3204"));
    }
}
