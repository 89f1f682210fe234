//! The matching service's binary: `dtks-matching migrate` or `dtks-matching [serve]`, the platform's
//! bootstrap around `dtks_matching::start`.

dtks_platform::service_main!("matching", dtks_matching);
