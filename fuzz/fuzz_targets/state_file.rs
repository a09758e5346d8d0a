//! The state file loader on arbitrary bytes: a file decodes to a state or is refused as damaged,
//! never a panic.
#![no_main]

use fargate_health_monitor::store;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    drop(store::decode(data));
});
