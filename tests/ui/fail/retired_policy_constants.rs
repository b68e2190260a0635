//! `PRESENTS` and `OPEN` no longer do anything: a policy that still sets one to `true` gets a
//! deprecation warning at its resource (an error here, under `deny`); `false` is harmless.
#![deny(deprecated)]

use diesel::prelude::*;
use rest_live::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

diesel::table! {
    notes (id) {
        id -> Integer,
        body -> Text,
    }
}

pub struct Legacy;

impl<R> Permissions<R> for Legacy {
    const PRESENTS: bool = true;
    const OPEN: bool = true;

    fn present(principal: &Principal, object: &mut Map<String, Value>) {
        if !principal.has_role("admin") {
            object.remove("body");
        }
    }
}

#[resource(stream = "notes", permissions = Legacy)]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
#[diesel(table_name = notes)]
pub struct Note {
    #[resource(read_only)]
    pub id: i32,
    pub body: String,
}

#[resource(stream = "drafts", permissions)]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
#[diesel(table_name = notes)]
pub struct Draft {
    #[resource(read_only)]
    pub id: i32,
    pub body: String,
}

impl Permissions<Draft> for Draft {
    const PRESENTS: bool = true;
}

pub struct Explicit;

impl<R> Permissions<R> for Explicit {
    const PRESENTS: bool = false;
}

#[resource(stream = "memos", permissions = Explicit)]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
#[diesel(table_name = notes)]
pub struct Memo {
    #[resource(read_only)]
    pub id: i32,
    pub body: String,
}

fn main() {}
