//! Config parsing: any text either loads or is refused with issues that point into the text,
//! and whatever loads builds the running state (validation exists to turn the panics of
//! constructors such as tower's retry budget into messages). Never a panic, whatever the bytes.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use payguard::config::{Config, ConfigError, StoreKind};
use payguard::proxy::ProxyState;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A directory that does not exist: a `ca_file` in the input is then a clean read error,
    // never a read of whatever file the fuzzer happened to name relative to the working dir.
    match Config::parse(text, "fuzz", Some(Path::new("/nonexistent/payguard-fuzz"))) {
        Ok(mut config) => {
            let mut names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
            let count = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(
                names.len(),
                count,
                "route names are unique after validation"
            );
            assert!(config.max_request_body > 0);
            // In memory: the fuzzer must not create store files wherever its input says.
            config.idempotency.store = StoreKind::Memory;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let _entered = runtime.enter();
            if let Err(e) = ProxyState::new(&config) {
                panic!("a valid config does not build: {e:#}");
            }
        }
        Err(ConfigError::Invalid { issues, .. }) => {
            assert!(!issues.is_empty(), "a refusal names at least one issue");
            let lines = text.split('\n').count();
            for issue in &issues {
                if let Some(line) = issue.line {
                    assert!(
                        (1..=lines).contains(&line),
                        "line {line} of a {lines}-line text"
                    );
                }
                let _ = issue.to_string();
            }
        }
        Err(e @ ConfigError::Read { .. }) => panic!("parse never reads the config file: {e}"),
    }
});
