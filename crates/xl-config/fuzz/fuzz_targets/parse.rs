//! `cargo fuzz run parse`: arbitrary bytes as an xl.cfg file. The parser
//! must return a configuration or a located error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match xl_config::parse("fuzz.cfg", data) {
        Ok(p) => {
            let _ = p.xl_json();
            let _ = p.config.with_defaults();
        }
        Err(e) => assert!(e.to_string().starts_with("fuzz.cfg")),
    }
});
