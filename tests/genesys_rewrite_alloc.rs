//! The Genesys rewrite's memory is about the message's size: rewriting a 60 KiB hostile
//! `[0,0,0,...]` value allocates a small multiple of 60 KiB at its peak, not a
//! `serde_json::Value` per element (which would be 32 bytes per 2 input bytes, about 16x).
//! A counting global allocator (`peak_alloc`) measures it; this file holds one test so nothing else
//! allocates meanwhile.

use guestgate::preset::genesys::GenesysConfig;
use peak_alloc::PeakAlloc;

// A counting allocator from a crate made for it: the project forbids `unsafe` everywhere,
// tests included, and a global allocator cannot be written without it.
#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

#[test]
fn rewriting_a_huge_array_allocates_about_its_size() {
    let config: GenesysConfig = toml::from_str(
        "domain = \"mypurecloud.com\"\ndeployment_id = \"d\"\norigin = \"https://www.example.com\"",
    )
    .unwrap();
    let mut transform = config.transform("session-token");
    let array = format!("[{}0]", "0,".repeat(30 * 1024));
    let message = format!(r#"{{"action":"onMessage","pad":{array}}}"#);
    assert!(message.len() > 60 << 10);

    let before = ALLOC.current_usage();
    ALLOC.reset_peak_usage();
    let out = transform.transform(1, message.as_bytes()).unwrap();
    let peak = ALLOC.peak_usage() - before;

    let expected = format!(r#"{{"action":"onMessage","pad":{array},"token":"session-token"}}"#);
    assert_eq!(out, expected.as_bytes());
    // The output itself is one message size; parsing adds a few small allocations.
    assert!(
        peak < message.len() + 8 * 1024,
        "rewriting {} bytes allocated {peak} bytes at the peak",
        message.len()
    );
}
