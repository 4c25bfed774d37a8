//! `rampnow-sandbox`: runs a local Rampnow sandbox until Ctrl-C, an HTTPS server that checks
//! Rampnow signatures as Rampnow does, for testing an integration written in any language.
//! `rampnow-sandbox --help` lists the options; see [`rampnow_sandbox::cli`].

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    // `std::env::args` panics on an argument that is not UTF-8; say which one instead.
    let mut argv = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(arg) => argv.push(arg),
            Err(arg) => {
                eprintln!(
                    "rampnow-sandbox: the argument {arg:?} is not valid UTF-8; pass it as UTF-8 \
                     text (for a body with other bytes, put it in a file and give @FILE)"
                );
                return ExitCode::from(2);
            }
        }
    }
    rampnow_sandbox::cli::run(argv).await
}
