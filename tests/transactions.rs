//! `App::transaction`: writes commit together and their events follow the commit; a rollback sends
//! nothing and stores nothing.

mod common;

use std::time::Duration;

use common::models::{List, Task};
use rest_live::{ApiError, FieldErrors};
use serde_json::json;

#[tokio::test]
async fn a_transaction_commits_together_and_events_follow_in_order() {
    let server = common::server().await;
    let list = common::create_list(&server, "L").await as i32;
    let mut sub = server.ws().await;
    let reply = sub
        .request(
            json!({"stream": "tasks", "payload": {"action": "subscribe", "request_id": "g",
            "group": {"list_id": list}}}),
        )
        .await;
    assert_eq!(reply["payload"]["response_status"], 201);

    let (a, b) = server
        .app
        .transaction(move |tx| {
            let a = tx.create(Task {
                id: 0,
                text: "a".into(),
                done: false,
                list_id: list,
                owner: None,
                priority: 0,
                note: None,
            })?;
            let b = tx.create(Task {
                id: 0,
                text: "b".into(),
                done: true,
                list_id: list,
                owner: None,
                priority: 0,
                note: None,
            })?;
            Ok((a, b))
        })
        .await
        .expect("commit");
    let first = sub.recv_event().await;
    let second = sub.recv_event().await;
    assert_eq!(first["payload"]["data"]["id"], a.id);
    assert_eq!(second["payload"]["data"]["id"], b.id);
    assert_eq!(
        second["payload"]["seq"].as_i64().unwrap(),
        first["payload"]["seq"].as_i64().unwrap() + 1
    );
}

#[tokio::test]
async fn a_rolled_back_transaction_sends_nothing_and_stores_nothing() {
    let server = common::server().await;
    let list = common::create_list(&server, "L").await as i32;
    let mut sub = server.ws().await;
    sub.request(
        json!({"stream": "tasks", "payload": {"action": "subscribe", "request_id": "g",
        "group": {"list_id": list}}}),
    )
    .await;

    let result: Result<(), ApiError> = server
        .app
        .transaction(move |tx| {
            tx.create(Task {
                id: 0,
                text: "a".into(),
                done: false,
                list_id: list,
                owner: None,
                priority: 0,
                note: None,
            })?;
            tx.create(List {
                id: 0,
                name: "also rolled back".into(),
                owner: None,
            })?;
            Err(FieldErrors::single("text", "changed my mind").into())
        })
        .await;
    assert!(matches!(result, Err(ApiError::Validation(_))));
    sub.expect_silence(Duration::from_millis(300)).await;
    let reply = sub
        .request(json!({"stream": "tasks", "payload": {"action": "list"}}))
        .await;
    assert_eq!(reply["payload"]["data"]["count"], 0);
    let reply = sub
        .request(json!({"stream": "lists", "payload": {"action": "list"}}))
        .await;
    assert_eq!(reply["payload"]["data"]["count"], 1);
}
