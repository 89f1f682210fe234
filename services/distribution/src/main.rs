//! The distribution service's binary: `dtks-distribution migrate` or `dtks-distribution [serve]`, the platform's
//! bootstrap around `dtks_distribution::start`.

dtks_platform::service_main!("distribution", dtks_distribution);
