//! The sandbox's routes, behind the verifier: the quote route and JSON errors.

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use rampnow_auth::SignedBody;

/// The quote route: `GET` with query parameters, or `POST` with a JSON body.
pub const QUOTE_PATH: &str = "/api/partner/v1/ext/ramp_order/quote";

/// The routes behind the verifier.
pub(super) async fn route(
    request: Request<SignedBody>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let uri = request.uri();
    if uri.path() != QUOTE_PATH {
        return Ok(error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "the sandbox has no route {}; it serves GET and POST {QUOTE_PATH} (the \
                 signature of this request verified)",
                uri.path()
            ),
        ));
    }
    let input = match *request.method() {
        Method::GET => QuoteInput::from_query(uri.query().unwrap_or("")),
        Method::POST => QuoteInput::from_json(request.body().as_bytes()),
        _ => {
            let mut response = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!(
                    "{QUOTE_PATH} takes GET with query parameters or POST with a JSON body, \
                     not {}",
                    request.method()
                ),
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, POST"));
            return Ok(response);
        }
    };
    Ok(match input.and_then(|input| input.quote()) {
        Ok(quote) => json_response(StatusCode::OK, quote),
        Err(bad) => error_response(StatusCode::BAD_REQUEST, bad.code, bad.reason),
    })
}

fn json_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An error answer: `status`, and the body of [`error_body`].
pub(super) fn error_response(
    status: StatusCode,
    code: &str,
    reason: String,
) -> Response<Full<Bytes>> {
    json_response(status, error_body(code, &reason))
}

/// The body of every error the sandbox sends itself, in the shape of the verifier's:
/// `{"code": code, "error": code, "reason": reason}`. `code` as Rampnow's error bodies carry
/// it; `error` is the same code, kept for clients written against earlier sandboxes.
pub(super) fn error_body(code: &str, reason: &str) -> String {
    json!({ "code": code, "error": code, "reason": reason }).to_string()
}

/// A `400` answer: a code and what to fix.
#[derive(Debug)]
struct BadRequest {
    code: &'static str,
    reason: String,
}

fn bad(code: &'static str, reason: impl Into<String>) -> BadRequest {
    BadRequest {
        code,
        reason: reason.into(),
    }
}

/// A currency the sandbox quotes, with its made-up price in US dollars.
#[derive(Debug)]
struct Currency {
    code: &'static str,
    usd_price: f64,
    /// Decimal places of amounts in this currency.
    decimals: usize,
}

const CURRENCIES: &[Currency] = &[
    Currency {
        code: "USD",
        usd_price: 1.0,
        decimals: 2,
    },
    Currency {
        code: "EUR",
        usd_price: 1.10,
        decimals: 2,
    },
    Currency {
        code: "GBP",
        usd_price: 1.25,
        decimals: 2,
    },
    Currency {
        code: "BTC",
        usd_price: 50_000.0,
        decimals: 8,
    },
    Currency {
        code: "ETH",
        usd_price: 2_500.0,
        decimals: 8,
    },
    Currency {
        code: "SOL",
        usd_price: 100.0,
        decimals: 8,
    },
    Currency {
        code: "USDC",
        usd_price: 1.0,
        decimals: 6,
    },
    Currency {
        code: "USDT",
        usd_price: 1.0,
        decimals: 6,
    },
];

/// The fee, as a fraction of the source amount.
const FEE: f64 = 0.01;

/// The largest source amount quoted.
const MAX_AMOUNT: f64 = 1_000_000_000.0;

/// The three inputs of a quote, as received (text).
#[derive(Debug, Default)]
struct QuoteInput {
    src_currency: Option<String>,
    dst_currency: Option<String>,
    src_amount: Option<String>,
}

