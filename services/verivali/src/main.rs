//! The verivali service's binary: `dtks-verivali migrate` or `dtks-verivali [serve]`, the platform's
//! bootstrap around `dtks_verivali::start`.

dtks_platform::service_main!("verivali", dtks_verivali);
