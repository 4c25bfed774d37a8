//! Checks that comparing signatures takes the same work wherever they differ.
//!
//! Run under callgrind, which counts instructions (repeatable, unlike time):
//!
//! ```sh
//! cargo build --release --example ct_check
//! for where in equal first last; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/ct_check $where 2>&1 | grep 'refs'
//! done
//! ```
//!
//! The three totals are identical when `Signature`'s `==` is constant-time; an early-exit
//! comparison would make `first` cheaper than `last`. The README records the last result.

use std::hint::black_box;

use rampnow_auth::Signature;

fn main() {
    let base = "558629fe8e7f4555ddbe63dd8d1523921eef1f8763ccc142e63d84c227f2ab5e";
    let mut other = base.as_bytes().to_vec();
    match std::env::args().nth(1).as_deref() {
        Some("equal") => {}
        Some("first") => other[0] = b'0',
        Some("last") => other[63] = b'0',
        _ => {
            eprintln!("usage: ct_check equal|first|last");
            std::process::exit(2);
        }
    }
    let a = Signature::from_hex(base).expect("valid hex");
    let b = Signature::from_hex(std::str::from_utf8(&other).expect("ASCII")).expect("valid hex");
    let mut equal = 0u32;
    for _ in 0..1_000_000 {
        equal += u32::from(black_box(&a) == black_box(&b));
    }
    println!("{equal}");
}
