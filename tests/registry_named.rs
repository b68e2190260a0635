//! The simplest remedy for registrations that vanish: name the crate, even only as `use … as _`,
//! and the linker keeps its resources. Nothing else here mentions `vanish_models`.

use rest_live::App;
use vanish_models as _;

#[tokio::test]
async fn naming_the_crate_keeps_its_resources() {
    let app = App::builder()
        .database_url("sqlite::memory:")
        .expect_streams(["notes"])
        .build()
        .await
        .expect("`use vanish_models as _` links the crate and its `notes` resource");
    // The declared resource, once, beside the built-in stream of job states.
    assert_eq!(app.streams(), ["jobs", "notes"]);
}
