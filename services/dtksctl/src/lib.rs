//! What `dtksctl` shares beyond its binary: the import sheets (CSV or XLSX) it reads and
//! writes, so that the fuzz target `import_sheet` drives the very reader officers use.

pub mod sheet;