impl QuoteInput {
    /// From `srcCurrency=USD&dstCurrency=BTC&srcAmount=100` (form-decoded; a repeated
    /// parameter is an error).
    fn from_query(query: &str) -> Result<QuoteInput, BadRequest> {
        let mut input = QuoteInput::default();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match name {
                "srcCurrency" => &mut input.src_currency,
                "dstCurrency" => &mut input.dst_currency,
                "srcAmount" => &mut input.src_amount,
                _ => continue,
            };
            if slot.is_some() {
                return Err(bad(
                    "invalid_parameter",
                    format!("the query parameter {name} is given more than once; give it once"),
                ));
            }
            let value = form_decode(value).ok_or_else(|| {
                bad(
                    "invalid_parameter",
                    format!(
                        "the query parameter {name} is not valid percent-encoded UTF-8; \
                         percent-encode each byte as % and two hex digits, such as %20 for a space"
                    ),
                )
            })?;
            *slot = Some(value);
        }
        Ok(input)
    }

    /// From a JSON object with `srcCurrency`, `dstCurrency` (strings) and `srcAmount` (a
    /// string or a number).
    fn from_json(body: &[u8]) -> Result<QuoteInput, BadRequest> {
        let value: Value = serde_json::from_slice(body).map_err(|error| {
            bad(
                "invalid_json",
                format!(
                    "the body is not JSON ({error}); send an object such as \
                     {{\"srcCurrency\": \"EUR\", \"dstCurrency\": \"ETH\", \"srcAmount\": \"100.0\"}}"
                ),
            )
        })?;
        let Value::Object(object) = value else {
            return Err(bad(
                "invalid_json",
                "the body must be a JSON object such as {\"srcCurrency\": \"EUR\", \
                 \"dstCurrency\": \"ETH\", \"srcAmount\": \"100.0\"}",
            ));
        };
        let text = |name: &str, numbers: bool| match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(Value::Number(number)) if numbers => Ok(Some(number.to_string())),
            Some(_) => Err(bad(
                "invalid_parameter",
                format!(
                    "the field {name} must be a string{}",
                    if numbers { " or a number" } else { "" }
                ),
            )),
        };
        Ok(QuoteInput {
            src_currency: text("srcCurrency", false)?,
            dst_currency: text("dstCurrency", false)?,
            src_amount: text("srcAmount", true)?,
        })
    }

    /// Checks the inputs and computes the quote, as JSON text.
    fn quote(self) -> Result<String, BadRequest> {
        let required = |value: Option<String>, name: &str| {
            value.ok_or_else(|| {
                bad(
                    "missing_parameter",
                    format!(
                        "{name} is missing; a quote needs srcCurrency, dstCurrency and srcAmount"
                    ),
                )
            })
        };
        let src = currency(&required(self.src_currency, "srcCurrency")?, "srcCurrency")?;
        let dst = currency(&required(self.dst_currency, "dstCurrency")?, "dstCurrency")?;
        let amount_text = required(self.src_amount, "srcAmount")?;
        let amount = amount(&amount_text)?;
        if src.code == dst.code {
            return Err(bad(
                "same_currency",
                format!(
                    "srcCurrency and dstCurrency are both {}; quote two different currencies",
                    src.code
                ),
            ));
        }

        let fee = amount * FEE;
        let rate = src.usd_price / dst.usd_price;
        let dst_amount = (amount - fee) * rate;
        let digest = Sha256::new()
            .chain_update(src.code)
            .chain_update(b"\n")
            .chain_update(dst.code)
            .chain_update(b"\n")
            .chain_update(amount_text.as_bytes())
            .finalize();
        let quote_id = format!("sbx_quote_{}", hex::encode(&digest[..8]));
        // Written by hand to keep the fields in this order (serde_json's map would sort them);
        // every value goes through serde_json, so it is escaped.
        let string = |text: &str| Value::from(text).to_string();
        Ok(format!(
            "{{\"quoteId\":{},\"srcCurrency\":{},\"dstCurrency\":{},\"srcAmount\":{},\
             \"feeAmount\":{},\"feeCurrency\":{},\"rate\":{},\"dstAmount\":{},\"sandbox\":true}}",
            string(&quote_id),
            string(src.code),
            string(dst.code),
            string(&amount_text),
            string(&format!("{fee:.0$}", src.decimals)),
            string(src.code),
            string(&format!("{rate:.8}")),
            string(&format!("{dst_amount:.0$}", dst.decimals)),
        ))
    }
}

fn currency(code: &str, name: &str) -> Result<&'static Currency, BadRequest> {
    CURRENCIES
        .iter()
        .find(|currency| currency.code.eq_ignore_ascii_case(code))
        .ok_or_else(|| {
            let known: Vec<&str> = CURRENCIES.iter().map(|c| c.code).collect();
            bad(
                "unsupported_currency",
                format!(
                    "{name} {code:?} is not a currency the sandbox quotes; use one of {}",
                    known.join(", ")
                ),
            )
        })
}

