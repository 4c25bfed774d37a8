//! The names of the three authentication headers.
//!
//! Rampnow's documentation exists in two versions that name the headers differently, and an
//! account may be on either: [`HeaderNames::RN`] (the default) and [`HeaderNames::X_RAMPNOW`].
//! [`HeaderNames::new`] builds any other triple.
//!
//! # Example
//!
//! ```
//! use rampnow_auth::HeaderNames;
//!
//! assert_eq!(HeaderNames::RN.signature(), "rn-access-sign");
//! assert_eq!(HeaderNames::X_RAMPNOW.timestamp(), "x-rampnow-timestamp");
//!
//! let custom = HeaderNames::new("My-Key", "My-Time", "My-Sign")?;
//! assert_eq!(custom.api_key(), "my-key");
//! # Ok::<(), rampnow_auth::Error>(())
//! ```

use http::HeaderName;

use crate::error::{Error, ErrorKind};

/// The header names for the API key, the timestamp and the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderNames {
    api_key: HeaderName,
    timestamp: HeaderName,
    signature: HeaderName,
    /// Which preset these are, if any: equal names always have the same value here, since
    /// [`HeaderNames::new`] recognizes the presets.
    preset: Preset,
}

/// The presets' names as constants, which the signing path writes into each request without
/// cloning (a `HeaderName` clone goes through `Bytes`' vtable and costs about 25 ns a name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Preset {
    Rn,
    XRampnow,
    Custom,
}

const RN_API_KEY: HeaderName = HeaderName::from_static("rn-api-key");
const RN_TIMESTAMP: HeaderName = HeaderName::from_static("rn-access-timestamp");
const RN_SIGNATURE: HeaderName = HeaderName::from_static("rn-access-sign");
const X_API_KEY: HeaderName = HeaderName::from_static("x-rampnow-api-key");
const X_TIMESTAMP: HeaderName = HeaderName::from_static("x-rampnow-timestamp");
const X_SIGNATURE: HeaderName = HeaderName::from_static("x-rampnow-sign");

impl HeaderNames {
    /// `RN-API-KEY`, `RN-ACCESS-TIMESTAMP`, `RN-ACCESS-SIGN`: the default.
    pub const RN: HeaderNames = HeaderNames {
        api_key: RN_API_KEY,
        timestamp: RN_TIMESTAMP,
        signature: RN_SIGNATURE,
        preset: Preset::Rn,
    };

    /// `X-RAMPNOW-API-KEY`, `X-RAMPNOW-TIMESTAMP`, `X-RAMPNOW-SIGN`: the names in Rampnow's newer
    /// documentation.
    pub const X_RAMPNOW: HeaderNames = HeaderNames {
        api_key: X_API_KEY,
        timestamp: X_TIMESTAMP,
        signature: X_SIGNATURE,
        preset: Preset::XRampnow,
    };

