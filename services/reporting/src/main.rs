//! The reporting service's binary: `dtks-reporting migrate` or `dtks-reporting [serve]`, the platform's
//! bootstrap around `dtks_reporting::start`.

dtks_platform::service_main!("reporting", dtks_reporting);
