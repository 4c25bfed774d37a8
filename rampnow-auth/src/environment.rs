//! Rampnow's two environments: where each one is, and how many requests a second it takes.

use std::fmt;
use std::str::FromStr;

/// The environment variable [`Environment::from_env`] reads: `production` or `staging`.
pub const ENVIRONMENT_ENV: &str = "RAMPNOW_ENVIRONMENT";

/// One of Rampnow's environments, with its base URL and its documented rate limit.
///
/// | environment | base URL | requests per second per IP |
/// |---|---|---|
/// | [`Production`](Environment::Production) | `https://api.rampnow.io` | 20 |
/// | [`Staging`](Environment::Staging) | `https://api.sandbox.rampnow.io` | 15 |
///
/// [`RateLimitLayer::for_environment`](crate::limit::RateLimitLayer::for_environment) keeps a
/// client within the limit, and the base URL is what to give
/// [`RampnowAuthLayer::pin_origins`](crate::RampnowAuthLayer::pin_origins).
///
/// It parses from (and displays as) `production` or `staging`, case-insensitively, so it
/// can come from configuration; [`from_env`](Self::from_env) reads [`ENVIRONMENT_ENV`].
/// The enum is `#[non_exhaustive]`: Rampnow may add an environment.
///
/// # Example
///
/// ```
/// use rampnow_auth::Environment;
///
/// let env: Environment = "staging".parse()?;
/// assert_eq!(env, Environment::Staging);
/// assert_eq!(env.base_url(), "https://api.sandbox.rampnow.io");
/// assert_eq!(env.requests_per_second(), 15);
/// assert_eq!(Environment::Production.to_string(), "production");
/// # Ok::<(), rampnow_auth::ParseEnvironmentError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Environment {
    /// `https://api.rampnow.io`, 20 requests a second per IP.
    Production,
    /// `https://api.sandbox.rampnow.io`, 15 requests a second per IP.
    Staging,
}

impl Environment {
    /// The environment's origin, `scheme://host` with no trailing slash: append a path such as
    /// `/api/partner/v1/ext/ramp_order/quote` to it.
    #[must_use]
    pub const fn base_url(self) -> &'static str {
        match self {
            Environment::Production => "https://api.rampnow.io",
            Environment::Staging => "https://api.sandbox.rampnow.io",
        }
    }

    /// How many requests a second Rampnow accepts from one IP address in this environment.
    #[must_use]
    pub const fn requests_per_second(self) -> u32 {
        match self {
            Environment::Production => 20,
            Environment::Staging => 15,
        }
    }

    /// The lower-case name, as [`FromStr`] reads it and [`Display`](fmt::Display) writes it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Environment::Production => "production",
            Environment::Staging => "staging",
        }
    }

    /// The environment named by [`ENVIRONMENT_ENV`] (`RAMPNOW_ENVIRONMENT`), or `None` if the
    /// variable is not set.
    ///
    /// # Errors
    ///
    /// The variable is set to something other than `production` or `staging` (or is not
    /// UTF-8): the error names what was found. There is no default on a typo, so a client
    /// meant for staging never reaches production by mistake.
    ///
    /// # Example
    ///
    /// ```
    /// use rampnow_auth::Environment;
    ///
    /// let env = Environment::from_env()?.unwrap_or(Environment::Staging);
    /// # let _ = env;
    /// # Ok::<(), rampnow_auth::ParseEnvironmentError>(())
    /// ```
    pub fn from_env() -> Result<Option<Environment>, ParseEnvironmentError> {
        match std::env::var(ENVIRONMENT_ENV) {
            Ok(value) => value.parse().map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(ParseEnvironmentError {
                found: "(not UTF-8)".to_owned(),
            }),
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Environment {
    type Err = ParseEnvironmentError;

    fn from_str(s: &str) -> Result<Environment, ParseEnvironmentError> {
        let trimmed = s.trim();
        [Environment::Production, Environment::Staging]
            .into_iter()
            .find(|env| env.name().eq_ignore_ascii_case(trimmed))
            .ok_or_else(|| ParseEnvironmentError {
                // Bounded, so a huge value does not make a huge error message.
                found: trimmed.chars().take(40).collect(),
            })
    }
}

/// A name that is not one of Rampnow's environments.
///
/// # Example
///
/// ```
/// let err = "prod".parse::<rampnow_auth::Environment>().unwrap_err();
/// assert!(err.to_string().contains("production"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseEnvironmentError {
    found: String,
}

impl fmt::Display for ParseEnvironmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown Rampnow environment {:?}: use `production` or `staging` (in {ENVIRONMENT_ENV} or the configuration)",
            self.found
        )
    }
}

impl std::error::Error for ParseEnvironmentError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for env in [Environment::Production, Environment::Staging] {
            assert_eq!(env.to_string().parse::<Environment>(), Ok(env));
            assert_eq!(
                env.name().to_uppercase().parse::<Environment>(),
                Ok(env),
                "case-insensitive"
            );
        }
    }

    #[test]
    fn documented_values() {
        assert_eq!(Environment::Production.base_url(), "https://api.rampnow.io");
        assert_eq!(Environment::Production.requests_per_second(), 20);
        assert_eq!(
            Environment::Staging.base_url(),
            "https://api.sandbox.rampnow.io"
        );
        assert_eq!(Environment::Staging.requests_per_second(), 15);
    }

    #[test]
    fn unknown_names_are_refused_with_a_bounded_message() {
        for bad in ["", "prod", "sandbox", "productions"] {
            assert!(bad.parse::<Environment>().is_err(), "{bad}");
        }
        let long = "x".repeat(10_000);
        let err = long.parse::<Environment>().unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
    }
}
