//! Runs a local Rampnow sandbox until Ctrl-C: the `rampnow-sandbox` command, from a checkout.
//!
//! ```text
//! cargo run --example sandbox
//! cargo run --example sandbox -- --addr 127.0.0.1:9443 --cert-out ca.pem --clock-skew 300
//! ```
//!
//! `cargo install rampnow-sandbox` installs the same program as `rampnow-sandbox`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    rampnow_sandbox::cli::run(std::env::args().skip(1)).await
}
