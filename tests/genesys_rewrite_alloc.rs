//! The Genesys rewrite's memory is about the message's size: rewriting a 60 KiB hostile
//! `[0,0,0,...]` value allocates a small multiple of 60 KiB at its peak, not a
//! `serde_json::Value` per element (which would be 32 bytes per 2 input bytes, about 16x).
//! A counting global allocator measures it; this file holds one test so nothing else
//! allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use guestgate::preset::genesys::GenesysConfig;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(live, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

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

    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let out = transform.transform(1, message.as_bytes()).unwrap();
    let peak = PEAK.load(Ordering::SeqCst) - before;

    let expected = format!(r#"{{"action":"onMessage","pad":{array},"token":"session-token"}}"#);
    assert_eq!(out, expected.as_bytes());
    // The output itself is one message size; parsing adds a few small allocations.
    assert!(
        peak < message.len() + 8 * 1024,
        "rewriting {} bytes allocated {peak} bytes at the peak",
        message.len()
    );
}
