//! `Credentials::from_env`, alone in its test binary so that nothing else reads the
//! environment while it changes it.

use rampnow_auth::{Credentials, ErrorKind, API_KEY_ENV, API_SECRET_ENV};

#[test]
fn from_env_reads_both_variables_and_names_the_missing_one() {
    std::env::remove_var(API_KEY_ENV);
    std::env::remove_var(API_SECRET_ENV);
    let err = Credentials::from_env().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials);
    assert!(
        err.to_string().contains("RAMPNOW_API_KEY is not set"),
        "{err}"
    );

    std::env::set_var(API_KEY_ENV, "ak_live_3f9a1c");
    let err = Credentials::from_env().unwrap_err();
    assert!(
        err.to_string().contains("RAMPNOW_API_SECRET is not set"),
        "{err}"
    );

    std::env::set_var(API_SECRET_ENV, "pk_live_from_env");
    let credentials = Credentials::from_env().unwrap();
    assert_eq!(credentials.api_key(), "ak_live_3f9a1c");
    assert!(!format!("{credentials:?}").contains("pk_live_from_env"));

    std::env::set_var(API_SECRET_ENV, "pk_live_from_env\n");
    let err = Credentials::from_env().unwrap_err();
    assert!(err.to_string().contains("white space"), "{err}");
}
