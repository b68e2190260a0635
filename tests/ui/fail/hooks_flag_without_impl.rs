use diesel::prelude::*;
use rest_live::prelude::*;
use serde::{Deserialize, Serialize};

diesel::table! {
    notes (id) {
        id -> Integer,
        body -> Text,
    }
}

// The flag is optional, but it must not say what is not so.
#[resource(stream = "notes", hooks)]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
#[diesel(table_name = notes)]
pub struct Note {
    #[resource(read_only)]
    pub id: i32,
    pub body: String,
}

fn main() {}
