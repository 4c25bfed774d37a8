//! `rampnow-sandbox`: runs a local Rampnow sandbox until Ctrl-C, an HTTPS server that checks
//! Rampnow signatures as Rampnow does, for testing an integration written in any language.
//! `rampnow-sandbox --help` lists the options; see [`rampnow_sandbox::cli`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    rampnow_sandbox::cli::run(std::env::args().skip(1)).await
}
