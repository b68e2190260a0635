//! `#[subscribable]` written above `#[resource]` runs first and must hand itself over.

use diesel::prelude::*;
use rest_live::prelude::*;
use serde::{Deserialize, Serialize};

diesel::table! {
    tasks (id) {
        id -> Integer,
        text -> Text,
        list_id -> Integer,
        owner_id -> Integer,
    }
}

#[subscribable]
#[subscribable(group_key = "list_id")]
#[subscribable(group_key = "owner_id")]
#[resource(stream = "tasks")]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
#[diesel(table_name = tasks)]
pub struct Task {
    #[resource(read_only)]
    pub id: i32,
    pub text: String,
    pub list_id: i32,
    pub owner_id: i32,
}

fn main() {
    let meta = <Task as rest_live::Resource>::META;
    assert!(meta.instance_subscribable);
    // Declaration order, whichever side of `#[resource]` the attributes are written on.
    assert_eq!(meta.group_keys, ["list_id", "owner_id"]);
}
