//! The one error of the verivali service, and how each kind is told to a gRPC caller:
//! use cases return [`Error`], and `?` at the edge maps it to a `Status`.

dtks_platform::service_error! {
    /// No kinds of its own: storage faults and worded refusals.
    pub enum Error {}
}
