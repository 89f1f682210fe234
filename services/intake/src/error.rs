//! The one error of the intake service, and how each kind is told to a gRPC caller: use
//! cases return [`Error`], and `?` at the edge maps it to a `Status`.

use dtks_proto::intake::v1::ProposalStatus;
use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};

use crate::check::Refusal;

dtks_platform::service_error! {
    pub enum Error {
        /// A proposal refused with every offending field (INVALID_ARGUMENT), or one the
        /// caller may not submit (PERMISSION_DENIED).
        #[error("proposal refused")]
        Refusal(Refusal),
        /// No such proposal, or one outside the caller's scope, which is not disclosed:
        /// NOT_FOUND.
        #[error("no such proposal")]
        NoSuchProposal,
        /// The proposal has gone past the point where it can be withdrawn:
        /// FAILED_PRECONDITION.
        #[error("a {} proposal can no longer be withdrawn", status.as_str_name())]
        NotWithdrawable { status: ProposalStatus },
    }
    to_status {
        Error::Refusal(refusal) => refusal.into_status(),
        Error::NoSuchProposal => Status::not_found("no such proposal"),
        e @ Error::NotWithdrawable { .. } => Status::with_error_details(
            tonic::Code::FailedPrecondition,
            e.to_string(),
            ErrorDetails::with_precondition_failure_violation(
                "STATUS",
                "proposal_id",
                "only a proposal not yet decided (SUBMITTED, IN_VERIFICATION or RETURNED) can be withdrawn",
            ),
        ),
    }
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Self {
        Error::Refusal(refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_reaches_the_caller_with_its_code() {
        let gone = Status::from(Error::NotWithdrawable {
            status: ProposalStatus::Accepted,
        });
        assert_eq!(gone.code(), tonic::Code::FailedPrecondition);
        assert!(gone.message().contains("ACCEPTED"), "{}", gone.message());
        assert_eq!(
            Status::from(Error::NoSuchProposal).code(),
            tonic::Code::NotFound
        );
        let fault = Status::from(Error::from(sea_orm::DbErr::Custom("nik 3204".into())));
        assert_eq!(fault.code(), tonic::Code::Internal);
        assert!(!fault.message().contains("3204"));
    }
}
