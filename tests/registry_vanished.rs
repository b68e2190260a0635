//! The failure itself (inventory issue #50): `vanish-models` is a dependency of this binary, but
//! nothing here names it, so it is not linked and its `notes` resource is gone. `expect_streams`
//! turns that into a start-up error instead of a silent 404. (`tests/registry.rs` names the crate
//! through `register`, the other remedy.)

use rest_live::{App, Error};

#[tokio::test]
async fn an_unnamed_crate_loses_its_resources_and_expect_streams_says_so() {
    let result = App::builder()
        .database_url("sqlite::memory:")
        .expect_streams(["notes"])
        .build()
        .await;
    let Err(error) = result else {
        panic!("`notes` is registered although nothing names vanish_models: is it linked now?");
    };
    assert!(matches!(error, Error::Registry(_)), "{error:?}");
    assert!(error.to_string().contains("notes"), "{error}");
}
