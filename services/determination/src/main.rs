//! The determination service's binary: `dtks-determination migrate` or `dtks-determination [serve]`, the platform's
//! bootstrap around `dtks_determination::start`.

dtks_platform::service_main!("determination", dtks_determination);
