//! The import reader: the first byte chooses the format; for CSV the rest is split on
//! 0xFF into the households, families and persons files; for XLSX it is the workbook.
//! Whatever the bytes, the reader answers with tables or an error, never a panic, and
//! every row it returns has a line number past the header.
#![no_main]

use dtksctl::sheet;
use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("dtks-fuzz-import-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let dir = scratch();
    let path = if mode % 2 == 0 {
        let mut parts = rest.split(|b| *b == 0xFF);
        for name in sheet::TABLES {
            std::fs::write(dir.join(format!("{name}.csv")), parts.next().unwrap_or_default())
                .expect("write");
        }
        dir.join("households.csv")
    } else {
        let path = dir.join("input.xlsx");
        std::fs::write(&path, rest).expect("write");
        path
    };
    if let Ok(tables) = sheet::read(&path) {
        for table in tables {
            for (line, _) in &table.rows {
                assert!(*line >= 2);
            }
        }
    }
});
