//! The OpenAPI document of the HTTP API, as served (tests/openapi/run validates it and runs
//! schemathesis against the example; here: what it must say, from the registered resources).

mod common;

use rest_live::testing::TestServer;
use serde_json::{Value, json};

async fn document(server: &TestServer) -> Value {
    let response = server
        .http()
        .get(server.url("/api/openapi.json"))
        .send()
        .await
        .expect("GET /api/openapi.json");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    serde_json::from_str(&response.text().await.expect("body")).expect("JSON")
}

#[tokio::test]
async fn the_document_describes_every_resource_from_its_fields() {
    let server = common::server().await;
    let doc = document(&server).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let schemas = &doc["components"]["schemas"];

    let task = &schemas["Task"];
    assert_eq!(task["title"], "todolist.Task");
    assert_eq!(task["properties"]["id"]["readOnly"], true);
    assert_eq!(
        task["properties"]["text"],
        json!({"type": "string", "maxLength": 140})
    );
    assert_eq!(
        task["properties"]["owner"]["type"],
        json!(["string", "null"])
    );
    // The policy may hide fields (owner is shown to admins only): only the pk is certain.
    assert_eq!(task["required"], json!(["id"]));

    let input = &schemas["TaskInput"];
    assert_eq!(input["required"], json!(["text", "list_id"]));
    assert_eq!(input["additionalProperties"], false);
    assert_eq!(input["properties"]["id"]["readOnly"], true);
    assert_eq!(schemas["TaskPatch"]["required"], json!([]));
    assert_eq!(
        schemas["TaskPage"]["required"],
        json!(["count", "results", "limit", "offset", "next"])
    );

    let paths = &doc["paths"];
    let list = &paths["/api/tasks/"]["get"];
    let params: Vec<&str> = list["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        params,
        [
            "limit",
            "offset",
            "after",
            "ordering",
            "id",
            "id__in",
            "id__lt",
            "id__lte",
            "id__gt",
            "id__gte",
            "text",
            "text__iexact",
            "text__contains",
            "text__icontains",
            "text__startswith",
            "text__istartswith",
            "done",
            "done__ne",
            "list_id",
            "list_id__ne",
            "list_id__in",
            "owner",
            "owner__isnull",
            "priority",
            "priority__ne",
            "priority__in",
            "priority__lt",
            "priority__lte",
            "priority__gt",
            "priority__gte",
            "note",
            "note__isnull",
            "note__contains",
            "note__icontains"
        ]
    );
    let create = &paths["/api/tasks/"]["post"]["responses"];
    assert_eq!(create["201"]["headers"]["Location"]["required"], true);
    assert_eq!(create["409"]["$ref"], "#/components/responses/Conflict");
    let object = &paths["/api/tasks/{id}/"];
    assert_eq!(object["parameters"][0]["schema"]["type"], "integer");
    for method in ["get", "put", "patch", "delete"] {
        assert!(object[method]["responses"]["404"].is_object(), "{method}");
    }
    assert!(object["delete"]["responses"]["204"].is_object());
    assert_eq!(
        doc["components"]["responses"]["NotFound"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Errors"
    );
    // No authenticator: no security requirement.
    assert!(doc.get("security").is_none());

    // The example's jobs and the job state resource.
    assert!(paths["/api/tasks/archive_done/"]["post"]["responses"]["202"].is_object());
    assert!(paths["/api/lists/{id}/archive_done/"]["post"].is_object());
    assert!(paths["/api/jobs/{id}/"]["delete"]["responses"]["410"].is_object());
    assert!(paths["/api/jobs/{id}/result/"]["get"].is_object());
    // The job state stream is not a CRUD resource.
    assert!(paths.get("/api/jobs/").is_none());

    // The example's custom actions: their doc comments, arguments and results.
    let complete = &paths["/api/tasks/{id}/complete/"]["post"];
    assert_eq!(complete["operationId"], "complete_tasks");
    assert_eq!(
        complete["summary"],
        "Marks the task done (a done task stays done)."
    );
    assert_eq!(complete["parameters"][0]["schema"]["type"], "integer");
    assert_eq!(complete["requestBody"]["required"], false);
    assert_eq!(
        complete["responses"]["200"]["content"]["application/json"]["schema"],
        json!({"$ref": "#/components/schemas/Task"})
    );
    for status in ["400", "403", "404"] {
        assert!(complete["responses"][status].is_object(), "{status}");
    }
    let clear = &paths["/api/tasks/clear_done/"]["post"];
    assert_eq!(clear["requestBody"]["required"], true);
    assert_eq!(
        clear["requestBody"]["content"]["application/json"]["schema"],
        json!({"type": "object", "properties": {"list_id": {"type": "integer"}}, "required": ["list_id"]})
    );
    assert_eq!(
        clear["responses"]["200"]["content"]["application/json"]["schema"],
        json!({"type": "object", "properties": {"deleted": {"type": "integer", "minimum": 0}}, "required": ["deleted"]})
    );
    assert!(clear.get("parameters").is_none());
}

#[tokio::test]
async fn credentials_appear_as_security_schemes() {
    let server = TestServer::start(common::models::builder_with_users(
        common::models::demo_tokens(),
    ))
    .await;
    // The document itself needs no credential.
    let doc = document(&server).await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(
        schemes["bearer"],
        json!({"type": "http", "scheme": "bearer"})
    );
    assert_eq!(schemes["token"]["in"], "query");
    assert_eq!(schemes["cookie"]["name"], "rest_live_token");
    // Anonymous requests are refused: a credential is required.
    assert_eq!(
        doc["security"],
        json!([{"bearer": []}, {"cookie": []}, {"token": []}])
    );
    assert!(
        doc["paths"]["/api/tasks/"]["get"]["responses"]["401"].is_object(),
        "401 is documented"
    );
}

#[tokio::test]
async fn the_path_is_configurable_and_the_document_can_be_turned_off() {
    let server = TestServer::start(
        common::models::builder().configure(|c| c.openapi_path = Some("/openapi.json".into())),
    )
    .await;
    let ok = server
        .http()
        .get(server.url("/openapi.json"))
        .send()
        .await
        .expect("GET");
    assert_eq!(ok.status().as_u16(), 200);

    let server =
        TestServer::start(common::models::builder().configure(|c| c.openapi_path = None)).await;
    let off = server
        .http()
        .get(server.url("/api/openapi.json"))
        .send()
        .await
        .expect("GET");
    assert_eq!(off.status().as_u16(), 404);
}