/// Plain decimal digits with at most one point, above 0 and at most [`MAX_AMOUNT`].
fn amount(text: &str) -> Result<f64, BadRequest> {
    let invalid = || {
        bad(
            "invalid_amount",
            format!(
                "srcAmount {text:?} is not an amount; give plain decimal digits above 0 and at \
                 most 1000000000, such as \"100\" or \"100.0\""
            ),
        )
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || text.len() > 40 {
        return Err(invalid());
    }
    let value: f64 = text.parse().map_err(|_| invalid())?;
    if value > 0.0 && value <= MAX_AMOUNT {
        Ok(value)
    } else {
        Err(invalid())
    }
}

/// Decodes one `application/x-www-form-urlencoded` value: `+` is a space, `%XX` a byte.
fn form_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                // Exactly two hex digits (`from_str_radix` would also take a sign, as in `%+F`).
                let mut byte = [0u8; 1];
                hex::decode_to_slice(bytes.get(i + 1..i + 3)?, &mut byte).ok()?;
                out.push(byte[0]);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(src: &str, dst: &str, amount: &str) -> Result<Value, BadRequest> {
        let text = QuoteInput {
            src_currency: Some(src.to_owned()),
            dst_currency: Some(dst.to_owned()),
            src_amount: Some(amount.to_owned()),
        }
        .quote()?;
        Ok(serde_json::from_str(&text).expect("a quote is JSON"))
    }

    #[test]
    fn error_bodies_carry_a_code_an_error_and_a_reason() {
        let body = error_body("rate_limited", "wait \"1\" s\n");
        assert!(
            body.starts_with(r#"{"code":"rate_limited","error":"rate_limited","#),
            "{body}"
        );
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["reason"], "wait \"1\" s\n");
        let response = error_response(StatusCode::NOT_FOUND, "not_found", "no".to_owned());
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    }

    #[test]
    fn quote_fields_come_in_a_readable_order() {
        let text = QuoteInput::from_query("srcCurrency=USD&dstCurrency=BTC&srcAmount=100")
            .unwrap()
            .quote()
            .unwrap();
        assert!(text.starts_with(r#"{"quoteId":"sbx_quote_"#), "{text}");
        assert!(
            text.ends_with(r#","dstAmount":"0.00198000","sandbox":true}"#),
            "{text}"
        );
    }

    #[test]
    fn quotes_are_computed_from_the_fixed_prices_and_fee() {
        let q = quote("USD", "BTC", "100").unwrap();
        assert_eq!(q["srcCurrency"], "USD");
        assert_eq!(q["dstCurrency"], "BTC");
        assert_eq!(q["srcAmount"], "100");
        assert_eq!(q["feeAmount"], "1.00");
        assert_eq!(q["feeCurrency"], "USD");
        assert_eq!(q["rate"], "0.00002000");
        assert_eq!(q["dstAmount"], "0.00198000");
        assert_eq!(q["sandbox"], true);

        let q = quote("eur", "eth", "100.0").unwrap();
        assert_eq!(q["srcCurrency"], "EUR");
        assert_eq!(q["rate"], "0.00044000");
        assert_eq!(q["dstAmount"], "0.04356000");

        let q = quote("BTC", "USD", "0.5").unwrap();
        assert_eq!(q["feeAmount"], "0.00500000");
        assert_eq!(q["dstAmount"], "24750.00");
    }

    #[test]
    fn quote_ids_depend_on_the_inputs_only() {
        let id = |s, d, a| quote(s, d, a).unwrap()["quoteId"].clone();
        assert_eq!(id("USD", "BTC", "100"), id("USD", "BTC", "100"));
        assert_eq!(id("usd", "BTC", "100"), id("USD", "BTC", "100"));
        assert_ne!(id("USD", "BTC", "100"), id("USD", "BTC", "101"));
        assert_ne!(id("USD", "BTC", "100"), id("USD", "ETH", "100"));
        assert!(id("USD", "BTC", "100")
            .as_str()
            .unwrap()
            .starts_with("sbx_quote_"));
    }

    #[test]
    fn bad_inputs_say_what_is_wrong() {
        let code = |s, d, a| quote(s, d, a).unwrap_err().code;
        assert_eq!(code("USD", "XYZ", "100"), "unsupported_currency");
        assert_eq!(code("USD", "USD", "100"), "same_currency");
        for amount in [
            "",
            "0",
            "0.0",
            "-1",
            "1e3",
            "1.2.3",
            ".5",
            "abc",
            "1000000001",
            " 1",
        ] {
            assert_eq!(code("USD", "BTC", amount), "invalid_amount", "{amount:?}");
        }
        let missing = QuoteInput::from_query("srcCurrency=USD&srcAmount=1")
            .unwrap()
            .quote()
            .unwrap_err();
        assert_eq!(missing.code, "missing_parameter");
        assert!(missing.reason.contains("dstCurrency"));
    }

    #[test]
    fn query_values_are_form_decoded_and_not_repeated() {
        let input = QuoteInput::from_query("srcCurrency=%55SD&dstCurrency=BTC&srcAmount=1%2E5&x=y")
            .unwrap();
        assert_eq!(input.src_currency.as_deref(), Some("USD"));
        assert_eq!(input.src_amount.as_deref(), Some("1.5"));
        let repeated = QuoteInput::from_query("srcAmount=1&srcAmount=2").unwrap_err();
        assert_eq!(repeated.code, "invalid_parameter");
        assert!(QuoteInput::from_query("srcAmount=%4").is_err());
        assert_eq!(form_decode("a+b%20c").as_deref(), Some("a b c"));
        assert_eq!(form_decode("%ff"), None);
        assert_eq!(form_decode("%4A%4a").as_deref(), Some("JJ"));
        // A sign is not a hex digit.
        assert_eq!(form_decode("%+F"), None);
        assert_eq!(form_decode("%-1"), None);
    }

    #[test]
    fn json_bodies_take_strings_and_numbers() {
        let input = QuoteInput::from_json(
            br#"{"srcCurrency":"EUR","dstCurrency":"ETH","srcAmount":100.5,"walletAddress":"0x1"}"#,
        )
        .unwrap();
        assert_eq!(input.src_amount.as_deref(), Some("100.5"));
        assert_eq!(
            QuoteInput::from_json(b"[]").unwrap_err().code,
            "invalid_json"
        );
        assert_eq!(
            QuoteInput::from_json(b"{").unwrap_err().code,
            "invalid_json"
        );
        assert_eq!(
            QuoteInput::from_json(br#"{"srcCurrency":1}"#)
                .unwrap_err()
                .code,
            "invalid_parameter"
        );
    }
}
