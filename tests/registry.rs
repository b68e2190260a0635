//! The remedies for registrations that vanish (inventory issue #50): a binary that never names the
//! crate declaring a resource does not link it, and its `inventory` registration is gone. This
//! binary names `vanish_models` only through the remedies themselves.

use rest_live::{App, Error};

#[tokio::test]
async fn explicit_registration_recovers_a_vanished_crate() {
    // Naming the type links the crate: its inventory registration now comes too, and each explicit
    // one on top of it must count once, not as a stream declared twice.
    let app = App::builder()
        .database_url("sqlite::memory:")
        .sqlite_migrations(vanish_models::MIGRATIONS)
        .register::<vanish_models::Note>()
        .register::<vanish_models::Note>()
        .expect_streams(["notes"])
        .build()
        .await
        .expect("the explicitly registered resource starts");

    let notes = app.resource("notes").expect("stream `notes` registered");
    assert!(notes.type_name.ends_with("::Note"), "{}", notes.type_name);
    // The declared resource, once, beside the built-in stream of job states.
    assert_eq!(app.streams(), ["jobs", "notes"]);

    // And it is usable, not only listed.
    let stored = app
        .transaction(|tx| {
            tx.create(vanish_models::Note {
                id: 0,
                body: "kept".into(),
            })
        })
        .await
        .expect("create through the registered resource");
    assert_eq!(stored.body, "kept");
    assert!(stored.id > 0);
}

#[tokio::test]
async fn expect_streams_fails_loudly() {
    let result = App::builder()
        .database_url("sqlite::memory:")
        .expect_streams(["nope"])
        .build()
        .await;
    let Err(error) = result else {
        panic!("start-up must fail when an expected stream is missing");
    };
    assert!(matches!(error, Error::Registry(_)), "{error:?}");
    assert!(error.to_string().contains("nope"), "{error}");
}
