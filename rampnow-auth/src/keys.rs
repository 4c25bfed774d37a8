//! Where the verifier finds the secret for an API key.
//!
//! [`KeyStore`] is implemented for one [`Credentials`], for a `HashMap<String, Credentials>` and
//! a `Vec<Credentials>` (several keys: during a rotation the old and the new key are both
//! accepted until the old one is removed), and for any
//! `Fn(&str) -> Option<Credentials> + Send + Sync + 'static` closure (a database, a
//! `RwLock`-guarded map that can change at run time, ...).
//!
//! # Example
//!
//! ```
//! use std::collections::HashMap;
//! use rampnow_auth::{Credentials, KeyStore};
//!
//! let old = Credentials::new("ak_live_old", "pk_live_old_secret")?;
//! let new = Credentials::new("ak_live_new", "pk_live_new_secret")?;
//! let keys: HashMap<String, Credentials> = [old, new]
//!     .into_iter()
//!     .map(|c| (c.api_key().to_owned(), c))
//!     .collect();
//! assert!(keys.credentials("ak_live_new").is_some());
//! assert!(keys.credentials("ak_live_unknown").is_none());
//! # Ok::<(), rampnow_auth::Error>(())
//! ```

use std::collections::HashMap;
use std::hash::BuildHasher;

use crate::credentials::Credentials;

/// Looks up the credentials (and so the secret) registered for an API key.
pub trait KeyStore: Send + Sync + 'static {
    /// The credentials for `api_key`, or `None` when the key is unknown.
    fn credentials(&self, api_key: &str) -> Option<Credentials>;
}

impl KeyStore for Credentials {
    fn credentials(&self, api_key: &str) -> Option<Credentials> {
        (self.api_key() == api_key).then(|| self.clone())
    }
}

impl<H> KeyStore for HashMap<String, Credentials, H>
where
    H: BuildHasher + Send + Sync + 'static,
{
    fn credentials(&self, api_key: &str) -> Option<Credentials> {
        self.get(api_key).cloned()
    }
}

impl KeyStore for Vec<Credentials> {
    fn credentials(&self, api_key: &str) -> Option<Credentials> {
        self.iter().find(|c| c.api_key() == api_key).cloned()
    }
}

impl<F> KeyStore for F
where
    F: Fn(&str) -> Option<Credentials> + Send + Sync + 'static,
{
    fn credentials(&self, api_key: &str) -> Option<Credentials> {
        self(api_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_store_finds_known_keys_only() {
        let a = Credentials::new("a", "secret-a").unwrap();
        let b = Credentials::new("b", "secret-b").unwrap();
        let map: HashMap<String, Credentials> =
            [("a".to_owned(), a.clone()), ("b".to_owned(), b.clone())].into();
        let list = vec![a.clone(), b.clone()];
        let closure = move |key: &str| (key == "b").then(|| b.clone());
        assert_eq!(a.credentials("a").unwrap().api_key(), "a");
        assert!(a.credentials("b").is_none());
        assert_eq!(map.credentials("b").unwrap().api_key(), "b");
        assert!(map.credentials("c").is_none());
        assert_eq!(list.credentials("b").unwrap().api_key(), "b");
        assert!(list.credentials("").is_none());
        assert_eq!(closure.credentials("b").unwrap().api_key(), "b");
        assert!(closure.credentials("a").is_none());
    }
}
