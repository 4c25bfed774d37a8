//! The secret never appears in anything the sandbox prints: its `Debug`, its log entries
//! (`Debug` and the `Display` line it writes to stderr), or its answers.

mod common;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use http::Request;
use rampnow_auth::{Credentials, RampnowAuthLayer, SignedBody};
use rampnow_sandbox::{Sandbox, QUOTE_PATH};
use tower::{service_fn, Layer, ServiceExt};

const SECRET: &str = "pk_live_do_not_print_me_0123456789";

/// Everything printed.
#[derive(Clone, Default)]
struct Printed(Arc<Mutex<String>>);

impl Printed {
    fn debug(&self, what: &str, value: &dyn std::fmt::Debug) {
        let _ = writeln!(self.0.lock().unwrap(), "{what}: {value:?}");
    }

    fn display(&self, what: &str, value: &dyn std::fmt::Display) {
        let _ = writeln!(self.0.lock().unwrap(), "{what}: {value}");
    }

    fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn nothing_the_sandbox_prints_contains_the_secret() {
    let printed = Printed::default();
    let credentials = Credentials::new("ak_live_3f9a1c", SECRET).unwrap();
    // The sandbox, with these credentials instead of its public ones.
    let sandbox = Sandbox::builder()
        .credentials(credentials.clone())
        .quiet(true)
        .start()
        .await
        .unwrap();
    printed.debug("Sandbox", &sandbox);
    // One request it verifies and one it refuses, so that its log has both kinds; the
    // signatures sent are kept, to search for below.
    let sent = Arc::new(Mutex::new(Vec::<String>::new()));
    let transport = common::sandbox_client(&sandbox);
    let recording = service_fn({
        let sent = sent.clone();
        move |request: Request<SignedBody>| {
            let signature = request.headers()["rn-access-sign"].to_str().unwrap();
            sent.lock().unwrap().push(signature.to_owned());
            transport.request(request)
        }
    });
    let wrong_secret = Credentials::new("ak_live_3f9a1c", "pk_live_wrong").unwrap();
    for credentials in [credentials.clone(), wrong_secret] {
        let uri = format!(
            "{}{QUOTE_PATH}?srcCurrency=USD&dstCurrency=BTC&srcAmount=10",
            sandbox.url()
        );
        let response = RampnowAuthLayer::new(credentials)
            .layer(recording.clone())
            .oneshot(Request::get(uri).body(SignedBody::empty()).unwrap())
            .await
            .unwrap();
        printed.debug("sandbox response", &response);
    }
    let log = sandbox.log();
    assert_eq!(
        log.iter().map(|entry| entry.verified()).collect::<Vec<_>>(),
        [true, false]
    );
    for entry in log {
        printed.debug("LogEntry", &entry);
        printed.display("LogEntry", &entry);
    }

    let text = printed.text();
    assert!(
        text.contains("ak_live_3f9a1c"),
        "it printed things:\n{text}"
    );
    assert!(
        !text.contains("do_not_print"),
        "the secret was printed:\n{text}"
    );
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    for signature in &sent {
        assert!(
            !text.contains(signature.as_str()),
            "a full signature was printed:\n{text}"
        );
    }
}
