//! Issue 16, point 1: what a policy's `present()` hides is hidden everywhere an object goes out,
//! with nothing else declared. Memos have a `secret` that only admins are shown; their policy
//! implements `present()` and nothing more (no `PRESENTS`, the default audience). Carol (admin)
//! and alice (user) read the same memos; alice must never receive a `secret`: not in HTTP replies,
//! WebSocket replies, events, snapshots or `since` replays, in either wire format, and not when
//! carol subscribed first (which once made alice share carol's encoding of every event).
//!
//! Every scenario runs twice: on `memos`, and on `legacy_memos`, whose policy still sets the
//! retired `PRESENTS = true` (it must change nothing).

use std::time::Duration;

use diesel::prelude::*;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use rest_live::prelude::*;
use rest_live::testing::{RECV_TIMEOUT, Received, TestServer, WsClient};
use rest_live::{AppBuilder, TokenStore};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

const QUIET: Duration = Duration::from_millis(300);

const SQLITE: EmbeddedMigrations =
    embed_migrations!("tests/fixtures/presentation-migrations/sqlite");
const POSTGRES: EmbeddedMigrations =
    embed_migrations!("tests/fixtures/presentation-migrations/postgres");

diesel::table! {
    memos (id) {
        id -> Integer,
        board -> Integer,
        body -> Text,
        secret -> Text,
    }
}

/// A memo on a board; everyone reads every memo, only admins are shown its `secret`.
#[resource(stream = "memos", permissions = SecretForAdmins, label = "presentation.Memo")]
#[subscribable]
#[subscribable(group_key = "board")]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[diesel(table_name = memos)]
pub struct Memo {
    #[resource(read_only)]
    pub id: i32,
    pub board: i32,
    pub body: String,
    pub secret: String,
}

/// Only `present()`: the whole declaration the issue asks to be enough.
pub struct SecretForAdmins;

impl Permissions<Memo> for SecretForAdmins {
    fn present(principal: &Principal, object: &mut Map<String, Value>) {
        if !principal.has_role("admin") {
            object.remove("secret");
        }
    }
}

/// The same with the declaration that was needed before: `PRESENTS = true`, default audience.
mod legacy {
    #![allow(deprecated)]

    use diesel::prelude::*;
    use rest_live::prelude::*;
    use serde::{Deserialize, Serialize};
    use serde_json::{Map, Value};

    diesel::table! {
        legacy_memos (id) {
            id -> Integer,
            board -> Integer,
            body -> Text,
            secret -> Text,
        }
    }

