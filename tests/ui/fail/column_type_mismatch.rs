use diesel::prelude::*;
use rest_live::prelude::*;
use serde::{Deserialize, Serialize};

diesel::table! {
    tasks (id) {
        id -> Integer,
        text -> Text,
        done -> Bool,
    }
}

#[resource(stream = "tasks")]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
#[diesel(table_name = tasks)]
pub struct Task {
    #[resource(read_only)]
    pub id: i32,
    pub text: String,
    pub done: String,
}

fn main() {}
