//! Two resources declaring one stream stop start-up, naming both. In a file of its own: the
//! registrations are global to a test binary, so the pair would break every other test linked
//! with it.

use diesel::prelude::*;
use rest_live::prelude::*;
use serde::{Deserialize, Serialize};

diesel::table! {
    drafts (id) {
        id -> Integer,
        body -> Text,
    }
}

diesel::table! {
    memos (id) {
        id -> Integer,
        body -> Text,
    }
}

#[resource(stream = "notes")]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
#[diesel(table_name = drafts)]
pub struct Draft {
    #[resource(read_only)]
    pub id: i32,
    pub body: String,
}

#[resource(stream = "notes")]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
#[diesel(table_name = memos)]
pub struct Memo {
    #[resource(read_only)]
    pub id: i32,
    pub body: String,
}

#[tokio::test]
async fn a_stream_declared_twice_stops_start_up_naming_both_types() {
    let result = App::builder().database_url("sqlite::memory:").build().await;
    let Err(error) = result else {
        panic!("start-up must fail when two resources share a stream");
    };
    assert!(matches!(error, rest_live::Error::Registry(_)), "{error:?}");
    let message = error.to_string();
    for ty in ["Draft", "Memo"] {
        let path = format!("{}::{ty}", module_path!());
        assert!(message.contains(&path), "{path} missing from: {message}");
    }
    assert!(message.contains("\"notes\""), "{message}");
}
