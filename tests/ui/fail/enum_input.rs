use rest_live::prelude::*;
use serde::{Deserialize, Serialize};

#[resource(stream = "notes")]
#[derive(Serialize, Deserialize, Clone, Debug)]
pub enum Note {
    Draft { id: i32, body: String },
    Published { id: i32, body: String },
}

fn main() {}
