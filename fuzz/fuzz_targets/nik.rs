//! NIK and KK numbers: any text is either refused or parsed into a number that reads
//! back as itself, whose parts are in range, and whose masked form hides it.
#![no_main]

use dtks_domain::nik::{KkNumber, Nik};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(nik) = Nik::parse(text) {
        assert!(Nik::parse(nik.as_str()).ok() == Some(nik.clone()));
        assert_eq!(nik.as_str().len(), 16);
        let (day, month, _year) = nik.birth_parts();
        assert!((1..=31).contains(&day) && (1..=12).contains(&month));
        let _ = nik.sex();
        let _ = nik.district_code();
        assert_ne!(nik.masked(), nik.as_str());
    }
    if let Ok(kk) = KkNumber::parse(text) {
        assert!(KkNumber::parse(kk.as_str()).ok() == Some(kk.clone()));
    }
});
