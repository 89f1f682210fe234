//! The one error of the reporting service, and how each kind is told to a gRPC caller:
//! use cases return [`Error`], and `?` at the edge maps it to a `Status`.

dtks_platform::service_error! {
    pub enum Error {
        /// The bus could not say how many events wait in the dead-letter queues:
        /// UNAVAILABLE, the caller may ask again.
        #[error("dead-letter counts: {0}")]
        Bus(String),
    }
    to_status {
        e @ Error::Bus(_) => dtks_platform::fault::unavailable("the bus", &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Status;

    #[test]
    fn the_bus_down_is_unavailable_and_storage_internal() {
        let bus = Status::from(Error::Bus("amqp://10.0.0.5 refused".into()));
        assert_eq!(bus.code(), tonic::Code::Unavailable);
        assert!(!bus.message().contains("10.0.0.5"));
        let store = Status::from(Error::from(sea_orm::DbErr::Custom("x".into())));
        assert_eq!(store.code(), tonic::Code::Internal);
    }
}
