//! The intake service's binary: `dtks-intake migrate` or `dtks-intake [serve]`, the platform's
//! bootstrap around `dtks_intake::start`.

dtks_platform::service_main!("intake", dtks_intake);
