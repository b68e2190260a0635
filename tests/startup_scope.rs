//! A policy whose scope names a field that is not filterable stops start-up, naming the resource,
//! the field and the fix (issue 16; it was a 500 at the first list). In a file of its own: the
//! registrations are global to a test binary, so this resource stops every app built in it.

use diesel::prelude::*;
use rest_live::prelude::*;
use rest_live::{Error, Principal};
use serde::{Deserialize, Serialize};

diesel::table! {
    memos (id) {
        id -> Integer,
        body -> Text,
        author -> Nullable<Text>,
        pinned -> Bool,
    }
}

/// Each reads what they wrote, but `author` is not `#[resource(filter)]`.
pub struct ByAuthor;

impl Permissions<Memo> for ByAuthor {
    fn scope(principal: &Principal) -> Scope {
        Scope::field_equals("author", principal.id.clone())
    }
}

#[resource(stream = "memos", permissions = ByAuthor)]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
#[diesel(table_name = memos)]
pub struct Memo {
    #[resource(read_only)]
    pub id: i32,
    pub body: String,
    #[resource(read_only)]
    pub author: Option<String>,
    #[serde(default)]
    pub pinned: bool,
}

/// A scope on a filterable field, and one that panics for a principal a probe makes up: neither
/// is reported.
pub struct PinnedOnly;

impl Permissions<Pinned> for PinnedOnly {
    fn scope(principal: &Principal) -> Scope {
        match &principal.id {
            Some(id) if id.parse::<u64>().is_err() => panic!("this app's ids are numbers"),
            _ => Scope::field_equals("pinned", true),
        }
    }
}

#[resource(stream = "pinned", permissions = PinnedOnly)]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
#[diesel(table_name = memos)]
pub struct Pinned {
    #[resource(read_only)]
    pub id: i32,
    pub body: String,
    #[resource(read_only)]
    pub author: Option<String>,
    #[resource(filter)]
    #[serde(default)]
    pub pinned: bool,
}

#[tokio::test]
async fn a_scope_on_a_field_that_is_not_filterable_stops_start_up_naming_it_and_the_fix() {
    let result = App::builder().database_url("sqlite::memory:").build().await;
    let Err(error) = result else {
        panic!("start-up must fail: the scope of `memos` names `author`, which is not filterable");
    };
    assert!(matches!(error, Error::Registry(_)), "{error:?}");
    let message = error.to_string();
    for part in [
        "resource \"memos\"",
        "startup_scope::Memo",
        "`author`",
        "not filterable",
        "#[resource(filter)]",
    ] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    // The filterable scope passes, and its scope() panicking for a made-up user is no verdict.
    assert!(!message.contains("\"pinned\""), "{message}");
    assert!(
        !message.contains('\n'),
        "one problem, one paragraph: {message}"
    );
}