    #[resource(
        stream = "legacy_memos",
        permissions = LegacyPolicy,
        label = "presentation.LegacyMemo"
    )]
    #[subscribable]
    #[subscribable(group_key = "board")]
    #[derive(Queryable, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[diesel(table_name = legacy_memos)]
    pub struct LegacyMemo {
        #[resource(read_only)]
        pub id: i32,
        pub board: i32,
        pub body: String,
        pub secret: String,
    }

    pub struct LegacyPolicy;

    impl Permissions<LegacyMemo> for LegacyPolicy {
        const PRESENTS: bool = true;

        fn present(principal: &Principal, object: &mut Map<String, Value>) {
            if !principal.has_role("admin") {
                object.remove("secret");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The app, the principals, the two resources
// ---------------------------------------------------------------------------------------------

/// Which of the two resources a scenario runs on.
#[derive(Clone, Copy, Debug)]
struct Kind {
    stream: &'static str,
    /// The model label of the django-rest-live format.
    label: &'static str,
}

const MEMOS: Kind = Kind {
    stream: "memos",
    label: "presentation.Memo",
};

const LEGACY: Kind = Kind {
    stream: "legacy_memos",
    label: "presentation.LegacyMemo",
};

impl Kind {
    fn collection(self) -> String {
        format!("/api/{}/", self.stream)
    }

    fn item(self, pk: &Value) -> String {
        format!("/api/{}/{pk}/", self.stream)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    /// An admin: shown `secret`.
    Carol,
    /// A user: not shown `secret`.
    Alice,
}

impl Who {
    fn token(self) -> &'static str {
        match self {
            Who::Carol => "carol-token",
            Who::Alice => "alice-token",
        }
    }

    /// `memo` as this principal must receive it.
    fn sees(self, memo: &Value) -> Value {
        let mut memo = memo.clone();
        if self == Who::Alice
            && let Some(map) = memo.as_object_mut()
        {
            map.remove("secret");
        }
        memo
    }
}

fn builder() -> AppBuilder {
    let tokens = TokenStore::new();
    tokens.insert(Who::Carol.token(), Principal::user("carol", ["admin"]));
    tokens.insert(Who::Alice.token(), Principal::user("alice", ["user"]));
    App::builder()
        .sqlite_migrations(SQLITE)
        .postgres_migrations(POSTGRES)
        .authenticator(tokens)
        .throttle(false)
}

async fn server() -> TestServer {
    TestServer::start(builder()).await
}

/// A memo as stored (what carol is shown) for these inputs.
fn memo(id: &Value, board: i64, body: &str, secret: &str) -> Value {
    json!({"id": id, "board": board, "body": body, "secret": secret})
}

async fn create(server: &TestServer, kind: Kind, who: Who, board: i64, body: &str) -> Value {
    let data = json!({"board": board, "body": body, "secret": format!("{body}-secret")});
    let r = server
        .client_as(who.token())
        .post(&kind.collection(), data)
        .await;
    r.expect(201)
}

/// The stored memo (carol's view) of `pk`.
async fn stored(server: &TestServer, kind: Kind, pk: &Value) -> Value {
    let r = server
        .client_as(Who::Carol.token())
        .get(&kind.item(pk))
        .await;
    r.expect(200)
}

async fn patch(server: &TestServer, kind: Kind, who: Who, pk: &Value, data: Value) -> Value {
    let r = server
        .client_as(who.token())
        .patch(&kind.item(pk), data)
        .await;
    r.expect(200)
}

async fn delete(server: &TestServer, kind: Kind, pk: &Value) {
    let r = server
        .client_as(Who::Carol.token())
        .delete(&kind.item(pk))
        .await;
    assert_eq!(r.status, 204, "{r}");
}

// ---------------------------------------------------------------------------------------------
// HTTP and WebSocket replies
// ---------------------------------------------------------------------------------------------

async fn replies_are_presented(kind: Kind) {
    let server = server().await;

    // Create replies: as the creator is shown the memo.
    let by_carol = create(&server, kind, Who::Carol, 1, "c").await;
    let c = memo(&by_carol["id"], 1, "c", "c-secret");
    assert_eq!(by_carol, c);
    let by_alice = create(&server, kind, Who::Alice, 1, "a").await;
    let a = memo(&by_alice["id"], 1, "a", "a-secret");
    assert_eq!(by_alice, Who::Alice.sees(&a));
    assert_eq!(
        stored(&server, kind, &a["id"]).await,
        a,
        "the secret is stored"
    );

    for who in [Who::Carol, Who::Alice] {
        let http = server.client_as(who.token());
        for object in [&c, &a] {
            let r = http.get(&kind.item(&object["id"])).await;
            assert_eq!(r.expect(200), who.sees(object), "{who:?} retrieves");
        }
        let list = http.get(&kind.collection()).await.expect(200);
        assert_eq!(
            list["results"],
            json!([who.sees(&c), who.sees(&a)]),
            "{who:?} lists"
        );

        // The same over the socket.
        let mut ws = server.ws_as(who.token()).await;
        for object in [&c, &a] {
            let pk = json!({"pk": object["id"]});
            let r = ws.call(kind.stream, "retrieve", pk).await;
            assert_eq!(r.expect(200), who.sees(object), "{who:?} retrieves over ws");
        }
        let r = ws.call(kind.stream, "list", json!({})).await;
        assert_eq!(
            r.expect(200)["results"],
            json!([who.sees(&c), who.sees(&a)]),
            "{who:?} lists over ws"
        );
    }
    for who in [Who::Carol, Who::Alice] {
        let mut ws = server.ws_as(who.token()).await;
        let data = json!({"board": 2, "body": "w", "secret": "w-secret"});
        let created = ws.call(kind.stream, "create", json!({"data": data})).await;
        let created = created.expect(201);
        let w = memo(&created["id"], 2, "w", "w-secret");
        assert_eq!(created, who.sees(&w), "{who:?} creates over ws");
    }

    // Update replies.
    let patched = patch(&server, kind, Who::Alice, &c["id"], json!({"body": "c2"})).await;
    let c2 = memo(&c["id"], 1, "c2", "c-secret");
    assert_eq!(patched, Who::Alice.sees(&c2));
    let patched = patch(&server, kind, Who::Carol, &c["id"], json!({"body": "c3"})).await;
    assert_eq!(patched, memo(&c["id"], 1, "c3", "c-secret"));
}

#[tokio::test]
async fn http_and_websocket_replies_are_presented_to_each_principal() {
    replies_are_presented(MEMOS).await;
}

#[tokio::test]
async fn http_and_websocket_replies_are_presented_with_the_retired_constant_too() {
    replies_are_presented(LEGACY).await;
}

// ---------------------------------------------------------------------------------------------
// Events, snapshots and replays: the main endpoint
// ---------------------------------------------------------------------------------------------

/// Subscribes to board `board` with `extra` options (`since`, `snapshot`); returns the reply's
/// data.
async fn subscribe_board(
    ws: &mut WsClient,
    kind: Kind,
    request_id: &str,
    board: i64,
    extra: Value,
) -> Value {
    let mut args = json!({"request_id": request_id, "group": {"board": board}});
    if let (Some(args), Some(extra)) = (args.as_object_mut(), extra.as_object()) {
        args.extend(extra.clone());
    }
    ws.call(kind.stream, "subscribe", args).await.expect(201)
}

/// `(request_id, action, data)` of the next event, which must be on `kind`'s stream.
async fn next_event(ws: &mut WsClient, kind: Kind) -> (String, String, Value) {
    let event = ws.recv_event().await;
    assert_eq!(event["stream"], kind.stream, "{event}");
    let p = &event["payload"];
    (
        p["request_id"].as_str().expect("request_id").to_owned(),
        p["action"].as_str().expect("action").to_owned(),
        p["data"].clone(),
    )
}

/// The next `n` events, ordered by request_id (one change reaches a socket's subscriptions in no
/// promised order).
async fn next_events(ws: &mut WsClient, kind: Kind, n: usize) -> Vec<(String, String, Value)> {
    let mut events = Vec::new();
    for _ in 0..n {
        events.push(next_event(ws, kind).await);
    }
    events.sort_by(|a, b| a.0.cmp(&b.0));
    events
}

fn event(request_id: &str, action: &str, data: Value) -> (String, String, Value) {
    (request_id.to_owned(), action.to_owned(), data)
}

async fn events_are_presented(kind: Kind) {
    let server = server().await;
    let existing = create(&server, kind, Who::Carol, 1, "old").await;
    let pk = existing["id"].clone();

    // Carol first: her audience exists before alice's.
    let mut sockets = Vec::new();
    for who in [Who::Carol, Who::Alice] {
        let mut ws = server.ws_as(who.token()).await;
        subscribe_board(&mut ws, kind, "g", 1, json!({})).await;
        let args = json!({"request_id": "i", "pk": pk});
        ws.call(kind.stream, "subscribe_instance", args)
            .await
            .expect(201);
        sockets.push((who, ws));
    }

    let created = create(&server, kind, Who::Carol, 1, "new").await;
    let new = memo(&created["id"], 1, "new", "new-secret");
    for (who, ws) in &mut sockets {
        assert_eq!(
            next_event(ws, kind).await,
            event("g", "create", who.sees(&new)),
            "{who:?}"
        );
    }

    let patched = patch(&server, kind, Who::Carol, &pk, json!({"body": "old2"})).await;
    let old2 = memo(&pk, 1, "old2", "old-secret");
    assert_eq!(patched, old2);
    for (who, ws) in &mut sockets {
        assert_eq!(
            next_events(ws, kind, 2).await,
            vec![
                event("g", "update", who.sees(&old2)),
                event("i", "update", who.sees(&old2)),
            ],
            "{who:?}"
        );
    }

    // Written by alice this time: the events do not depend on who wrote.
    patch(&server, kind, Who::Alice, &pk, json!({"body": "old3"})).await;
    let old3 = memo(&pk, 1, "old3", "old-secret");
    for (who, ws) in &mut sockets {
        assert_eq!(
            next_events(ws, kind, 2).await,
            vec![
                event("g", "update", who.sees(&old3)),
                event("i", "update", who.sees(&old3)),
            ],
            "{who:?}"
        );
    }

    delete(&server, kind, &pk).await;
    for (who, ws) in &mut sockets {
        assert_eq!(
            next_events(ws, kind, 2).await,
            vec![
                event("g", "delete", json!({"pk": pk})),
                event("i", "delete", json!({"pk": pk})),
            ],
            "{who:?}"
        );
        ws.expect_silence(QUIET).await;
    }
}

#[tokio::test]
async fn events_are_presented_to_each_principal_whoever_subscribed_first() {
    events_are_presented(MEMOS).await;
}

#[tokio::test]
async fn events_are_presented_with_the_retired_constant_too() {
    events_are_presented(LEGACY).await;
}

async fn snapshots_are_presented(kind: Kind) {
    let server = server().await;
    let one = create(&server, kind, Who::Carol, 1, "one").await;
    let two = create(&server, kind, Who::Alice, 1, "two").await;
    create(&server, kind, Who::Carol, 2, "elsewhere").await;
    let one = memo(&one["id"], 1, "one", "one-secret");
    let two = stored(&server, kind, &two["id"]).await;
    assert_eq!(two["secret"], "two-secret");

    let mut sockets = Vec::new();
    for who in [Who::Carol, Who::Alice] {
        let mut ws = server.ws_as(who.token()).await;
        let reply = subscribe_board(&mut ws, kind, "s", 1, json!({"snapshot": true})).await;
        assert_eq!(
            reply["results"],
            json!([who.sees(&one), who.sees(&two)]),
            "{who:?}'s snapshot"
        );
        sockets.push((who, ws));
    }

    // And live from there.
    let created = create(&server, kind, Who::Alice, 1, "three").await;
    let three = memo(&created["id"], 1, "three", "three-secret");
    for (who, ws) in &mut sockets {
        assert_eq!(
            next_event(ws, kind).await,
            event("s", "create", who.sees(&three)),
            "{who:?}"
        );
        ws.expect_silence(QUIET).await;
    }
}

#[tokio::test]
async fn snapshots_are_presented_to_each_principal() {
    snapshots_are_presented(MEMOS).await;
}

#[tokio::test]
async fn snapshots_are_presented_with_the_retired_constant_too() {
    snapshots_are_presented(LEGACY).await;
}

async fn replays_are_presented(kind: Kind) {
    let server = server().await;
    let existing = create(&server, kind, Who::Carol, 1, "kept").await;
    let pk = existing["id"].clone();

    // Both subscribe (carol first) and go away.
    let mut since = Vec::new();
    for who in [Who::Carol, Who::Alice] {
        let mut ws = server.ws_as(who.token()).await;
        let reply = subscribe_board(&mut ws, kind, "g", 1, json!({})).await;
        since.push(reply["seq"].clone());
    }
    assert_eq!(since[0], since[1]);

    // Missed meanwhile: a create, an update, a change elsewhere, a delete.
    let created = create(&server, kind, Who::Carol, 1, "missed").await;
    let missed = memo(&created["id"], 1, "missed", "missed-secret");
    patch(&server, kind, Who::Alice, &pk, json!({"body": "kept2"})).await;
    let kept2 = memo(&pk, 1, "kept2", "kept-secret");
    create(&server, kind, Who::Carol, 2, "elsewhere").await;
    delete(&server, kind, &missed["id"]).await;

    let mut sockets = Vec::new();
    for who in [Who::Carol, Who::Alice] {
        let mut ws = server.ws_as(who.token()).await;
        let extra = json!({"since": since[0]});
        subscribe_board(&mut ws, kind, "g", 1, extra).await;
        sockets.push((who, ws));
    }
    for (who, ws) in &mut sockets {
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(next_event(ws, kind).await);
        }
        assert_eq!(
            got,
            vec![
                event("g", "create", who.sees(&missed)),
                event("g", "update", who.sees(&kept2)),
                event("g", "delete", json!({"pk": missed["id"]})),
            ],
            "{who:?}'s replay"
        );
        ws.expect_silence(QUIET).await;
    }

    // And live from there.
    patch(&server, kind, Who::Carol, &pk, json!({"body": "kept3"})).await;
    let kept3 = memo(&pk, 1, "kept3", "kept-secret");
    for (who, ws) in &mut sockets {
        assert_eq!(
            next_event(ws, kind).await,
            event("g", "update", who.sees(&kept3)),
            "{who:?}"
        );
    }
}

#[tokio::test]
async fn since_replays_are_presented_to_each_principal() {
    replays_are_presented(MEMOS).await;
}

#[tokio::test]
async fn since_replays_are_presented_with_the_retired_constant_too() {
    replays_are_presented(LEGACY).await;
}

// ---------------------------------------------------------------------------------------------
// Events: the django-rest-live endpoint
// ---------------------------------------------------------------------------------------------

async fn drl_as(server: &TestServer, who: Who) -> WsClient {
    let path = server.app.config().drl_path.clone().expect("drl endpoint");
    let url = format!("ws://{}{}", server.addr, path);
    let auth = format!("Bearer {}", who.token());
    WsClient::connect_with(&url, &[("authorization", auth.as_str())])
        .await
        .unwrap_or_else(|status| panic!("handshake refused with HTTP {status}"))
}

/// The next frame (this format has no envelope that tells replies from events).
async fn drl_next(ws: &mut WsClient) -> Value {
    match ws.recv_any(RECV_TIMEOUT).await {
        Some(Received::Reply(frame) | Received::Event(frame)) => frame,
        other => panic!("expected a frame, got {other:?}"),
    }
}

fn drl_event(kind: Kind, action: &str, payload: Value) -> Value {
    json!({"model": kind.label, "action": action, "payload": payload})
}

async fn drl_events_are_presented(kind: Kind) {
    let server = server().await;
    let existing = create(&server, kind, Who::Carol, 1, "old").await;
    let pk = existing["id"].clone();

    // Carol first, following board 1; then alice. Each also follows the existing memo, on a
    // socket of its own (one change reaches a socket's subscriptions in no promised order).
    let mut boards = Vec::new();
    let mut instances = Vec::new();
    for who in [Who::Carol, Who::Alice] {
        let mut ws = drl_as(&server, who).await;
        ws.send(json!({"model": kind.label, "board": 1, "request_id": 1}))
            .await;
        assert_eq!(
            drl_next(&mut ws).await,
            json!({"model": kind.label, "request_id": 1, "status": 201})
        );
        boards.push((who, ws));
        let mut ws = drl_as(&server, who).await;
        ws.send(json!({"model": kind.label, "pk": pk, "request_id": 2}))
            .await;
        assert_eq!(
            drl_next(&mut ws).await,
            json!({"model": kind.label, "request_id": 2, "status": 201})
        );
        instances.push((who, ws));
    }

    let created = create(&server, kind, Who::Carol, 1, "new").await;
    let new = memo(&created["id"], 1, "new", "new-secret");
    for (who, ws) in &mut boards {
        assert_eq!(
            drl_next(ws).await,
            drl_event(kind, "CREATED", who.sees(&new)),
            "{who:?}"
        );
    }

    patch(&server, kind, Who::Alice, &pk, json!({"body": "old2"})).await;
    let old2 = memo(&pk, 1, "old2", "old-secret");
    for (who, ws) in boards.iter_mut().chain(instances.iter_mut()) {
        assert_eq!(
            drl_next(ws).await,
            drl_event(kind, "UPDATED", who.sees(&old2)),
            "{who:?}"
        );
    }

    // A deletion carries the object as the subscriber last saw it: presented too.
    delete(&server, kind, &pk).await;
    for (who, ws) in boards.iter_mut().chain(instances.iter_mut()) {
        assert_eq!(
            drl_next(ws).await,
            drl_event(kind, "DELETED", who.sees(&old2)),
            "{who:?}"
        );
        ws.expect_silence(QUIET).await;
    }

    // A move out of the board is a deletion for its followers, with the object.
    let moved = create(&server, kind, Who::Carol, 1, "moving").await;
    let moving = memo(&moved["id"], 1, "moving", "moving-secret");
    for (who, ws) in &mut boards {
        assert_eq!(
            drl_next(ws).await,
            drl_event(kind, "CREATED", who.sees(&moving)),
            "{who:?}"
        );
    }
    patch(
        &server,
        kind,
        Who::Carol,
        &moving["id"],
        json!({"board": 2}),
    )
    .await;
    for (who, ws) in &mut boards {
        assert_eq!(
            drl_next(ws).await,
            drl_event(kind, "DELETED", who.sees(&moving)),
            "{who:?}"
        );
        ws.expect_silence(QUIET).await;
    }
}

#[tokio::test]
async fn drl_events_are_presented_to_each_principal_whoever_subscribed_first() {
    drl_events_are_presented(MEMOS).await;
}

#[tokio::test]
async fn drl_events_are_presented_with_the_retired_constant_too() {
    drl_events_are_presented(LEGACY).await;
}
