//! Signed tokens as imaging, the SFU and the appliance receive them: only the signer's tokens
//! verify, and nothing else panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let signer = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let key = ed25519_dalek::VerifyingKey::from(&signer);
    if let Ok(claims) = imaging::viewer::token::verify(token, &key, 1) {
        // Whatever verifies was signed by the key: re-signing gives the same token.
        assert_eq!(imaging::viewer::token::sign(&claims, &signer), token);
    }
});
