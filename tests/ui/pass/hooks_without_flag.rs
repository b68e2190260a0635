//! `impl Hooks` without the `hooks` flag: the generated code finds the impl (it was a
//! conflicting-impl error), and a resource without one gets no hooks.

use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::prelude::*;
use rest_live::prelude::*;
use rest_live::Resource;
use serde::{Deserialize, Serialize};

diesel::table! {
    notes (id) {
        id -> Integer,
        body -> Text,
    }
}

static SAVED: AtomicUsize = AtomicUsize::new(0);

#[resource(stream = "notes")]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
#[diesel(table_name = notes)]
pub struct Note {
    #[resource(read_only)]
    pub id: i32,
    pub body: String,
}

impl Hooks for Note {
    fn after_save(&self, _created: bool) {
        SAVED.fetch_add(1, Ordering::SeqCst);
    }
}

#[resource(stream = "plain_notes")]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
#[diesel(table_name = notes)]
pub struct PlainNote {
    #[resource(read_only)]
    pub id: i32,
    pub body: String,
}

fn main() {
    let note = Note { id: 1, body: "a".into() };
    note.hook_after_save(true);
    assert_eq!(SAVED.load(Ordering::SeqCst), 1, "the user's after_save runs");
    let plain = PlainNote { id: 1, body: "a".into() };
    plain.hook_after_save(true);
    assert_eq!(SAVED.load(Ordering::SeqCst), 1, "no hooks for a type without an impl");
}