    /// A custom triple: API key, timestamp, signature. Names are case-insensitive.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidHeaderNames`] when a name is not a valid header name, or two of
    /// them are the same (one header would overwrite the other).
    pub fn new(api_key: &str, timestamp: &str, signature: &str) -> Result<HeaderNames, Error> {
        let parse = |role: &str, name: &str| {
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidHeaderNames,
                    format!(
                        "the {role} header name {name:?} is not a valid HTTP header name; use \
                         letters, digits and '-', as in \"RN-ACCESS-SIGN\""
                    ),
                )
            })
        };
        let names = HeaderNames {
            api_key: parse("API key", api_key)?,
            timestamp: parse("timestamp", timestamp)?,
            signature: parse("signature", signature)?,
            preset: Preset::Custom,
        };
        for preset in [HeaderNames::RN, HeaderNames::X_RAMPNOW] {
            if names.api_key == preset.api_key
                && names.timestamp == preset.timestamp
                && names.signature == preset.signature
            {
                return Ok(preset);
            }
        }
        if names.api_key == names.timestamp
            || names.api_key == names.signature
            || names.timestamp == names.signature
        {
            return Err(Error::new(
                ErrorKind::InvalidHeaderNames,
                "the API key, timestamp and signature header names must be three different \
                 names; one header would overwrite another",
            ));
        }
        Ok(names)
    }

    /// The API key header.
    #[must_use]
    pub fn api_key(&self) -> &HeaderName {
        &self.api_key
    }

    /// The timestamp header.
    #[must_use]
    pub fn timestamp(&self) -> &HeaderName {
        &self.timestamp
    }

    /// The signature header.
    #[must_use]
    pub fn signature(&self) -> &HeaderName {
        &self.signature
    }

    /// Which preset these names are, or `Preset::Custom`.
    pub(crate) fn preset(&self) -> Preset {
        self.preset
    }

    /// The names of a preset; `None` for `Preset::Custom`, whose names only its `HeaderNames`
    /// knows.
    pub(crate) fn of_preset(preset: Preset) -> Option<HeaderNames> {
        match preset {
            Preset::Rn => Some(HeaderNames::RN),
            Preset::XRampnow => Some(HeaderNames::X_RAMPNOW),
            Preset::Custom => None,
        }
    }

    /// The three names, owned, to insert into a request: made from constants for the presets,
    /// cloned otherwise.
    pub(crate) fn to_owned_names(&self) -> [HeaderName; 3] {
        match self.preset {
            Preset::Rn => [RN_API_KEY, RN_TIMESTAMP, RN_SIGNATURE],
            Preset::XRampnow => [X_API_KEY, X_TIMESTAMP, X_SIGNATURE],
            Preset::Custom => [
                self.api_key.clone(),
                self.timestamp.clone(),
                self.signature.clone(),
            ],
        }
    }
}

impl Default for HeaderNames {
    fn default() -> Self {
        HeaderNames::RN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_the_docs() {
        let rn = HeaderNames::default();
        assert_eq!(rn, HeaderNames::RN);
        assert_eq!(rn.api_key(), "rn-api-key");
        assert_eq!(rn.timestamp(), "rn-access-timestamp");
        assert_eq!(rn.signature(), "rn-access-sign");
        let x = HeaderNames::X_RAMPNOW;
        assert_eq!(x.api_key(), "x-rampnow-api-key");
        assert_eq!(x.timestamp(), "x-rampnow-timestamp");
        assert_eq!(x.signature(), "x-rampnow-sign");
    }

    #[test]
    fn presets_spelled_out_are_the_presets() {
        let rn = HeaderNames::new("RN-API-KEY", "rn-access-timestamp", "Rn-Access-Sign").unwrap();
        assert_eq!(rn, HeaderNames::RN);
        assert_eq!(rn.preset, Preset::Rn);
        let x = HeaderNames::new("x-rampnow-api-key", "x-rampnow-timestamp", "x-rampnow-sign");
        assert_eq!(x.unwrap(), HeaderNames::X_RAMPNOW);
        // The same names in another order are not a preset.
        let swapped = HeaderNames::new("rn-api-key", "rn-access-sign", "rn-access-timestamp");
        assert_eq!(swapped.unwrap().preset, Preset::Custom);
    }

    #[test]
    fn owned_names_are_the_names() {
        for names in [
            HeaderNames::RN,
            HeaderNames::X_RAMPNOW,
            HeaderNames::new("a", "b", "c").unwrap(),
        ] {
            let [api_key, timestamp, signature] = names.to_owned_names();
            assert_eq!(&api_key, names.api_key());
            assert_eq!(&timestamp, names.timestamp());
            assert_eq!(&signature, names.signature());
        }
    }

    #[test]
    fn custom_names_are_validated() {
        assert!(HeaderNames::new("a", "b", "c").is_ok());
        for (a, b, c) in [
            ("", "b", "c"),
            ("a b", "b", "c"),
            ("a", "b\n", "c"),
            ("a", "A", "c"),
        ] {
            let err = HeaderNames::new(a, b, c).unwrap_err();
            assert_eq!(
                err.kind(),
                ErrorKind::InvalidHeaderNames,
                "{a:?} {b:?} {c:?}"
            );
        }
    }
}
