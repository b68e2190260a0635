use diesel::prelude::*;
use rest_live::prelude::*;
use serde::{Deserialize, Serialize};

diesel::table! {
    notes (id) {
        id -> Integer,
        body -> Text,
    }
}

#[subscribable]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
#[diesel(table_name = notes)]
pub struct Note {
    pub id: i32,
    pub body: String,
}

fn main() {}
