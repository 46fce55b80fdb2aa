//! Fuzz target: `manifest::Manifest::decode` on arbitrary bytes (a whole manifest file).
//!
//! Must never panic; on success the manifest re-encodes to a file that decodes to the
//! same manifest.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use spanstore_engine::manifest::Manifest;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("MANIFEST-0000000001");
    let Ok(manifest) = Manifest::decode(path, data) else {
        return;
    };
    let bytes = manifest.encode();
    assert_eq!(Manifest::decode(path, &bytes).unwrap(), manifest);
});
