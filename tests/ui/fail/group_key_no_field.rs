use diesel::prelude::*;
use rest_live::prelude::*;
use serde::{Deserialize, Serialize};

diesel::table! {
    notes (id) {
        id -> Integer,
        body -> Text,
    }
}

#[resource(stream = "notes")]
#[subscribable(group_key = "owner_id")]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
#[diesel(table_name = notes)]
pub struct Note {
    #[resource(read_only)]
    pub id: i32,
    pub body: String,
}

fn main() {}
