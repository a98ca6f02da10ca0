//! Configuration documents as the run-time store and the admin panel hand them in: loading
//! and validation must name every bad field, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sources = firmware_config::Sources {
        store: Some((1, text.to_owned())),
        ..Default::default()
    };
    if let Ok(loaded) = firmware_config::load(&sources) {
        // What loads prints and loads again the same.
        let again = firmware_config::Sources {
            store: Some((2, loaded.config.to_toml_string())),
            ..Default::default()
        };
        let reloaded = firmware_config::load(&again).expect("a loaded configuration reloads");
        assert_eq!(reloaded.config, loaded.config);
    }
});
