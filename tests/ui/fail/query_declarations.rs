// Every lookup, `order` and `ordering` that does not fit the field is refused, spanned on the
// offending token, all in one compile.
use diesel::prelude::*;
use rest_live::prelude::*;
use serde::{Deserialize, Serialize};

diesel::table! {
    notes (id) {
        id -> Integer,
        body -> Text,
        done -> Bool,
        due -> Nullable<Integer>,
        rank -> Integer,
    }
}

type Rank = i32;

#[resource(stream = "notes", ordering = "-due,missing,body")]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
#[diesel(table_name = notes)]
pub struct Note {
    #[resource(read_only, filter(icontains))]
    pub id: i32,
    #[resource(filter(exact, regex, exact))]
    pub body: String,
    #[resource(filter(lt), order)]
    pub done: bool,
    #[resource(filter(isnull), order)]
    pub due: Option<i32>,
    #[resource(filter(gte, isnull), order)]
    pub rank: Rank,
}

fn main() {}
