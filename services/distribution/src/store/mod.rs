//! Statements of distribution's schema: lists ([`lists`]) and their entries in chunks
//! ([`entries`]), data requests ([`requests`]), programmes ([`programmes`], an entity).
//! Deliveries keep theirs beside their use case (`delivery`). Migrations are
//! `migrations/*.sql`.

pub mod entries;
pub mod lists;
pub mod programmes;
pub mod requests;

dtks_platform::sql_migrator![
    "m0001_programmes_and_lists",
    "m0002_data_requests",
    "m0003_programme_rules",
    "m0004_list_approval",
    "m0005_deliveries",
    "m0006_list_chunks",
    "m0007_request_filer",
];
