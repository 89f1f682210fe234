//! The DCI envelope as it arrives over HTTP: any bytes are either refused as JSON or
//! checked against the trusted keys without a panic; an envelope the fuzzer builds is
//! never accepted unless it carries a valid signature (it cannot, without the key).
#![no_main]

use dtks_dci as dci;
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static dci::KeyRing {
    static KEYS: std::sync::OnceLock<dci::KeyRing> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let (_seed, public) = dci::generate_key();
        dci::KeyRing::parse(&format!("dukcapil-reference|k1={public}")).expect("a key ring")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    assert!(keys().verify(&body).is_err(), "a forged envelope was accepted");
});
