//! Every feature of the attributes at once.

use diesel::prelude::*;
use rest_live::prelude::*;
use serde::{Deserialize, Serialize};

diesel::table! {
    items (item_id) {
        item_id -> Integer,
        title -> Text,
        note -> Nullable<Text>,
        summary -> Nullable<Text>,
        owner_id -> Integer,
        list_id -> Integer,
        done -> Bool,
        priority -> Integer,
        label -> Text,
    }
}

fn default_priority() -> i32 {
    3
}

#[resource(stream = "items", hooks, pk = "item_id")]
#[subscribable]
#[subscribable(group_key = "owner_id")]
#[subscribable(group_key = "list_id")]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
#[diesel(table_name = items)]
pub struct Item {
    #[resource(read_only)]
    pub item_id: i32,
    #[resource(max_length = 80, filter)]
    pub title: String,
    #[resource(max_length = 500)]
    pub note: Option<String>,
    pub summary: Option<String>,
    pub owner_id: i32,
    pub list_id: i32,
    #[serde(default)]
    #[resource(filter)]
    pub done: bool,
    #[serde(default = "default_priority")]
    pub priority: i32,
    #[diesel(column_name = label)]
    pub tag: String,
}

impl Hooks for Item {
    fn before_save(&mut self, _tx: &mut Tx<'_>, _old: Option<&Self>) -> Result<(), ApiError> {
        if self.title.trim().is_empty() {
            return Err(FieldErrors::single("title", "This field may not be blank.").into());
        }
        Ok(())
    }
}

fn main() {
    let meta = <Item as rest_live::Resource>::META;
    assert_eq!(meta.stream, "items");
    assert_eq!(meta.pk, "item_id");
    assert_eq!(meta.group_keys, ["owner_id", "list_id"]);
    assert!(meta.instance_subscribable);
    let field = |name| meta.field(name).expect("declared field");
    assert!(field("item_id").read_only);
    assert!(field("title").filterable);
    assert_eq!(field("title").max_length, Some(80));
    assert_eq!(field("note").max_length, Some(500));
    assert!(field("note").nullable && !field("note").required);
    assert!(!field("done").required && !field("priority").required);
    assert!(field("tag").required);
}
