//! The one error of the distribution service, and how each kind is told to a gRPC
//! caller: use cases return [`Error`], and `?` at the edge maps it to a `Status`.

dtks_platform::service_error! {
    /// No kinds of its own: storage faults and worded refusals.
    pub enum Error {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Status;

    #[test]
    fn a_refusal_keeps_its_words_and_a_fault_hides_its_cause() {
        let refused = Status::from(Error::from(Status::failed_precondition("revoked")));
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert_eq!(refused.message(), "revoked");
        let fault = Status::from(Error::from(sea_orm::DbErr::Custom("3204".into())));
        assert_eq!(fault.code(), tonic::Code::Internal);
        assert!(!fault.message().contains("3204"));
    }
}
