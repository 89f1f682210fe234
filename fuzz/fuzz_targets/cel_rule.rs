//! Programme rules as an officer types them into SaveProgramme: any text is either
//! refused with a place and a reason, or compiles to a rule that answers yes or no for
//! a household — never a panic, never a stack overflow (500 nested parentheses once
//! aborted distribution), however deep or long the text.
#![no_main]

use dtks_eligibility::{household, rules};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The parser panics on some malformed text, and `Rule::compile` catches that as a
    // refusal, as the service does. libFuzzer's hook would abort on the caught panic, so
    // it is replaced once by a silent one; a panic that escapes `compile` still ends the
    // run (libfuzzer-sys aborts on it).
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match rules::Rule::compile(text) {
        Ok(rule) => {
            let answer = rule.eligible(&household::RuleHousehold::sample());
            assert!(answer.is_ok(), "a compiled rule judges the sample it was checked on");
        }
        Err(e) => assert!(!e.message.is_empty()),
    }
});
